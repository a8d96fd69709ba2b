"""A real server process for the integration tests of this package."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.geodb import write_city_db
from tests.helpers import Server, start_server
from tests.integration.client import Tab


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    server_env: dict[str, str],
) -> Iterator[Server]:
    """A server for the module, with the module's `SERVER_ENV` if it has one."""
    env = {**server_env, **getattr(request.module, "SERVER_ENV", {})}
    s = start_server(tmp_path_factory.mktemp("server"), "serve", env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def geo_server(
    tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[Server]:
    """A server that places clients with the test's own GeoIP database: 127.0.1.x in Paris,
    127.0.2.x in Berlin and so on (`tests.geodb`)."""
    tmp = tmp_path_factory.mktemp("geo")
    city_db = write_city_db(tmp / "cities.mmdb")
    env = {**server_env, "SEATGUARD_GEOIP_DB": str(city_db), "SEATGUARD_GEOIP_LOCAL": "1"}
    s = start_server(tmp, "serve", env)
    yield s
    s.stop()


@pytest.fixture(scope="module")
def site(server: Server) -> str:
    """A site accepting any origin, with client-side settings allowed."""
    created = server.create_site("--name", "Test", "--origin", "*", "--client-settings")
    return str(created["key"])


@pytest.fixture(scope="session")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An OpenID provider's signing key and its JWKS file."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "k1", "alg": "RS256", "use": "sig"})
    path = tmp_path_factory.mktemp("op") / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    yield {
        "key": key,
        "jwks": path,  # the file, for the CLI
        "jwks_document": {"keys": [jwk]},
        "issuer": "https://op.example",
        "client": "acme-client",
    }


@pytest.fixture
async def _close_tabs_async() -> AsyncIterator[None]:
    yield
    await Tab.close_all()


@pytest.fixture(autouse=True)
def close_tabs(request: pytest.FixtureRequest) -> None:
    """Close every socket an async test opened (sync tests close their own)."""
    if "anyio_backend" in request.fixturenames:
        request.getfixturevalue("_close_tabs_async")
