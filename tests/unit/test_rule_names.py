"""The names of modes, policies and rule fields come from one place (`types.py` and
`presence.RULE_FIELDS`): the wire protocol, the REST API's OpenAPI document, the CLI, the
demo and the README all offer exactly those."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import msgspec
import pytest
from demo_site import POLICY_CHOICES

from seatguard.cli.site import site
from seatguard.openapi import document
from seatguard.presence import RULE_FIELDS, TAKEOVER_POLICIES, Rules
from seatguard.protocol import Hello
from seatguard.types import MODES, POLICIES

README = Path(__file__).parents[2] / "README.md"


def enum_of(schema: dict[str, Any]) -> set[str]:
    """The values a property allows, whether or not it may also be null."""
    (values,) = [s["enum"] for s in [schema, *schema.get("anyOf", [])] if "enum" in s]
    return set(values)


def test_the_lists_have_no_repeats_and_name_the_rules_fields() -> None:
    assert len(set(MODES)) == len(MODES) == 2
    assert len(set(POLICIES)) == len(POLICIES) == 5
    assert RULE_FIELDS == ("mode", "limit", "policy", "idle_timeout", "absolute_timeout")
    assert TAKEOVER_POLICIES.issubset(POLICIES)


def test_rules_take_every_listed_name_and_refuse_others() -> None:
    for mode in MODES:
        assert Rules(mode=mode).mode == mode
    for policy in POLICIES:
        assert Rules(policy=policy).policy == policy
    with pytest.raises(ValueError, match="unknown mode"):
        Rules(mode="seats")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown policy"):
        Rules(policy="evict-newest")  # type: ignore[arg-type]


def test_the_hello_accepts_exactly_the_listed_modes_and_policies() -> None:
    _, components = msgspec.json.schema_components([Hello])
    properties = components["Hello"]["properties"]
    assert enum_of(properties["mode"]) == set(MODES)
    assert enum_of(properties["policy"]) == set(POLICIES)
    ids = {"session": "session-1", "tab": "tab-0001", "device": "device-1"}
    base = {"t": "hello", "v": 1, "site": "pk_site", **ids}

    def hello(**asked: str) -> Hello:
        return msgspec.json.decode(msgspec.json.encode({**base, **asked}), type=Hello)

    assert [hello(mode=m).mode for m in MODES] == list(MODES)
    assert [hello(policy=p).policy for p in POLICIES] == list(POLICIES)
    with pytest.raises(msgspec.ValidationError):
        hello(policy="evict-newest")


def test_the_openapi_document_offers_the_listed_names() -> None:
    schemas = document()["components"]["schemas"]
    for body in ("OverrideIn", "SiteIn"):
        properties = schemas[body]["properties"]
        assert enum_of(properties["mode"]) == set(MODES)
        assert enum_of(properties["policy"]) == set(POLICIES)
    assert list(schemas["OverrideIn"]["properties"]) == list(RULE_FIELDS)
    for struct in ("SiteIn", "SiteOut", "OverrideOut", "RulesOut"):
        assert set(RULE_FIELDS) <= set(schemas[struct]["properties"]), struct


def test_the_cli_offers_the_listed_names_and_an_option_per_rule_field() -> None:
    for name in ("create", "update"):
        command = site.commands[name]
        options = {p.name: p for p in command.params if isinstance(p, click.Option)}
        assert set(RULE_FIELDS) <= set(options), name
        for option, names in (("mode", MODES), ("policy", POLICIES)):
            kind = options[option].type
            assert isinstance(kind, click.Choice)
            assert set(kind.choices) == set(names)


def test_the_demo_offers_every_policy_with_what_it_does() -> None:
    assert list(POLICY_CHOICES) == list(POLICIES)
    assert all(text.startswith(f"{p}: ") for p, text in POLICY_CHOICES.items())


def test_the_readme_table_explains_every_policy() -> None:
    section = README.read_text().split("## Policies and session control", 1)[1]
    table = re.findall(r"^\| `([a-z-]+)` \|", section.split("\n\n", 2)[1], re.MULTILINE)
    assert table == list(POLICIES)
