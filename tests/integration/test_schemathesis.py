"""The OpenAPI document holds for the real server: schemathesis generates requests from it.

Every check is on: valid requests must be accepted and invalid ones refused (so the document
says exactly what the server takes), answers must match their schemas, status codes,
content types and headers, no 5xx, authentication enforced, wrong methods answered 405.
The seed is fixed and the number of examples per operation bounded, so a run is the same
every time: some 55,000 requests, nearly all from the coverage phase (every boundary and
negative case of every schema), about two minutes on a two-core machine and three under
`make test`'s coverage. A failure prints schemathesis's report with a `curl` line that
reproduces it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from seatguard.db import SqliteDatabase
from seatguard.signals.evaluations import DryRunOut, EvaluationRecord, RiskOut
from tests.helpers import Server, scaled, start_server
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio

SEED = 20260101
EXAMPLES = 25  # per operation and phase
SCHEMATHESIS = [sys.executable, "-c", "from schemathesis.cli import schemathesis; schemathesis()"]
CONFIG = Path(__file__).with_name("schemathesis.toml")


def evaluation(site: str, user: str, n: int) -> EvaluationRecord:
    checks = {"concurrent_sessions": True, "device_count": 2, "ip_country": None}
    return EvaluationRecord(
        site=site, user=user, session=f"s{n}", device="d" * 8, ip="203.0.113.0",
        at=1_700_000_000.0 + n, trigger="hello", checks=checks, geo="off",
        risk=RiskOut(45, "medium"), rule="r" if n else None, verdict="block" if n else "allow",
        applied=True, dry_run=[DryRunOut("shadow", "suspend")],
    )  # fmt: skip


@pytest.fixture(scope="module")
def own_server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Server]:
    """A server of its own: the run changes its site's rules and revokes at random."""
    s = start_server(tmp_path_factory.mktemp("schemathesis"), "serve", server_env)
    yield s
    s.stop()


async def test_the_api_does_exactly_what_its_document_says(
    own_server: Server, tmp_path: Path
) -> None:
    site: dict[str, Any] = own_server.create_site("--name", "Fuzzed", "--origin", "*")
    # Live sessions and audit records, so that listings and the audit trail have rows; and
    # policy evaluations, as the node's writer stores them.
    users = ("alice", "a/b c", "ünïcødé")
    for user in users:
        for _ in range(2):
            await Tab.open(own_server.ws, str(site["key"]), Browser(user))
    db = await SqliteDatabase.open(str(own_server.db))
    try:
        await db.add_evaluations([evaluation(str(site["key"]), u, n) for n, u in enumerate(users)])
    finally:
        await db.close()
    command = [
        *SCHEMATHESIS,
        "--config-file", str(CONFIG),
        "run",
        f"{own_server.http}/api/v1/openapi.json",
        "--url", f"{own_server.http}/api/v1",
        "--header", f"Authorization: Bearer {site['secret']}",
        # Rotating the secret key would end the key this run authenticates with; the
        # rotation has tests of its own (test_site_secrets.py).
        "--exclude-path", "/site/secret",
        "--checks", "all",
        "--max-examples", str(EXAMPLES),
        "--seed", str(SEED),
        "--workers", "1",
        "--generation-database", "none",
        "--request-timeout", str(scaled(10)),
        "--no-color",
    ]  # fmt: skip
    # Under `make test`, coverage measures every Python process the tests start; schemathesis
    # has nothing of Seatguard's to measure, and traced it runs about twice as long.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_PROCESS_")}
    with anyio.fail_after(scaled(480)):
        done = await anyio.run_process(command, cwd=tmp_path, env=env, check=False)
    output = (done.stdout + done.stderr).decode(errors="replace")
    assert done.returncode == 0, output[-20_000:]
