"""The SDK file and its language packs as served: gzipped when the browser accepts it, with
strong ETags, and 304 for a copy the browser already holds.

Each file is read, hashed and compressed once, and again only when its size or modification
time changes (`npm run build` while the server runs). The two encodings are two
representations, so each has its own strong ETag (RFC 9110 §8.8.3); `Vary: Accept-Encoding`
tells caches to keep them apart.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import anyio
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Asset", "Assets", "accepts_gzip", "not_modified"]

_QVALUE = re.compile(r"\s*q\s*=\s*(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)\s*", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Asset:
    """One file's bytes, gzipped bytes and their ETags."""

    stamp: tuple[int, int]  # (size, mtime_ns) when read
    body: bytes
    gzipped: bytes
    etag: str
    gzip_etag: str

    @classmethod
    def of(cls, body: bytes, stamp: tuple[int, int]) -> Asset:
        digest = hashlib.sha256(body).hexdigest()[:32]
        gzipped = gzip.compress(body, compresslevel=9, mtime=0)
        return cls(stamp, body, gzipped, f'"{digest}"', f'"{digest}-gzip"')


class Assets:
    """The files served so far, each kept until it changes on disk."""

    def __init__(self) -> None:
        self._held: dict[Path, Asset] = {}

    async def get(self, path: Path) -> Asset | None:
        """The file at `path`, or None while it does not exist (not built)."""
        file = anyio.Path(path)
        try:
            st = await file.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_size, st.st_mtime_ns)
        held = self._held.get(path)
        if held is None or held.stamp != stamp:
            held = self._held[path] = Asset.of(await file.read_bytes(), stamp)
        return held

    def response(
        self, request: Request, asset: Asset, media_type: str, headers: Mapping[str, str]
    ) -> Response:
        """`asset` in the encoding the request accepts, or 304 if the client holds it."""
        gzipped = accepts_gzip(request.headers.get("accept-encoding", ""))
        etag = asset.gzip_etag if gzipped else asset.etag
        common = {**headers, "ETag": etag, "Vary": "Accept-Encoding"}
        if not_modified(request.headers.get("if-none-match"), etag):
            return Response(status_code=304, headers=common)
        if gzipped:
            return Response(
                asset.gzipped, media_type=media_type, headers={**common, "Content-Encoding": "gzip"}
            )
        return Response(asset.body, media_type=media_type, headers=common)


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an `Accept-Encoding` value accepts gzip (RFC 9110 §12.5.3): named with a
    q-value above 0, or not named and `*` is; `x-gzip` is gzip."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        coding, *params = item.split(";")
        coding = coding.strip().lower()
        if not coding:
            continue
        weight = 1.0
        for param in params:
            if param.strip().lower().startswith("q"):
                found = _QVALUE.fullmatch(param)
                weight = float(found.group(1)) if found else 0.0
        weights["gzip" if coding == "x-gzip" else coding] = weight
    if "gzip" in weights:
        return weights["gzip"] > 0
    return weights.get("*", 0.0) > 0


def not_modified(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names `etag` (weak comparison, RFC 9110 §13.1.2) or is `*`."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in if_none_match.split(","))
