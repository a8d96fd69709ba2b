"""`seatguard policies show|set` on a SQLite file, in process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from seatguard.cli.main import main

POLICY = {
    "rules": [
        {"name": "travel", "when": {"check": "impossible_travel"}, "verdict": "suspend"},
        {"name": "risky", "when": {"risk": "high"}, "verdict": "block", "dry_run": True},
    ],
    "orgs": {"acme": []},
}


def site(runner: CliRunner, db: str) -> str:
    done = runner.invoke(main, ["site", "create", "--name", "S", "--origin", "*", "--db", db])
    assert done.exit_code == 0, done.output
    key: str = json.loads(done.stdout)["key"]
    return key


def invoke(runner: CliRunner, *args: str) -> Any:
    return runner.invoke(main, ["policies", *args])


def test_set_then_show_and_sites_keep_their_own(tmp_path: Path) -> None:
    runner, db = CliRunner(), str(tmp_path / "sg.db")
    key, other = site(runner, db), site(runner, db)
    empty = json.loads(invoke(runner, "show", key, "--db", db).stdout)
    assert (empty["rules"], empty["risk"]["cutoffs"]["high"]) == ([], 50)
    file = tmp_path / "policy.json"
    file.write_text(json.dumps(POLICY))
    done = invoke(runner, "set", key, "--file", str(file), "--db", db)
    assert done.exit_code == 0, done.output
    stored = json.loads(done.stdout)
    assert stored["rules"][0] == {**POLICY["rules"][0], "dry_run": False}  # type: ignore[index]
    assert json.loads(invoke(runner, "show", key, "--db", db).stdout) == stored
    assert json.loads(invoke(runner, "show", other, "--db", db).stdout) == empty


def test_bad_files_and_unknown_sites_are_refused_naming_the_problem(tmp_path: Path) -> None:
    runner, db = CliRunner(), str(tmp_path / "sg.db")
    key = site(runner, db)
    file = tmp_path / "policy.json"
    cases = [
        ("{", "not JSON"),
        (json.dumps({"rules": [{"name": "x", "when": {"check": "foo"}, "verdict": "block"}]}),
         "rules[0].when.check: unknown check 'foo'"),
        (json.dumps({"risk": {"cutoffs": {"high": 90}}}), "risk.cutoffs: medium < high < maximum"),
    ]  # fmt: skip
    for text, message in cases:
        file.write_text(text)
        done = invoke(runner, "set", key, "--file", str(file), "--db", db)
        assert done.exit_code == 2, done.output
        assert message in done.output
    file.write_text(json.dumps(POLICY))
    done = invoke(runner, "set", "pk_missing", "--file", str(file), "--db", db)
    assert (done.exit_code, "no site with key 'pk_missing'" in done.output) == (1, True)
    done = invoke(runner, "show", "pk_missing", "--db", db)
    assert (done.exit_code, "no site with key 'pk_missing'" in done.output) == (1, True)
    assert json.loads(invoke(runner, "show", key, "--db", db).stdout)["rules"] == []
