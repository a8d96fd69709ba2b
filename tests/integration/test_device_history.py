"""The device history through the REST API, against real servers with real tabs: tabs from
different loopback addresses (placed by the test's own GeoIP database) and device keys make
the device list; trust is set and cleared; other tenants, bad ids and a database that fails
harm nobody."""

from __future__ import annotations

import secrets
import sqlite3
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.geodb import address
from tests.helpers import Server, scaled, start_server
from tests.integration.api_client import api
from tests.integration.client import Browser, Tab

pytestmark = pytest.mark.anyio

MOBILE_UA = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)


def user() -> str:
    return "u-" + secrets.token_hex(4)


async def devices_when(
    client: httpx.AsyncClient, u: str, count: int, **wanted: Any
) -> list[dict[str, Any]]:
    """The user's devices once there are `count` of them (the history is written a moment
    after the hello), each with the `wanted` values where given by device id."""
    with anyio.fail_after(scaled(10)):
        while True:
            r = await client.get(f"/users/{u}/devices")
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["user"] == u
            if len(body["devices"]) >= count:
                return list(body["devices"])
            await anyio.sleep(0.05)


async def device_ids(client: httpx.AsyncClient, u: str) -> dict[str, str]:
    """Session id to device id, as the server assigned them."""
    listed = (await client.get(f"/users/{u}/sessions")).json()
    return {s["id"]: s["device"] for s in listed["sessions"]}


async def test_tabs_from_two_cities_and_a_phone_make_the_device_list(geo_server: Server) -> None:
    site = geo_server.create_site("--name", "History", "--origin", "*", "--limit", "5")
    key, u = str(site["key"]), user()
    laptop, berlin, phone = Browser.keyed(u), Browser.keyed(u), Browser.keyed(u)
    before = time.time()
    await Tab.open(geo_server.ws, key, laptop, source=address("paris"))
    await Tab.open(geo_server.ws, key, laptop, source=address("paris", 9))  # one device
    await Tab.open(geo_server.ws, key, berlin, source=address("berlin"))
    phone_tab, _ = await Tab.open(
        geo_server.ws, key, phone, source=address("new-york"), user_agent=MOBILE_UA
    )
    async with api(geo_server, site) as client:
        sessions = await device_ids(client, u)
        devices = await devices_when(client, u, 3)
        assert len(devices) == 3
        by_id = {d["device"]: d for d in devices}
        assert set(by_id) == set(sessions.values())
        country = {
            sessions[b.session]: c for b, c in ((laptop, "FR"), (berlin, "DE"), (phone, "US"))
        }
        for device, d in by_id.items():
            assert d["country"] == country[device]
            assert d["active"] is True and d["trusted"] is False
            assert before - 1 <= d["first_seen"] <= d["last_seen"] <= time.time() + 1
            assert len(d["sessions"]) == 1
            assert d["device_type"] == (
                "mobile" if device == sessions[phone.session] else "computer"
            )
        # Most recently seen first.
        assert [d["last_seen"] for d in devices] == sorted(
            (d["last_seen"] for d in devices), reverse=True
        )
        phone_id = sessions[phone.session]
        # Trust the phone, then stop trusting it.
        r = await client.put(f"/users/{u}/devices/{phone_id}/trust")
        assert r.status_code == 200, r.text
        assert r.json()["user"] == u and r.json()["device"]["trusted"] is True
        listed = {
            d["device"]: d for d in (await client.get(f"/users/{u}/devices")).json()["devices"]
        }
        assert listed[phone_id]["trusted"] is True
        assert sum(d["trusted"] for d in listed.values()) == 1
        r = await client.delete(f"/users/{u}/devices/{phone_id}/trust")
        assert (r.status_code, r.json()["device"]["trusted"]) == (200, False)
        # The phone's tab leaves: the device stays in the history, no longer active.
        await phone_tab.ws.close()
        with anyio.fail_after(scaled(10)):
            while True:
                listed = {
                    d["device"]: d
                    for d in (await client.get(f"/users/{u}/devices")).json()["devices"]
                }
                if not listed[phone_id]["active"]:
                    break
                await anyio.sleep(0.1)
        assert listed[phone_id]["country"] == "US"


