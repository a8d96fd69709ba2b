"""Seatguard: stop account sharing and control browser sessions in real time."""

__all__ = ["__version__"]

__version__ = "0.1.0"
