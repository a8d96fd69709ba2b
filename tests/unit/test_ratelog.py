"""Rate-limited log lines: one per interval, the held-back ones counted in the next."""

from __future__ import annotations

import logging

import pytest

from seatguard.ratelog import RateLog
from tests.unit.fakes import Clock


def test_one_line_per_interval_and_the_held_back_ones_are_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock(100.0)
    refused = RateLog(logging.getLogger("test.ratelog"), interval=10, clock=clock)
    caplog.set_level(logging.INFO, "test.ratelog")
    assert refused("refused %s", "a")
    for ip in "bcd":  # within the interval: held back
        clock.now += 1
        assert not refused("refused %s", ip)
    clock.now = 110.0
    assert refused("refused %s", "e")
    clock.now = 125.0  # nothing held back since: no count
    assert refused("refused %s", "f")
    assert [r.getMessage() for r in caplog.records] == [
        "refused a",
        "refused e (and 3 more like it in the last 10 s)",
        "refused f",
    ]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


def test_lines_below_the_loggers_level_are_not_counted(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    quiet = RateLog(logging.getLogger("test.ratelog.quiet"), logging.DEBUG, clock=clock)
    caplog.set_level(logging.INFO, "test.ratelog.quiet")
    assert not quiet("nobody reads this")
    caplog.set_level(logging.DEBUG, "test.ratelog.quiet")
    assert quiet("now somebody does")
    assert [r.getMessage() for r in caplog.records] == ["now somebody does"]


def test_a_traceback_goes_with_the_line_that_passes(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    bug = RateLog(logging.getLogger("test.ratelog.bug"), logging.ERROR, clock=clock)
    for _ in range(3):
        try:
            raise ValueError("boom")
        except ValueError:
            bug("unexpected error", exc_info=True)
    assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
