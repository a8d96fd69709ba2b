"""The bench's report over a made-up run: goals, same-run ratios, and the table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seatguard.bench.report import figures, table, write


def run() -> dict[str, Any]:
    def storm(rate: int) -> dict[str, Any]:
        return {"handshakes_per_cpu_second": rate, "seconds": 2.0, "failed": 0}

    def admission(p50: float, p99: float, rate: int) -> dict[str, Any]:
        return {
            "held_connections": 10_000,
            "sessions": 3_000,
            "decisions_per_second": rate,
            "cpu_seconds": 3.0,
            "hello_to_welcome": {"p50_ms": p50, "p99_ms": p99},
            "frame_in_to_verdict_out": {"p50_ms": p50, "p99_ms": p99},
            "collector": {"longest_pause_ms": 4.5},
        }

    def check(p50: float, p99: float) -> dict[str, Any]:
        return {
            "checks": 10_000,
            "checks_per_second": 1_000,
            "failed": 0,
            "cpu_us_per_check": 300.0,
            "request_to_answer": {"p50_ms": p50, "p99_ms": p99},
        }

    return {
        "run_at": "2026-12-03T00:00:00Z",
        "machine": {"cpus": 2},
        "hold": {"seatguard": {"kib_per_connection": 6.0}, "node": {"kib_per_connection": 5.5}},
        "flood": {
            "seatguard": {"messages_per_cpu_second": 30_000, "sockets": 10_000},
            "websockets": {"messages_per_cpu_second": 10_000},
            "node": {"messages_per_cpu_second": 40_000},
        },
        "login_storm": {"memory": storm(1_000), "websockets": storm(1_000), "node": storm(4_000)},
        "reconnect_storm": {"memory": storm(1_200)},
        "admission": {
            "memory": admission(0.8, 4.0, 500),
            "redis": admission(90.0, 250.0, 900),
            "redis_steady": admission(3.0, 9.0, 250),
        },
        "seat_tokens": {"tokens": 5_000, "cpu_seconds": 0.25, "cpu_us_per_token": 50.0},
        "seat_token_storms": {
            "pairs": 3,
            "cpu_us_per_login_without": [500.0, 520.0, 480.0],
            "cpu_us_per_login_with": [560.0, 540.0, 550.0],
            "share_percent": 10.7,
        },
        "seat_check": {
            "memory": check(1.2, 4.0),
            "redis": check(2.5, 12.0),
        },
        "sdk_gzip_bytes": 5_900,
    }


def test_figures_are_judged_against_their_goals_with_same_run_ratios() -> None:
    found = {f.name: f for f in figures(run())}
    assert found["heartbeats vs Node ws echo"].measured == 0.75
    assert found["heartbeats vs websockets echo"].measured == 3.0
    assert found["heartbeats vs websockets echo"].met is True
    assert found["heartbeats vs Node ws echo"].met is False
    assert "1.0x the websockets echo's bare handshakes, 0.25x Node ws's" in (
        found["handshakes per CPU-second (with admission)"].note
    )
    assert found["admission p99, frame in to verdict out"].met is True
    assert found["... at a rate one node sustains"].measured == 9.0
    assert found["block reaches a tab on another node, p99"].met is None  # not run


def test_the_table_shows_every_store_and_the_collector(tmp_path: Path) -> None:
    text = table(run())
    assert "store redis, steady rate" in text and "250 decisions/s" in text
    assert "longest collector pause 4.5 ms" in text
    assert "10000 connections held" in text
    saved, _ = write(run(), tmp_path)
    data = json.loads(saved.read_text())
    assert {f["name"] for f in data["figures"]} >= {"SDK gzipped", "memory per connection"}


def test_seat_token_and_check_figures_come_from_the_same_run() -> None:
    found = {f.name: f for f in figures(run())}
    share = found["seat tokens, share of a login's CPU"]
    assert share.measured == 10.7 and share.met is False  # over 10 %
    assert "3 pairs of login storms" in share.note
    assert "with tokens [560.0, 540.0, 550.0], without [500.0, 520.0, 480.0]" in share.note
    assert "signing alone 50.0 us per token (5.0 % of a login)" in share.note  # of 1,000 us
    assert found["seat check p99, memory store"].met is True
    assert found["seat check p99, Redis"].met is False
    assert found["seat check p99, Redis"].note == "at 1000 checks/s"
    text = table(run())
    assert "seat check, redis" in text and "p50/p99 2.5/12.0 ms" in text
