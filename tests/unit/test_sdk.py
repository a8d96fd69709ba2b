"""The SDK's language packs and size: one list of languages in the server, the SDK and the
Makefile; one gzip budget in the SDK build and the bench."""

from __future__ import annotations

import re

from seatguard.app import SDK_LANGUAGES
from seatguard.bench.report import SDK_GZIP_GOAL
from tests.helpers import ROOT


def test_the_server_serves_the_languages_the_sdk_fetches() -> None:
    text = (ROOT / "js-sdk/src/texts.js").read_text()
    found = re.search(r"export const LANGUAGES = \[(.*?)\];", text)
    assert found is not None
    assert tuple(re.findall(r"'(\w+)'", found.group(1))) == SDK_LANGUAGES


def test_the_makefile_builds_every_pack() -> None:
    text = (ROOT / "Makefile").read_text()
    found = re.search(r"^SDK_LANGS := \$\(foreach lang,([\w ]+),", text, re.M)
    assert found is not None
    assert tuple(found.group(1).split()) == SDK_LANGUAGES


def test_the_build_fails_above_the_bench_goal() -> None:
    text = (ROOT / "js-sdk/build.mjs").read_text()
    found = re.search(r"^const GZIP_BUDGET = ([\d_]+);$", text, re.M)
    assert found is not None
    assert int(found.group(1)) == SDK_GZIP_GOAL
