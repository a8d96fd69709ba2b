"""What a request brings in: its body, read with a size cap enforced while it streams in; its
JSON, decoded into a struct; its path and query parameters, converted into structs; who
sent it, as the audit trail names them (`author`).

uvicorn puts no limit on a request body: reading it whole and measuring it afterwards lets
anyone make the server hold as much as they send, so `read_capped` stops at the first chunk
past the cap (at once when `Content-Length` already says so). Structs carry the bounds
(`msgspec.Meta`), so that the checks and the OpenAPI document come from one place; a value
out of bounds is an `ApiError` 422 whose message names the field.

The `any` path convertor (`{user:any}`) takes the rest of a path, `/` and line breaks
included: Starlette's own `path` stops at a line break, so an id holding one would miss its
route (404) instead of being refused for what it is (422).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request

from .audit import Scalar
from .problems import ApiError
from .protocol import explain

__all__ = ["MAX_BODY", "author", "read_capped", "read_json", "read_json_value", "read_params"]

S = TypeVar("S")
MAX_BODY = 16384
"""Bytes of a REST API request body, at most (413 beyond)."""


async def read_capped(request: Request, limit: int) -> bytes | None:
    """The body of `request`, or None as soon as it is known to pass `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, kind: type[S]) -> S:
    """The JSON body as a `kind` (an empty body is `{}`); ApiError 413, 400 or 422."""
    value = await read_json_value(request)
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "Invalid request", explain(exc, kind)) from None


async def read_json_value(
    request: Request, limit: int = MAX_BODY, *, required: bool = False
) -> Any:
    """The JSON body as plain values, integral numbers as integers (an empty body is `{}`
    unless `required`); ApiError 413 past `limit` bytes, 400 if it is not JSON."""
    raw = await read_capped(request, limit)
    if raw is None:
        raise ApiError(413, "Payload too large", f"request bodies are limited to {_kib(limit)}")
    if required and not raw:
        raise ApiError(400, "Malformed JSON", "the body is empty; send a JSON object")
    try:
        return _whole(msgspec.json.decode(raw or b"{}"))
    except msgspec.DecodeError as exc:
        raise ApiError(400, "Malformed JSON", str(exc)) from None
    except RecursionError:  # the decoder and `_whole` walk nesting by recursion
        raise ApiError(400, "Malformed JSON", "JSON nested too deeply") from None


def _kib(size: int) -> str:
    return f"{size // 1024} KiB"


def _whole(value: Any) -> Any:
    """JSON numbers as JSON Schema (and so the OpenAPI document) reads them: `2.0` is the
    integer 2, which an `int` field takes, as it takes `2`."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole(v) for v in value]
    return value


def author(request: Request) -> dict[str, Scalar]:
    """Who made an authenticated API request, for the audit trail: `by` "api", and `key`
    "current", or "replaced" for the site's replaced secret key within its overlap."""
    return {"by": "api", "key": "current" if request.state.current_secret else "replaced"}


def read_params(values: Mapping[str, str], kind: type[S]) -> S:
    """Path or query parameters as a `kind`, numbers read from their text; ApiError 422."""
    try:
        return msgspec.convert(values, kind, strict=False)
    except msgspec.ValidationError as exc:
        raise ApiError(422, "Invalid request", explain(exc, kind)) from None


class _AnyConvertor(Convertor[str]):
    """`{name:any}`: the rest of the path, whatever it holds."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any", _AnyConvertor())
