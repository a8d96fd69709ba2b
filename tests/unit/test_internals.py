"""The library internals Seatguard relies on are still there.

Each is behind an upper bound in pyproject.toml. When a new version of the library comes
out, these checks say which internals it dropped or changed; the bound is raised after the
module that uses them is reviewed against the new version (the checks cannot tell that an
internal still means what it meant).
"""

from __future__ import annotations

import inspect
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from types import FunctionType
from typing import Any

import aiosqlite
import httpcore
import httptools
import httpx
import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState
from websockets.protocol import Protocol
from websockets.server import ServerProtocol


def fail_unless(present: bool, user: str, internal: str, dist: str) -> None:
    """Fail, naming the module to review, unless `internal` of `dist` is `present`."""
    if not present:
        pytest.fail(
            f"seatguard.{user} relies on {internal}; {dist} {version(dist)} no longer has it: "
            f"review {user.replace('.', '/')}.py before raising the bound",
            pytrace=False,
        )


def sets(method: Callable[..., Any], attribute: str) -> bool:
    """Whether `method`'s own code names `attribute` (an assignment `self.attribute = ...`)."""
    return isinstance(method, FunctionType) and attribute in method.__code__.co_names


def has_method(cls: type, name: str) -> Callable[[], bool]:
    return lambda: callable(getattr(cls, name, None))


def sets_in(cls: type, method: str, attribute: str) -> Callable[[], bool]:
    return lambda: sets(getattr(cls, method), attribute)


def parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


@dataclass(frozen=True)
class Internal:
    user: str  # the Seatguard module, under seatguard.
    internal: str  # what it relies on, as a dotted name
    dist: str  # the distribution that has it
    present: Callable[[], bool]


INTERNALS = [
    # plainhttp.PlainHttp subclasses uvicorn's HTTP protocol, is built like it, overrides
    # its callbacks and reads its per-connection and per-request state.
    Internal("plainhttp", "HttpToolsProtocol.__init__(config, server_state, app_state, _loop)",
             "uvicorn", lambda: parameters(HttpToolsProtocol.__init__)
             == ["self", "config", "server_state", "app_state", "_loop"]),
    *(
        Internal("plainhttp", f"HttpToolsProtocol.{name}", "uvicorn",
                 has_method(HttpToolsProtocol, name))
        for name in ("data_received", "on_message_begin", "on_headers_complete",
                     "connection_lost", "_unset_keepalive_if_required", "send_400_response")
    ),
    *(
        Internal("plainhttp", f"HttpToolsProtocol.{attribute}", "uvicorn",
                 sets_in(HttpToolsProtocol, method, attribute))
        for method, attribute in [("__init__", "parser"), ("__init__", "loop"),
                                  ("__init__", "transport"), ("__init__", "cycle"),
                                  ("connection_made", "client"), ("on_message_begin", "url"),
                                  ("on_message_begin", "headers")]
    ),
    Internal("plainhttp", "RequestResponseCycle.response_complete", "uvicorn",
             lambda: sets(RequestResponseCycle.__init__, "response_complete")),
    Internal("plainhttp", "httptools.HttpRequestParser.feed_data", "httptools",
             lambda: hasattr(httptools.HttpRequestParser, "feed_data")),
    # sockets.HttpProtocol and Socket count themselves among uvicorn's connections, which
    # uvicorn asks to shut down when it stops.
    Internal("sockets", "ServerState.connections", "uvicorn",
             lambda: isinstance(getattr(ServerState(), "connections", None), set)),
    # sockets.Socket frees a socket's handshake by swapping in a fresh frame parser.
    Internal("sockets", "websockets.protocol.Protocol.parse", "websockets",
             lambda: inspect.isgeneratorfunction(getattr(Protocol, "parse", None))),
    Internal("sockets", "websockets.protocol.Protocol.parser", "websockets",
             lambda: inspect.isgenerator(getattr(ServerProtocol(), "parser", None))),
    Internal("sockets", "websockets.protocol.Protocol.parser_exc", "websockets",
             lambda: hasattr(ServerProtocol(), "parser_exc")),
    Internal("sockets", "websockets.protocol.Protocol.reader.buffer", "websockets",
             lambda: isinstance(getattr(ServerProtocol().reader, "buffer", None), bytearray)),
    # outbound.PublicTransport replaces httpx's pool with one on a guarded network backend.
    Internal("outbound", "httpx.AsyncHTTPTransport._pool", "httpx",
             lambda: isinstance(getattr(httpx.AsyncHTTPTransport(), "_pool", None),
                                httpcore.AsyncConnectionPool)
             and sets(httpx.AsyncHTTPTransport.handle_async_request, "_pool")),
    Internal("outbound", "httpcore.AsyncConnectionPool(ssl_context, network_backend)",
             "httpcore", lambda: {"ssl_context", "network_backend"}
             <= set(parameters(httpcore.AsyncConnectionPool))),
    # db.audit_sqlite.AuditSqlite runs a whole append on the connection's thread.
    Internal("db.audit_sqlite", "aiosqlite.Connection._execute", "aiosqlite",
             lambda: inspect.iscoroutinefunction(getattr(aiosqlite.Connection, "_execute", None))),
    Internal("db.audit_sqlite", "aiosqlite.Connection._conn", "aiosqlite",
             lambda: isinstance(getattr(aiosqlite.Connection, "_conn", None), property)),
]  # fmt: skip


@pytest.mark.parametrize("internal", INTERNALS, ids=lambda i: f"{i.user}:{i.internal}")
def test_the_internal_is_there(internal: Internal) -> None:
    fail_unless(internal.present(), internal.user, internal.internal, internal.dist)


@pytest.mark.anyio
async def test_aiosqlite_runs_a_function_on_the_connections_thread() -> None:
    def where(conn: sqlite3.Connection) -> tuple[int, int]:
        return threading.get_ident(), conn.execute("SELECT 1").fetchone()[0]

    async with aiosqlite.connect(":memory:") as conn:
        raw = conn._conn
        fail_unless(isinstance(raw, sqlite3.Connection), "db.audit_sqlite",
                    "aiosqlite.Connection._conn (a sqlite3.Connection)", "aiosqlite")  # fmt: skip
        thread, one = await conn._execute(where, raw)  # type: ignore[no-untyped-call]
    fail_unless(one == 1 and thread != threading.get_ident(), "db.audit_sqlite",
                "aiosqlite.Connection._execute(function, *args) on the connection's thread",
                "aiosqlite")  # fmt: skip
