"""The `seatguard` command (`main`): serve, demo, sites, the audit trail, benchmarks."""

from .main import main

__all__ = ["main"]
