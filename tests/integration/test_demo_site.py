"""The demo defends itself as a site should: a CSP on its pages, no cross-site state changes."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import httpx
import pytest
from demo_site import DEMO_SITE_KEY

from tests.helpers import Server, scaled, seatguard, start_server
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab, ident

pytestmark = pytest.mark.anyio

CROSS_SITE = "https://evil.example"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]) -> Iterator[Server]:
    s = start_server(tmp_path_factory.mktemp("demo"), "demo", server_env)
    yield s
    s.stop()


@pytest.fixture
async def client(demo: Server) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=demo.http, timeout=scaled(10)) as c:
        yield c


@pytest.fixture(scope="module")
def rest_site(demo: Server) -> dict[str, Any]:
    """The demo site with a secret key of the module's own (the demo's cannot be read back),
    made once before any test opens a tab: the CLI's process can take longer to run than
    the tests' short session timeout, and a tab left without heartbeats meanwhile ends."""
    made = seatguard("site", "rotate-secret", DEMO_SITE_KEY, "--overlap", "0", "--db", str(demo.db))
    found: dict[str, Any] = json.loads(made)
    return found


def policy(r: httpx.Response) -> dict[str, str]:
    header = r.headers["content-security-policy"]
    return {d.split(" ", 1)[0]: d.split(" ", 1)[1] for d in header.split("; ")}


@pytest.mark.parametrize("path", ["/", "/watch?user=alice", "/watch?user=bob&limit=0"])
async def test_pages_carry_a_csp_whose_nonce_their_inline_scripts_bear(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path)
    assert r.status_code in (200, 400) and r.headers["content-type"].startswith("text/html")
    assert r.headers["x-content-type-options"] == "nosniff"
    csp = policy(r)
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'" and csp["base-uri"] == "'none'"
    assert "'unsafe-inline'" not in csp["script-src"]
    (nonce,) = re.findall(r"'nonce-([A-Za-z0-9_-]{20,})'", csp["script-src"])
    scripts = re.findall(r"<script([^>]*)>", r.text)
    inline = [attrs for attrs in scripts if "src=" not in attrs]
    assert all(f'nonce="{nonce}"' in attrs for attrs in inline), scripts
    assert (await client.get(path)).headers["content-security-policy"] != r.headers[
        "content-security-policy"
    ]  # a nonce per answer


async def live_user(demo: Server) -> tuple[str, Tab]:
    user = "demo-" + ident()
    tab, welcome = await Tab.open(demo.ws, DEMO_SITE_KEY, Browser(user), origin=demo.http)
    assert welcome["state"] == "admitted"
    return user, tab


REVOKES = {
    # Refused: a page of another site, or nothing that says where the request came from.
    "origin": ({"Origin": CROSS_SITE}, False),
    "null-origin": ({"Origin": "null"}, False),  # a sandboxed frame or a data: URL
    "origin-wins": ({"Origin": CROSS_SITE, "Sec-Fetch-Site": "same-origin"}, False),
    "fetch-site": ({"Sec-Fetch-Site": "cross-site"}, False),
    "same-site": ({"Sec-Fetch-Site": "same-site"}, False),
    "referer": ({"Referer": CROSS_SITE + "/attack"}, False),
    "referer-prefix": ({"Referer": "{own}.evil.example/watch"}, False),
    "nothing": ({}, False),
    # Passed: the demo's own page, by whichever header the browser sent.
    "own-origin": ({"Origin": "{own}"}, True),
    "own-fetch-site": ({"Sec-Fetch-Site": "same-origin"}, True),
    "own-referer": ({"Referer": "{own}/watch?user=x"}, True),
}


@pytest.mark.parametrize("case", REVOKES)
async def test_only_the_demos_own_pages_revoke(
    demo: Server, client: httpx.AsyncClient, case: str
) -> None:
    headers, allowed = REVOKES[case]
    user, tab = await live_user(demo)
    sent = {k: v.format(own=demo.http) for k, v in headers.items()}
    r = await client.post("/demo/revoke", params={"user": user}, headers=sent)
    if not allowed:
        assert (r.status_code, r.json()) == (403, {"error": "cross-site requests are refused"})
        assert await tab.heartbeat() == {"t": "ack", "ref": 1}  # still signed in
        return
    assert (r.status_code, r.json()) == (200, {"revoked": [tab.browser.session]}), r.text
    code, _, _ = await tab.closed()
    assert code == 4010


async def idle_override(demo: Server, site: dict[str, Any], user: str) -> float | None:
    async with api(demo, site) as rest:
        for o in (await rest.get("/overrides")).json():
            if (o["scope"], o["name"]) == ("user", user):
                return float(o["idle_timeout"])
    return None


