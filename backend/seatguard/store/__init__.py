"""Where presence snapshots live: one small interface, one implementation per backend."""

from .base import PresenceStore
from .memory import MemoryStore

__all__ = ["MemoryStore", "PresenceStore"]
