"""The OpenAPI document covers every route of the REST API, with its methods and errors."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from seatguard import api
from seatguard.openapi import document

PREFIX = "/api/v1"


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(path under /api/v1, method) -> operation, for every operation of the document."""
    return {
        (path, method.upper()): op
        for path, item in document()["paths"].items()
        for method, op in item.items()
    }


def routed() -> set[tuple[str, str]]:
    """(path under /api/v1, method) for every route of `api.routes()`; HEAD goes with GET."""
    found = set()
    for route in api.routes():
        assert isinstance(route, Route) and route.path.startswith(PREFIX + "/")
        assert route.methods is not None
        found |= {(route.path[len(PREFIX) :], m) for m in route.methods if m != "HEAD"}
    return found


def test_every_route_is_documented_with_its_methods_and_nothing_else() -> None:
    assert routed() == set(operations())


def test_each_path_is_one_route_so_a_wrong_method_names_every_allowed_one() -> None:
    paths = [r.path for r in api.routes() if isinstance(r, Route)]
    assert len(paths) == len(set(paths))


def test_every_operation_lists_its_error_responses() -> None:
    for (path, method), op in operations().items():
        responses = op["responses"]
        where = f"{method} {path}"
        assert {"401", "405"} <= set(responses), where
        if "requestBody" in op:
            assert {"400", "413", "422"} <= set(responses), where
        if op["parameters"]:
            assert "422" in responses, where
        if "{" in path and method in ("DELETE", "PUT", "POST"):
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
    }
    lifetime = fields["identity_max_lifetime"]
    assert (lifetime["type"], lifetime["minimum"], lifetime["maximum"]) == ("integer", 60, 2592000)
    assert "404" in ops[("/users/{user}/revoke", "POST")]["responses"]


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
    assert set(out) == {"kind", "secret", "previous_valid_until"}
