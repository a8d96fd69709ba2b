"""Log lines that anyone on the network can cause, at a bounded rate.

A refused connection or a bad frame is logged, but a client that sends thousands of them
must not fill the disk or drown the lines that matter: each kind of line passes at most
once per interval, and the lines held back meanwhile are counted and told in the next one
that passes ("... (and 41 more like it in the last 10 s)").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["RateLog"]


class RateLog:
    """One kind of log line, let through at most once per `interval` seconds."""

    __slots__ = ("_clock", "_held", "_interval", "_level", "_logger", "_next", "_since")

    def __init__(
        self,
        logger: logging.Logger,
        level: int = logging.WARNING,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._clock = clock
        self._next = -float("inf")  # when the next line may pass
        self._since = 0.0  # when the last line passed
        self._held = 0  # lines held back since then

    def __call__(self, message: str, *args: object, exc_info: bool = False) -> bool:
        """Log `message % args` unless a line of this kind passed within the interval;
        whether it was logged."""
        if not self._logger.isEnabledFor(self._level):
            return False
        now = self._clock()
        if now < self._next:
            self._held += 1
            return False
        held, since = self._held, self._since
        self._held, self._since, self._next = 0, now, now + self._interval
        if held:
            message += " (and %d more like it in the last %.0f s)"
            args = (*args, held, now - since)
        self._logger.log(self._level, message, *args, exc_info=exc_info)
        return True
