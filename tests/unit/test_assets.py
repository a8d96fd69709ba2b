"""The SDK's files as served: which encodings a request accepts, and which copies it holds."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from seatguard.assets import Asset, Assets, accepts_gzip, not_modified

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("header", "gzip_ok"),
    [
        ("gzip", True),
        ("gzip, deflate, br", True),
        ("GZIP", True),
        ("x-gzip", True),
        ("br;q=1.0, gzip;q=0.8, *;q=0.1", True),
        ("*", True),
        ("gzip;q=0.001", True),
        ("", False),
        ("identity", False),
        ("br, deflate", False),
        ("gzip;q=0", False),
        ("gzip; q=0.000", False),
        ("*;q=0", False),
        ("gzip;q=0, *", False),  # gzip named and refused: `*` does not bring it back
        ("*, gzip;q=0", False),
        ("gzip;q=2", False),  # not a q-value: refused rather than guessed
        ("gzip;q=nan", False),
        ("gzip;q=-1", False),
        ("deflate;q=0.5, *;q=0.2", True),
    ],
)
def test_accept_encoding(header: str, gzip_ok: bool) -> None:
    assert accepts_gzip(header) is gzip_ok


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ('"abc"', True),
        ('W/"abc"', True),  # If-None-Match compares weakly
        ('"x", "abc"', True),
        ("*", True),
        ('"abc-gzip"', False),  # the other encoding's tag
        ('"ab"', False),
        ("abc", False),
        ("", False),
    ],
)
def test_if_none_match(header: str | None, matches: bool) -> None:
    assert not_modified(header, '"abc"') is matches


def test_each_encoding_has_its_own_strong_etag() -> None:
    asset = Asset.of(b"console.log(1)" * 50, (0, 0))
    assert gzip.decompress(asset.gzipped) == asset.body
    assert asset.etag.startswith('"') and not asset.etag.startswith("W/")
    assert asset.gzip_etag != asset.etag
    # The same bytes give the same tags and the same gzip (no timestamp inside).
    again = Asset.of(asset.body, (1, 1))
    assert (again.etag, again.gzip_etag, again.gzipped) == (
        asset.etag,
        asset.gzip_etag,
        asset.gzipped,
    )
    assert Asset.of(b"console.log(2)", (0, 0)).etag != asset.etag


async def test_a_rebuilt_file_is_read_again(tmp_path: Path) -> None:
    assets = Assets()
    path = tmp_path / "seatguard.js"
    assert await assets.get(path) is None  # not built yet
    path.write_bytes(b"one")
    first = await assets.get(path)
    assert first is not None and first.body == b"one"
    assert await assets.get(path) is first  # read once
    path.write_bytes(b"two!")
    os.utime(path, ns=(1, 1))
    second = await assets.get(path)
    assert second is not None and second.body == b"two!" and second.etag != first.etag