SUBRESOURCE = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}


@pytest.mark.parametrize(
    "headers",
    [
        {**SUBRESOURCE, "Sec-Fetch-Dest": "image"},
        {**SUBRESOURCE, "Sec-Fetch-Dest": "script"},
        {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"},
        {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"},
    ],
    ids=["img", "script", "iframe", "fetch"],
)
async def test_another_sites_page_cannot_change_a_plan(
    demo: Server, client: httpx.AsyncClient, rest_site: dict[str, Any], headers: dict[str, str]
) -> None:
    user = "demo-" + ident()
    await client.get("/watch", params={"user": user, "idle": "600"})
    assert await idle_override(demo, rest_site, user) == 600
    for idle in ("1", ""):  # neither set it to one second nor remove it
        r = await client.get("/watch", params={"user": user, "idle": idle}, headers=headers)
        assert r.status_code == 403
        assert await idle_override(demo, rest_site, user) == 600


@pytest.mark.parametrize(
    "headers",
    [
        {
            "Sec-Fetch-Site": "cross-site",
            "Sec-Fetch-Mode": "navigate",
            "Sec-Fetch-Dest": "document",
        },
        {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"},
        {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "navigate"},
        {},  # a browser without Fetch Metadata, or curl
    ],
    ids=["deep-link", "typed", "own-form", "no-metadata"],
)
async def test_a_deep_link_still_opens_its_plan(
    demo: Server, client: httpx.AsyncClient, rest_site: dict[str, Any], headers: dict[str, str]
) -> None:
    user = "demo-" + ident()
    r = await client.get("/watch", params={"user": user, "idle": "30"}, headers=headers)
    assert r.status_code == 200
    assert await idle_override(demo, rest_site, user) == 30


@pytest.mark.parametrize("user", ["tab\there", "u" * 257, "c1\x85inside"], ids=repr)
async def test_the_demo_takes_the_same_user_ids(client: httpx.AsyncClient, user: str) -> None:
    r = await client.get("/watch", params={"user": user})
    assert r.status_code == 400 and "A user id has 1 to 256 characters" in r.text
    r = await client.get("/demo/sessions", params={"user": user})
    assert r.status_code == 400
    r = await client.get("/demo/sessions", params={"user": "a/b ✓"})
    assert (r.status_code, r.json(), r.headers["cache-control"]) == (200, [], "no-store")


@pytest.fixture
async def no_policy(client: httpx.AsyncClient, demo: Server) -> AsyncIterator[None]:
    """The demo site without a policy after the test, whatever it set."""
    yield
    r = await client.post("/demo/policy", data={"preset": "none"}, headers={"Origin": demo.http})
    assert r.status_code == 200


async def preset_in_force(client: httpx.AsyncClient) -> str | None:
    r = await client.get("/demo/policy")
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    name: str | None = r.json()["preset"]
    return name


@pytest.mark.parametrize("case", REVOKES)
@pytest.mark.usefixtures("no_policy")
async def test_only_the_demos_own_pages_set_a_policy(
    demo: Server, client: httpx.AsyncClient, case: str
) -> None:
    headers, allowed = REVOKES[case]
    sent = {k: v.format(own=demo.http) for k, v in headers.items()}
    r = await client.post("/demo/policy", data={"preset": "block-third-device"}, headers=sent)
    if not allowed:
        assert (r.status_code, r.json()) == (403, {"error": "cross-site requests are refused"})
        assert await preset_in_force(client) in (None, "none")
        return
    assert r.status_code == 200, r.text
    assert r.json()["preset"] == "block-third-device"
    assert await preset_in_force(client) == "block-third-device"


CHOOSE = "choose one preset: challenge-elsewhere, block-third-device, "


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"preset=everything-goes", 422, CHOOSE),
        (b"", 422, CHOOSE),
        (b"preset=", 422, CHOOSE),
        (b"preset=monitor&preset=none", 422, CHOOSE),
        (b"preset=%ff%fe", 422, CHOOSE),
        (b'{"rules": []}', 422, CHOOSE),  # a policy of one's own is not taken
        (b"preset=" + b"x" * 300, 413, "the form's body is limited to 256 bytes"),
    ],
    ids=["unknown", "empty", "blank", "twice", "not-utf8", "json", "oversized"],
)
@pytest.mark.usefixtures("no_policy")
async def test_a_policy_form_that_names_no_preset_is_refused(
    demo: Server, client: httpx.AsyncClient, body: bytes, status: int, message: str
) -> None:
    await client.post("/demo/policy", data={"preset": "monitor"}, headers={"Origin": demo.http})
    form = {"Origin": demo.http, "Content-Type": "application/x-www-form-urlencoded"}
    r = await client.post("/demo/policy", content=body, headers=form)
    assert r.status_code == status and r.json()["error"].startswith(message), r.text
    assert await preset_in_force(client) == "monitor"  # unchanged


