"""The OpenAPI document covers every route of the REST API, with its methods and errors."""

from __future__ import annotations

from typing import Any

import hypothesis
from hypothesis import strategies as st
from starlette.routing import Route

from seatguard import api
from seatguard.identity.jwks import JWKS_URI_PATTERN, check_jwks_uri
from seatguard.names import MAX_NAME, NAME_PATTERN
from seatguard.openapi import document
from seatguard.presence import MAX_TIMEOUT

PREFIX = "/api/v1"


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(path under /api/v1, method) -> operation, for every operation of the document."""
    return {
        (path, method.upper()): op
        for path, item in document()["paths"].items()
        for method, op in item.items()
    }


def routed() -> set[tuple[str, str]]:
    """(path under /api/v1, method) for every route of `api.routes()`; HEAD goes with GET.

    Paths as OpenAPI writes them: `{user}` where the route says `{user:any}`."""
    found = set()
    for route in api.routes():
        assert isinstance(route, Route) and route.path.startswith(PREFIX + "/")
        assert route.methods is not None
        path = route.path_format[len(PREFIX) :]
        found |= {(path, m) for m in route.methods if m != "HEAD"}
    return found


def test_every_route_is_documented_with_its_methods_and_nothing_else() -> None:
    assert routed() == set(operations())


def test_each_path_is_one_route_so_a_wrong_method_names_every_allowed_one() -> None:
    paths = [r.path for r in api.routes() if isinstance(r, Route)]
    assert len(paths) == len(set(paths))


CREATES = {"POST /users/{user}/suspension"}
"""Operations on a path with a parameter that have no 404: whatever the path names exists."""


def test_every_operation_lists_its_error_responses() -> None:
    for (path, method), op in operations().items():
        responses = op["responses"]
        where = f"{method} {path}"
        assert {"401", "405"} <= set(responses), where
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(responses), where
        if op["parameters"]:
            assert "422" in responses, where
        # Any valid user id can be suspended: users exist for Seatguard once they say hello.
        if "{" in path and method in ("DELETE", "PUT", "POST") and where not in CREATES:
            assert "404" in responses, where
        for status, response in responses.items():
            if status.startswith(("4", "5")):
                content = response["content"]["application/problem+json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Problem"}, where


def test_every_reference_resolves() -> None:
    doc = document()
    schemas = doc["components"]["schemas"]

    def refs(node: object) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for v in node.values() for r in refs(v)]
        if isinstance(node, list):
            return [r for v in node for r in refs(v)]
        return []

    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in schemas, ref


def test_site_rules_are_documented() -> None:
    ops = operations()
    patch = ops[("/site", "PATCH")]
    assert patch["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SiteIn"
    }
    fields = document()["components"]["schemas"]["SiteIn"]["properties"]
    assert set(fields) == {
        "mode",
        "limit",
        "policy",
        "idle_timeout",
        "absolute_timeout",
        "client_settings",
        "identity_jwks_uri",
        "oidc_jwks_uri",
        "identity_max_lifetime",
        "seat_tokens",
        "seat_token_ttl",
    }
    lifetime = fields["identity_max_lifetime"]
    assert (lifetime["type"], lifetime["minimum"], lifetime["maximum"]) == ("integer", 60, 2592000)
    ttl = fields["seat_token_ttl"]
    assert (ttl["type"], ttl["minimum"], ttl["maximum"]) == ("integer", 30, 900)
    assert fields["seat_tokens"] == {"type": "boolean"}
    assert "404" in ops[("/users/{user}/revoke", "POST")]["responses"]


def schemas() -> dict[str, Any]:
    found: dict[str, Any] = document()["components"]["schemas"]
    return found


def params(path: str, method: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operations()[(path, method)]["parameters"]}


NAME = {"type": "string", "minLength": 1, "maxLength": MAX_NAME, "pattern": NAME_PATTERN}


def test_a_user_id_in_any_path_is_any_valid_name() -> None:
    for (path, method), op in operations().items():
        for p in op["parameters"]:
            if p["name"] in ("user", "name") and p["in"] == "path":
                assert p["required"] is True
                assert p["schema"] == NAME, (path, method)
    session = params("/users/{user}/sessions/{session}", "DELETE")["session"]
    assert session["schema"] == {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$"}
    assert params("/overrides/{scope}/{name}", "PUT")["scope"]["schema"]["enum"] == [
        "org",
        "role",
        "user",
    ]


def test_the_bounds_the_server_enforces_are_in_the_document() -> None:
    limit = {"type": "integer", "minimum": 1, "maximum": 1000}
    timeout = {
        "type": "number",
        "minimum": 0,
        "maximum": MAX_TIMEOUT,
        "description": "Seconds; 0 is off (no timeout)",
    }
    seconds = {"anyOf": [timeout, {"type": "null"}]}
    override, site = schemas()["OverrideIn"]["properties"], schemas()["SiteIn"]["properties"]
    assert override["limit"] == {"anyOf": [limit, {"type": "null"}], "default": None}
    assert site["limit"] == limit
    for name in ("idle_timeout", "absolute_timeout"):
        assert override[name] == {**seconds, "default": None}
        assert site[name] == seconds
    for name in ("identity_jwks_uri", "oidc_jwks_uri"):
        (uri, null) = site[name]["anyOf"]
        assert (uri["pattern"], uri["maxLength"], null) == (
            JWKS_URI_PATTERN,
            2048,
            {"type": "null"},
        )
    audit = params("/audit", "GET")
    assert audit["limit"]["schema"] == {**limit, "default": 100}
    assert audit["after"]["schema"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 2**63 - 1,
        "default": 0,
    }
    assert audit["user"]["schema"] == {"anyOf": [NAME, {"const": ""}]}
    assert not any(p["required"] for p in audit.values())


def _leaves(schema: Any, where: str, seen: frozenset[str] = frozenset()) -> Any:
    """(where, schema) of every number and string a request may hold under `schema`,
    through references, properties, items, values and choices."""
    if not isinstance(schema, dict):
        return
    ref = schema.get("$ref")
    if ref is not None and ref not in seen:
        name = ref.rsplit("/", 1)[1]
        yield from _leaves(schemas()[name], f"{where}({name})", seen | {ref})
    if schema.get("type") in ("integer", "number", "string"):
        yield where, schema
    for key in ("properties", "patternProperties"):
        for name, sub in schema.get(key, {}).items():
            yield from _leaves(sub, f"{where}.{name}", seen)
    for key in ("items", "additionalProperties", "not", "contentSchema"):
        yield from _leaves(schema.get(key), f"{where}[]", seen)
    for key in ("anyOf", "oneOf", "allOf"):
        for sub in schema.get(key, []):
            yield from _leaves(sub, where, seen)


def test_every_number_and_string_a_request_holds_has_its_bounds_in_the_document() -> None:
    """Numbers have a lowest and a highest value, strings a length, a pattern or a set of
    values: what the server refuses, a client can tell from the document."""
    unbounded = []
    for (path, method), op in operations().items():
        content = op.get("requestBody", {}).get("content", {}).values()
        found = [
            *(x for c in content for x in _leaves(c["schema"], "body")),
            *(x for p in op["parameters"] for x in _leaves(p["schema"], p["name"])),
        ]
        for where, schema in found:
            if schema["type"] == "string":
                bounded = {"maxLength", "pattern", "enum", "const"} & set(schema)
            else:
                low = {"minimum", "exclusiveMinimum", "enum", "const"} & set(schema)
                bounded = low and {"maximum", "exclusiveMaximum", "enum", "const"} & set(schema)
            if not bounded:
                unbounded.append(f"{method} {path} {where}: {schema}")
    assert unbounded == []


def test_revoking_a_group_takes_exactly_one_of_org_role_or_all() -> None:
    revoke = operations()[("/revoke", "POST")]
    assert revoke["requestBody"]["required"] is True  # without a body it cannot say which
    choices = schemas()["RevokeWhereIn"]["oneOf"]
    assert [c["required"] for c in choices] == [["org"], ["role"], ["all"]]
    assert choices[2]["properties"]["all"] == {"const": True}


def test_a_conflicting_site_change_is_documented() -> None:
    assert "409" in operations()[("/site", "PATCH")]["responses"]


def test_401_and_405_document_their_headers() -> None:
    for op in operations().values():
        assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
        assert "Allow" in op["responses"]["405"]["headers"]


@hypothesis.settings(max_examples=300, derandomize=True, database=None, deadline=None)
@hypothesis.given(st.from_regex(JWKS_URI_PATTERN, fullmatch=True).filter(lambda u: len(u) <= 2048))
def test_every_jwks_uri_the_document_allows_is_accepted(uri: str) -> None:
    assert check_jwks_uri(uri) == uri


def test_secret_rotation_is_documented_with_its_bounds() -> None:
    op = operations()[("/site/secret", "POST")]
    assert op["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/SecretRotationIn"
    }
    assert {"200", "401", "403", "409", "422"} <= set(op["responses"])
    fields = document()["components"]["schemas"]["SecretRotationIn"]["properties"]
    assert fields["overlap"] == {
        "type": "integer",
        "minimum": 0,
        "maximum": 604800,
        "default": 86400,
    }
    assert sorted(fields["kind"]["enum"]) == ["identity", "secret_key", "webhook"]
    out = document()["components"]["schemas"]["SecretRotatedOut"]["properties"]
    assert set(out) == {"kind", "secret", "previous_valid_until", "previous_valid_until_iso"}
