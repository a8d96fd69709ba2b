"""A real server process for the integration tests of this package."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.conftest import Server, start_server
from tests.integration.client import Tab


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("server"), "serve", server_env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def site(server: Server) -> str:
    """A site accepting any origin, with client-side settings allowed."""
    created = server.create_site("--name", "Test", "--origin", "*", "--client-settings")
    return str(created["key"])


@pytest.fixture
async def _close_tabs_async() -> AsyncIterator[None]:
    yield
    await Tab.close_all()


@pytest.fixture(autouse=True)
def close_tabs(request: pytest.FixtureRequest) -> None:
    """Close every socket an async test opened (sync tests close their own)."""
    if "anyio_backend" in request.fixturenames:
        request.getfixturevalue("_close_tabs_async")
