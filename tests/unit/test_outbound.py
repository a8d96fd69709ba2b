"""Outbound HTTP for URLs a site chose: which addresses pass, and that the check holds at
connection time (real listeners on loopback; no traffic leaves the machine)."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from seatguard.errors import ConfigError
from seatguard.outbound import PublicOnly, PublicTransport, check_literal, client, is_public

pytestmark = pytest.mark.anyio

REFUSED = [
    "127.0.0.1", "127.8.9.10", "0.0.0.0", "10.1.2.3", "172.16.0.1", "192.168.1.1",
    "169.254.169.254", "100.64.0.1", "100.127.255.254", "192.0.0.8", "192.0.2.1",
    "198.18.0.1", "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250",
    "240.0.0.1", "255.255.255.255",
    "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1", "fec0::1", "ff02::1", "2001:db8::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",
    "2002:7f00:1::1", "2002:a00:1::1", "64:ff9b::a00:1", "2001:0:4136:e378:8000:63bf:f5ff:fffe",
]  # fmt: skip
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "::ffff:8.8.8.8",
          "2002:808:808::1"]  # fmt: skip


@pytest.mark.parametrize("address", REFUSED)
def test_local_private_and_special_addresses_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public_unicast_addresses_pass(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/jwks",
        "https://localhost/jwks",
        "https://LOCALHOST./jwks",
        "https://keys.localhost/jwks",
        "https://[::1]/jwks",
        "https://[::ffff:7f00:1]/jwks",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.5/jwks",
        "https://[fd00::5]/jwks",
    ],
)
def test_a_url_naming_a_local_address_is_refused_when_set(url: str) -> None:
    with pytest.raises(ConfigError, match="points to a local or private address"):
        check_literal(url, "oidc_jwks_uri")


def test_a_url_naming_a_host_is_left_to_the_connection_check() -> None:
    check_literal("https://login.example.com/jwks", "oidc_jwks_uri")
    check_literal("https://8.8.8.8/jwks", "oidc_jwks_uri")


@dataclass
class Listener:
    """A loopback HTTP server that counts its connections and keeps each request's head."""

    port: int = 0
    connections: int = 0
    heads: list[bytes] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)


async def _serve(listener: Listener, reader: asyncio.StreamReader, writer: Any) -> None:
    listener.connections += 1
    try:
        listener.heads.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}")
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    found = Listener()
    server = await asyncio.start_server(
        lambda r, w: _serve(found, r, w), "127.0.0.1", 0, reuse_address=True
    )
    found.port = server.sockets[0].getsockname()[1]
    async with server:
        yield found


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_a_loopback_target_is_refused_before_any_connection(
    listener: Listener, host: str
) -> None:
    async with client(timeout=5, user_agent="t", allow_private=False) as http:
        with pytest.raises(httpx.ConnectError, match="resolves to no public address"):
            await http.get(f"http://{host}:{listener.port}/jwks")
    assert listener.connections == 0


async def test_an_operator_may_allow_private_addresses(listener: Listener) -> None:
    async with client(timeout=5, user_agent="t", allow_private=True) as http:
        reply = await http.get(f"http://localhost:{listener.port}/jwks")
    assert reply.status_code == 200 and listener.connections == 1


class Recording(httpcore.AsyncNetworkBackend):
    """The connecting backend under the guard: records where it was sent, connects nowhere."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.asked.append(host)
        raise httpcore.ConnectError("recorded, not connected")


def answers(*replies: list[str]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A resolver answering each call with the next reply (DNS that changes its mind)."""
    left = list(replies)

    async def resolve(host: str, port: int) -> list[str]:
        return left.pop(0)

    return resolve


async def test_only_the_checked_public_address_is_connected_to() -> None:
    # The name resolves to a loopback and a public address, and a second lookup (DNS
    # rebinding) would give loopback only: the guard looks up once and hands the connecting
    # backend the public address itself, never the name.
    inner = Recording()
    backend = PublicOnly(resolve=answers(["127.0.0.1", "8.8.8.8"], ["127.0.0.1"]), inner=inner)
    async with httpx.AsyncClient(transport=PublicTransport(backend=backend)) as http:
        with pytest.raises(httpx.ConnectError, match="recorded"):
            await http.get("https://rebind.example/jwks")
    assert inner.asked == ["8.8.8.8"]


def _certificate(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_tls_and_the_host_header_name_the_url_host_not_the_address(
    tmp_path: Path,
) -> None:
    # The guard connects to 127.0.0.1 (allowed here, to have something to connect to); the
    # certificate is checked against keys.test, SNI says keys.test, and so does Host.
    cert, key = _certificate("keys.test")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    found = Listener()
    served.sni_callback = lambda sock, name, ctx: found.server_names.append(name)
    server = await asyncio.start_server(
        lambda r, w: _serve(found, r, w), "127.0.0.1", 0, ssl=served
    )
    port = server.sockets[0].getsockname()[1]
    trusted = ssl.create_default_context(cadata=cert.decode())
    backend = PublicOnly(resolve=answers(["127.0.0.1"]), allowed=lambda ip: True)
    async with (
        server,
        httpx.AsyncClient(transport=PublicTransport(backend=backend, verify=trusted)) as http,
    ):
        reply = await http.get(f"https://keys.test:{port}/jwks")
    assert reply.status_code == 200
    assert found.server_names == ["keys.test"]
    assert f"host: keys.test:{port}".encode() in found.heads[0].lower()