async def test_another_tenant_and_bad_ids_get_clear_errors(geo_server: Server) -> None:
    site = geo_server.create_site("--name", "Mine", "--origin", "*")
    other = geo_server.create_site("--name", "Theirs", "--origin", "*")
    u = user()
    b = Browser.keyed(u)
    await Tab.open(geo_server.ws, str(site["key"]), b, source=address("paris"))
    async with api(geo_server, site) as mine, api(geo_server, other) as theirs:
        (device,) = (await device_ids(mine, u)).values()
        await devices_when(mine, u, 1)
        # Another site's key sees no device of this user, and cannot trust one.
        assert (await theirs.get(f"/users/{u}/devices")).json() == {"user": u, "devices": []}
        r = await theirs.put(f"/users/{u}/devices/{device}/trust")
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert (await mine.get(f"/users/{u}/devices")).json()["devices"][0]["trusted"] is False
        # Unknown device, unknown user: 404; malformed device ids: 422; no key: 401.
        assert (await mine.put(f"/users/{u}/devices/unknown-device/trust")).status_code == 404
        assert (await mine.delete(f"/users/nobody/devices/{device}/trust")).status_code == 404
        for bad in ("short", "x" * 65, "bad%20id", "%00%00%00%00%00%00%00%00", "a.b.c.d.e.f.g"):
            r = await mine.put(f"/users/{u}/devices/{bad}/trust")
            assert r.status_code in (404, 422), (bad, r.status_code)
            assert r.headers["content-type"] == "application/problem+json"
        assert (await mine.put(f"/users/{u}/devices/short/trust")).status_code == 422
        assert (await mine.post(f"/users/{u}/devices/{device}/trust")).status_code == 405
    async with httpx.AsyncClient() as plain:
        r = await plain.get(f"{geo_server.http}/api/v1/users/{u}/devices")
        assert r.status_code == 401


async def test_forty_browsers_of_one_user_are_forty_devices(geo_server: Server) -> None:
    site = geo_server.create_site("--name", "Many", "--origin", "*", "--limit", "1000")
    key, u = str(site["key"]), user()
    count = 40
    tabs = []
    for _ in range(count):
        tab, _ = await Tab.open(geo_server.ws, key, Browser(u), source=address("paris"))
        tabs.append(tab)
    async with api(geo_server, site) as client:
        devices = await devices_when(client, u, count)
        assert len(devices) == count and all(d["active"] for d in devices)


async def test_a_database_that_fails_to_record_does_not_refuse_the_hello(
    tmp_path: Path, server_env: dict[str, str]
) -> None:
    server = start_server(tmp_path, "serve", server_env)
    try:
        site = server.create_site("--name", "Broken", "--origin", "*")
        # Break the history table from outside: every write of the history now fails.
        with sqlite3.connect(server.db) as conn:
            conn.execute("DROP TABLE user_history")
            conn.execute("CREATE TABLE user_history (unrelated text)")
        u = user()
        for _ in range(3):
            await Tab.open(server.ws, str(site["key"]), Browser(u))
        async with api(server, site) as client:
            listed = (await client.get(f"/users/{u}/sessions")).json()
            assert len(listed["sessions"]) == 3
        await anyio.sleep(scaled(0.5))
        log = server.log.read_text()
        assert "device history of" in log and "Traceback" not in log
        assert log.count("device history of") == 1  # one line, not one per hello
        # Listing the sessions read the history for their checks: one line for that too.
        assert log.count("could not read a user's history for the checks") == 1
        assert all("checks" in s for s in listed["sessions"])
    finally:
        server.stop()