@pytest.mark.usefixtures("no_policy")
async def test_a_preset_is_the_sites_policy_as_the_rest_api_reads_it(
    demo: Server, client: httpx.AsyncClient, rest_site: dict[str, Any]
) -> None:
    r = await client.post(
        "/demo/policy", data={"preset": "challenge-elsewhere"}, headers={"Origin": demo.http}
    )
    assert r.status_code == 200
    async with api(demo, rest_site) as rest:
        stored = (await rest.get("/policies")).json()
    assert stored == r.json()["policy"]
    assert [(x["name"], x["when"], x["verdict"]) for x in stored["rules"]] == [
        ("second-computer-elsewhere", {"check": "concurrent_sessions"}, "challenge")
    ]


@pytest.mark.usefixtures("no_policy")
async def test_the_checks_panel_says_what_the_rest_api_says_with_the_rule_that_holds(
    demo: Server, client: httpx.AsyncClient, rest_site: dict[str, Any]
) -> None:
    r = await client.post(
        "/demo/policy", data={"preset": "challenge-elsewhere"}, headers={"Origin": demo.http}
    )
    assert r.status_code == 200
    user = "demo-" + ident()
    first, welcome = await Tab.open(
        demo.ws, DEMO_SITE_KEY, Browser(user), origin=demo.http, source="127.0.1.1", limit=3
    )
    assert welcome["state"] == "admitted"
    # Another computer on another address at once: challenged, held without a seat.
    second, welcome = await Tab.open(
        demo.ws, DEMO_SITE_KEY, Browser(user), origin=demo.http, source="127.0.2.1", limit=3
    )
    assert (welcome["state"], welcome.get("reason")) == ("blocked", "verify"), welcome
    r = await client.get("/demo/checks", params={"user": user})
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    panel = {s["id"]: s for s in r.json()["sessions"]}
    async with api(demo, rest_site) as rest:
        listed = (await rest.get(f"/users/{user}/sessions")).json()
    assert {s["id"]: (s["checks"], s["rule"]) for s in listed["sessions"]} == {
        i: (s["checks"], s["rule"]) for i, s in panel.items()
    }
    held = panel[second.browser.session]
    assert (held["state"], held["reason"], held["rule"]) == (
        "blocked",
        "verify",
        "second-computer-elsewhere",
    )
    # Recent verdicts: the stored evaluations, as the REST API lists them (written a
    # moment after the hello).
    with anyio.fail_after(scaled(10)):
        while True:
            r = await client.get("/demo/verdicts", params={"user": user})
            assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
            shown = r.json()["evaluations"]
            if any(e["verdict"] == "challenge" for e in shown):
                break
            await anyio.sleep(0.05)
    async with api(demo, rest_site) as rest:
        stored = (await rest.get(f"/users/{user}/evaluations", params={"limit": 10})).json()
    assert shown == stored["evaluations"]
    challenged = [e for e in shown if e["session"] == second.browser.session]
    assert challenged[-1]["rule"] == "second-computer-elsewhere"
    seated = panel[first.browser.session]
    assert (seated["state"], seated["reason"], seated["rule"]) == ("admitted", None, None)
    assert seated["checks"]["concurrent_sessions"] is True
    assert (seated["ip"], held["ip"]) == ("127.0.1.1", "127.0.2.1")
    assert seated["checks"]["geo"] == "off"  # no GeoIP database here


async def test_the_checks_panel_shows_the_demo_sites_sessions_only(
    demo: Server, client: httpx.AsyncClient
) -> None:
    other = demo.create_site("--name", "Other", "--origin", "*")
    user = "demo-" + ident()
    _, welcome = await Tab.open(demo.ws, str(other["key"]), Browser(user), origin=demo.http)
    assert welcome["state"] == "admitted"
    r = await client.get("/demo/checks", params={"user": user})
    assert (r.status_code, r.json()["sessions"]) == (200, [])
    r = await client.get("/demo/verdicts", params={"user": user})
    assert (r.status_code, r.json()["evaluations"]) == (200, [])
    for bad in ("tab\there", "u" * 257, ""):
        for route in ("/demo/checks", "/demo/verdicts"):
            r = await client.get(route, params={"user": bad})
            assert (r.status_code, r.json()) == (400, {"error": "a valid user id is required"})