async def test_each_session_shows_its_checks_against_the_users_others(geo_server: Server) -> None:
    # A laptop in Paris and another in Berlin at once: both are concurrent sessions (two
    # IPs, one device type) on an impossible journey. A phone in Berlin beside them is not
    # concurrent (the only mobile) but its city is still far from Paris.
    site = geo_server.create_site("--name", "Checks", "--origin", "*", "--limit", "5")
    other = geo_server.create_site("--name", "Other", "--origin", "*")  # before any tab
    key, u = str(site["key"]), user()
    paris, berlin, phone = Browser.keyed(u), Browser.keyed(u), Browser.keyed(u)
    await Tab.open(geo_server.ws, key, paris, source=address("paris"))
    await Tab.open(geo_server.ws, key, berlin, source=address("berlin"))
    await Tab.open(geo_server.ws, key, phone, source=address("berlin", 7), user_agent=MOBILE_UA)
    async with api(geo_server, site) as client:
        r = await client.get(f"/users/{u}/sessions")
    assert r.status_code == 200, r.text
    checks = {s["id"]: s["checks"] for s in r.json()["sessions"]}
    first, second, mobile = (checks[b.session] for b in (paris, berlin, phone))
    assert (first["ip_country"], second["ip_country"], mobile["ip_country"]) == ("FR", "DE", "DE")
    assert first["concurrent_sessions"] and second["concurrent_sessions"]
    assert not mobile["concurrent_sessions"]
    assert first["impossible_travel"] and second["impossible_travel"]
    assert first["device_count"] == 3 and first["computer_device_count"] == 2
    assert first["mobile_device_count"] == 1 and first["geo"] == "on"
    # Another site's key sees none of it (the sessions are live: the CLI ran first).
    async with api(geo_server, other) as client:
        r = await client.get(f"/users/{u}/sessions")
    assert r.status_code == 200 and r.json()["sessions"] == []


async def test_without_a_geoip_database_the_geo_checks_say_they_are_off(server: Server) -> None:
    site = server.create_site("--name", "No geo", "--origin", "*")
    u = user()
    await Tab.open(server.ws, str(site["key"]), Browser(u))
    async with api(server, site) as client:
        r = await client.get(f"/users/{u}/sessions")
    (session,) = r.json()["sessions"]
    checks = session["checks"]
    assert checks["geo"] == "off"
    assert checks["ip_country"] is None and checks["impossible_travel"] is None
    assert checks["concurrent_sessions"] is False and checks["is_new_device"] is True


async def test_trust_changes_are_audited_once_with_who_made_them(geo_server: Server) -> None:
    site = geo_server.create_site("--name", "Audited", "--origin", "*")
    other = geo_server.create_site("--name", "Elsewhere", "--origin", "*")
    u = user()
    await Tab.open(geo_server.ws, str(site["key"]), Browser.keyed(u), source=address("paris"))

    async def trust_rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
        kinds = ("device_trusted", "device_untrusted")
        records = (await client.get("/audit", params={"limit": 1000})).json()["records"]
        return [r for r in records if r["kind"] in kinds]

    async with api(geo_server, site) as mine, api(geo_server, other) as theirs:
        (device,) = (await device_ids(mine, u)).values()
        await devices_when(mine, u, 1)
        url = f"/users/{u}/devices/{device}/trust"
        assert (await theirs.put(url)).status_code == 404  # another tenant's: no row anywhere
        async with anyio.create_task_group() as tg:  # sent twice at once: one change, one row
            for _ in range(2):
                tg.start_soon(mine.put, url)
        assert (await mine.put(url)).status_code == 200  # already trusted: no row
        assert (await mine.delete(url)).status_code == 200
        assert (await mine.delete(url)).status_code == 200  # already untrusted: no row
        assert (await mine.put(f"/users/{u}/devices/unknown-device/trust")).status_code == 404
        found = await trust_rows(mine)
        assert await trust_rows(theirs) == []
    by = {"by": "api", "key": "current"}
    assert [(r["kind"], r["user"], r["device"], r["session"], r["detail"]) for r in found] == [
        ("device_trusted", u, device, None, by),
        ("device_untrusted", u, device, None, by),
    ]
