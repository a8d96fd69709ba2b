"""The sharing checks over plain data: each check by example, their invariants (Hypothesis),
and hostile inputs (times that are not numbers, a clock going back, very many sessions)."""

from __future__ import annotations

import math
import time

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seatguard.signals.checks import (
    CHECKS,
    DAY,
    Activity,
    Checks,
    DeviceSeen,
    History,
    Previous,
    SessionView,
    Thresholds,
    changed,
    evaluate,
    network_key,
    remember,
)
from seatguard.signals.places import Place, separation_km
from seatguard.types import DeviceType

T = Thresholds()
NOW = 1_000_000.0
HOUR = 3600.0
PARIS = Place("FR", 48.8566, 2.3522, 20.0)
VERSAILLES = Place("FR", 48.8049, 2.1204, 20.0)
BERLIN = Place("DE", 52.52, 13.405, 20.0)
NEW_YORK = Place("US", 40.7128, -74.006, 50.0)


def view(
    session: str,
    *,
    device: str | None = None,
    device_type: DeviceType = "computer",
    ip: str = "81.0.0.1",
    place: Place | None = PARIS,
    started: float = NOW - 60,
    last_seen: float = NOW,
    active: bool = True,
) -> SessionView:
    return SessionView(
        session=session,
        device=device or f"dev-{session}",
        device_type=device_type,
        ip=ip,
        place=place,
        started=started,
        last_seen=last_seen,
        active=active,
    )


def run(*sessions: SessionView, geo: bool = True, **kw: object) -> dict[str, Checks]:
    return evaluate(Activity(sessions=sessions, geo=geo, **kw), T, NOW)  # type: ignore[arg-type]


# concurrent_sessions


def test_two_laptops_on_two_networks_are_concurrent() -> None:
    out = run(view("a", ip="81.0.0.1"), view("b", ip="81.0.9.9", place=BERLIN))
    assert out["a"].concurrent_sessions and out["b"].concurrent_sessions


def test_a_phone_and_a_laptop_of_one_person_are_not_concurrent() -> None:
    out = run(view("laptop", ip="81.0.0.1"), view("phone", ip="100.64.0.7", device_type="mobile"))
    assert not out["laptop"].concurrent_sessions and not out["phone"].concurrent_sessions


def test_two_sessions_behind_one_address_are_not_concurrent() -> None:
    out = run(view("a", ip="81.0.0.1"), view("b", ip="81.0.0.1"), view("c", ip="81.0.0.1"))
    assert not any(c.concurrent_sessions for c in out.values())


def test_addresses_of_one_ipv6_network_are_one_ip() -> None:
    out = run(view("a", ip="2a00:1450:1:2::1"), view("b", ip="2a00:1450:1:2:abcd::9"))
    assert not out["a"].concurrent_sessions
    out = run(view("a", ip="2a00:1450:1:2::1"), view("b", ip="2a00:1450:1:3::1"))
    assert out["a"].concurrent_sessions


def test_only_active_sessions_make_others_concurrent() -> None:
    out = run(view("a", ip="81.0.0.1"), view("b", ip="81.0.9.9", active=False))
    assert not out["a"].concurrent_sessions
    # The inactive one still sees an active session elsewhere.
    assert out["b"].concurrent_sessions


def test_a_third_network_makes_every_session_of_the_type_concurrent() -> None:
    out = run(view("a", ip="1.1.1.1"), view("b", ip="1.1.1.1"), view("c", ip="2.2.2.2"))
    assert all(c.concurrent_sessions for c in out.values())


# device counts


def test_device_counts_now_and_within_the_window() -> None:
    history = History(
        devices={
            "old-tablet": DeviceSeen(NOW - 40 * DAY, NOW - 31 * DAY, "tablet"),
            "tablet": DeviceSeen(NOW - 20 * DAY, NOW - 10 * DAY, "tablet"),
            "laptop": DeviceSeen(NOW - 20 * DAY, NOW - DAY, "computer"),
        }
    )
    out = run(
        view("a", device="laptop"),
        view("b", device="laptop"),  # a second browser session of the same device
        view("c", device="phone", device_type="mobile"),
        view("d", device="desk", active=False),
        history=history,
    )
    c = out["a"]
    assert (c.device_count, c.computer_device_count, c.tablet_device_count) == (2, 1, 0)
    assert c.mobile_device_count == 1
    assert c.device_count_window == 4  # laptop, phone, desk, tablet; not the old tablet
    assert (c.computer_device_count_window, c.tablet_device_count_window) == (2, 1)
    assert c.mobile_device_count_window == 1
    assert all(o.device_count == 2 for o in out.values())


def test_a_device_counts_once_with_its_latest_type() -> None:
    out = run(
        view("a", device="ipad", device_type="computer", last_seen=NOW - 10),
        view("b", device="ipad", device_type="tablet", last_seen=NOW),
    )
    c = out["a"]
    assert (c.device_count, c.computer_device_count, c.tablet_device_count) == (1, 0, 1)


# is_new_device, is_new_ip


def test_new_and_known_devices_and_networks() -> None:
    history = History(
        devices={"laptop": DeviceSeen(NOW - 5 * DAY, NOW - DAY)},
        networks={"81.0.0.1": DeviceSeen(NOW - 5 * DAY, NOW - DAY)},
    )
    out = run(
        view("known", device="laptop", ip="81.0.0.1"),
        view("fresh", device="phone", device_type="mobile", ip="100.64.0.1"),
        history=history,
    )
    assert not out["known"].is_new_device and not out["known"].is_new_ip
    assert out["fresh"].is_new_device and out["fresh"].is_new_ip


def test_a_device_unseen_for_longer_than_the_window_is_new_again() -> None:
    history = History(devices={"laptop": DeviceSeen(NOW - 90 * DAY, NOW - 31 * DAY)})
    assert run(view("a", device="laptop"), history=history)["a"].is_new_device


def test_an_earlier_current_session_makes_the_device_known_to_a_later_one() -> None:
    out = run(
        view("first", device="laptop", started=NOW - 600),
        view("second", device="laptop", started=NOW - 60),
    )
    assert out["first"].is_new_device and not out["second"].is_new_device
    assert out["first"].is_new_ip and not out["second"].is_new_ip


def test_new_stays_new_once_the_history_remembers_the_session() -> None:
    s = view("a", device="laptop", started=NOW - 60)
    before = run(s)["a"]
    history = remember(History(), [s], T, NOW)
    assert history.devices["laptop"].first == NOW - 60
    after = run(s, history=history)["a"]
    assert before.is_new_device and after.is_new_device and after.is_new_ip
    # A known device stays known when its own session is remembered.
    old = History(devices={"laptop": DeviceSeen(NOW - 10 * DAY, NOW - 9 * DAY)})
    assert not run(s, history=old)["a"].is_new_device
    assert not run(s, history=remember(old, [s], T, NOW))["a"].is_new_device


def test_remember_restarts_stale_entries_and_forgets_old_ones() -> None:
    old = History(
        devices={
            "laptop": DeviceSeen(NOW - 90 * DAY, NOW - 40 * DAY),
            "gone": DeviceSeen(NOW - 90 * DAY, NOW - 31 * DAY),
        },
        networks={"81.0.0.1": DeviceSeen(NOW - 9 * DAY, NOW - 2 * DAY)},
    )
    s = view("a", device="laptop", ip="81.0.0.1", device_type="tablet")
    new = remember(old, [s], T, NOW)
    assert new.devices == {"laptop": DeviceSeen(NOW - 60, NOW, "tablet", country="FR")}
    assert new.networks["81.0.0.1"].first == NOW - 9 * DAY
    assert new.networks["81.0.0.1"].last == NOW


def test_a_trusted_device_is_never_new_and_never_counted() -> None:
    old = History(devices={"laptop": DeviceSeen(NOW - DAY, NOW - DAY, trusted=True)})
    out = run(
        view("a", device="laptop"), view("b", device="phone", device_type="mobile"), history=old
    )
    for checks in out.values():
        assert (checks.device_count, checks.computer_device_count) == (1, 0)
        assert (checks.device_count_window, checks.computer_device_count_window) == (1, 0)
        assert checks.mobile_device_count == checks.mobile_device_count_window == 1
    assert not out["a"].is_new_device and out["b"].is_new_device
    untrusted = History(devices={"laptop": DeviceSeen(NOW - DAY, NOW - DAY)})
    assert run(view("a", device="laptop"), history=untrusted)["a"].device_count == 1


def test_a_trusted_device_stays_trusted_and_past_the_window() -> None:
    old = History(
        devices={
            "laptop": DeviceSeen(NOW - 90 * DAY, NOW - 40 * DAY, trusted=True),
            "old": DeviceSeen(NOW - 90 * DAY, NOW - 40 * DAY),
        }
    )
    assert set(remember(old, [], T, NOW).devices) == {"laptop"}
    again = remember(old, [view("a", device="laptop", place=None)], T, NOW).devices["laptop"]
    assert again.trusted and again.first == NOW - 60 and again.country is None


def test_the_country_is_the_latest_sightings_and_none_keeps_it() -> None:
    paris = remember(History(), [view("a", device="d", place=PARIS)], T, NOW)
    assert paris.devices["d"].country == "FR"
    later = view("b", device="d", place=BERLIN, started=NOW + 1, last_seen=NOW + 2)
    assert remember(paris, [later], T, NOW).devices["d"].country == "DE"
    earlier = view("c", device="d", place=BERLIN, started=NOW - 9, last_seen=NOW - 5)
    assert remember(paris, [earlier], T, NOW).devices["d"].country == "FR"
    unknown = view("e", device="d", place=None, started=NOW + 1, last_seen=NOW + 2)
    assert remember(paris, [unknown], T, NOW).devices["d"].country == "FR"


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["d1", "d2", "d3", "d4"]), min_size=1, max_size=8),
    st.sets(st.sampled_from(["d1", "d2", "d3", "d4"])),
)
def test_trusting_devices_only_lowers_counts_and_newness(
    devices: list[str], trusted: set[str]
) -> None:
    sessions = tuple(view(f"s{i}", device=d) for i, d in enumerate(devices))
    plain = History(devices={d: DeviceSeen(NOW - 5 * DAY, NOW - 4 * DAY) for d in set(devices)})
    marked = History(
        devices={
            d: msgspec.structs.replace(s, trusted=d in trusted) for d, s in plain.devices.items()
        }
    )
    before, after = run(*sessions, history=plain), run(*sessions, history=marked)
    for sid, checks in after.items():
        assert checks.device_count == before[sid].device_count - len(trusted & set(devices))
        assert checks.device_count_window <= before[sid].device_count_window
        assert checks.is_new_device <= before[sid].is_new_device


def test_remember_keeps_at_most_max_history_entries() -> None:
    small = Thresholds(max_history=3)
    sessions = [view(f"s{i}", ip=f"81.0.0.{i}", last_seen=NOW - i) for i in range(10)]
    new = remember(History(), sessions, small, NOW)
    assert set(new.devices) == {"dev-s0", "dev-s1", "dev-s2"}
    assert set(new.networks) == {"81.0.0.0", "81.0.0.1", "81.0.0.2"}


# ip_country and the geo marker


def test_without_geoip_the_geo_checks_are_off_and_say_so() -> None:
    out = run(view("a", place=None), view("b", ip="2.2.2.2", place=None), geo=False)
    c = out["a"]
    assert c.geo == "off" and c.off == ("ip_country", "impossible_travel")
    assert c.ip_country is None and c.impossible_travel is None
    assert c.values()["impossible_travel"] is None and "geo" not in c.values()
    assert set(c.values()) == set(CHECKS)
    # Places given while the geo checks are off are not used.
    assert run(view("a", place=PARIS), geo=False)["a"].ip_country is None


def test_country_of_the_session_and_no_place_is_no_country() -> None:
    out = run(view("a"), view("b", ip="10.0.0.1", place=None), view("c", place=Place("DE")))
    assert out["a"].ip_country == "FR" and out["a"].geo == "on" and out["a"].off == ()
    assert out["b"].ip_country is None and out["b"].impossible_travel is False
    assert out["c"].ip_country == "DE"


# impossible_travel


def test_paris_and_berlin_at_once_is_impossible_travel_for_both() -> None:
    out = run(view("a"), view("b", ip="2.2.2.2", place=BERLIN, device_type="mobile"))
    assert out["a"].impossible_travel and out["b"].impossible_travel


def test_paris_and_versailles_at_once_is_under_the_minimum_distance() -> None:
    out = run(view("a"), view("b", ip="2.2.2.2", place=VERSAILLES))
    assert out["a"].impossible_travel is False


def test_travel_that_time_allows_is_possible() -> None:
    # Paris until NOW - 2h, Berlin from NOW: 838 km in 2 h is 419 km/h.
    early = view("a", started=NOW - 5 * HOUR, last_seen=NOW - 2 * HOUR)
    late = view("b", ip="2.2.2.2", place=BERLIN, started=NOW, last_seen=NOW)
    assert not any(c.impossible_travel for c in run(early, late).values())
    # New York five hours after Paris is 5,800 km in 5 h: too fast.
    ny = view("c", ip="3.3.3.3", place=NEW_YORK, started=NOW + 3 * HOUR, last_seen=NOW + 3 * HOUR)
    out = run(early, ny)
    assert out["a"].impossible_travel and out["c"].impossible_travel


def test_the_previous_session_counts_for_consecutive_travel() -> None:
    now = view("a", place=NEW_YORK, started=NOW - 60)
    out = run(now, previous=Previous(place=PARIS, at=NOW - 2 * HOUR))
    assert out["a"].impossible_travel
    out = run(now, previous=Previous(place=PARIS, at=NOW - 10 * HOUR))
    assert not out["a"].impossible_travel
    # A previous place with no point (a Country database) proves nothing.
    assert not run(now, previous=Previous(place=Place("FR"), at=NOW - 60))["a"].impossible_travel


def test_wide_accuracy_radii_hide_a_distance() -> None:
    vague = Place("DE", 52.52, 13.405, 500.0)
    out = run(view("a", place=Place("FR", 48.8566, 2.3522, 400.0)), view("b", place=vague))
    assert separation_km(PARIS, vague) < 500
    assert not out["a"].impossible_travel


# changed


def test_a_second_session_from_another_city_changes_the_first_sessions_checks() -> None:
    first = view("a", started=NOW - 600)
    before = run(first)
    assert changed({}, before) == {"a"}
    assert changed(before, run(first)) == frozenset()
    after = run(first, view("b", ip="2.2.2.2", place=BERLIN))
    assert changed(before, after) == {"a", "b"}
    assert after["a"].concurrent_sessions and after["a"].impossible_travel
    # A phone of the same user at home changes only the counts.
    phone = view("p", ip="81.0.0.1", device_type="mobile")
    with_phone = run(first, phone)
    assert changed(before, with_phone) == {"a", "p"}
    assert not with_phone["a"].concurrent_sessions and with_phone["a"].device_count == 2
    # A session that left is not reported; the one that stayed is, if its checks changed.
    assert changed(after, run(first)) == {"a"}


# hostile inputs


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_times_that_are_not_finite_are_refused(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        view("a", started=bad)
    with pytest.raises(ValueError, match="finite"):
        view("a", last_seen=bad)
    with pytest.raises(ValueError, match="finite"):
        DeviceSeen(bad, NOW)
    with pytest.raises(ValueError, match="finite"):
        Previous(place=PARIS, at=bad)
    with pytest.raises(ValueError, match="finite"):
        evaluate(Activity(sessions=(view("a"),)), T, bad)
    with pytest.raises(ValueError, match="finite"):
        remember(History(), [], T, bad)


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 0.0},
        {"window": math.nan},
        {"travel_speed": 0.0},
        {"travel_speed": math.inf},
        {"travel_min_km": -1.0},
        {"max_compared": 0},
        {"max_history": 0},
    ],
)
def test_thresholds_out_of_range_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="window"):
        Thresholds(**bad)  # type: ignore[arg-type]


def test_a_clock_going_back_harms_nothing() -> None:
    # Last seen before started (a sighting stamped before the start counts as at the start),
    # and `now` before both.
    a = view("a", started=NOW, last_seen=NOW - HOUR)
    b = view("b", ip="2.2.2.2", place=BERLIN, started=NOW - HOUR / 2, last_seen=NOW - 3 * HOUR)
    out = evaluate(Activity(sessions=(a, b), geo=True), T, NOW - 10 * DAY)
    # Half an hour apart: 838 km in 30 minutes is too fast.
    assert out["a"].impossible_travel and out["b"].impossible_travel
    assert out["a"].device_count == 2 and out["a"].is_new_device
    history = remember(History(), [a, b], T, NOW - 10 * DAY)
    assert history.devices["dev-a"] == DeviceSeen(NOW, NOW, country="FR")
    # Two hours apart is 419 km/h: possible.
    b = view("b", ip="2.2.2.2", place=BERLIN, started=NOW - 2 * HOUR, last_seen=NOW - 3 * HOUR)
    assert not evaluate(Activity(sessions=(a, b), geo=True), T, NOW)["a"].impossible_travel


def test_very_many_sessions_are_checked_in_bounded_time() -> None:
    cities = [PARIS, BERLIN, NEW_YORK, VERSAILLES, None]
    sessions = tuple(
        view(
            f"s{i}",
            device=f"d{i % 5000}",
            device_type=("computer", "tablet", "mobile")[i % 3],
            ip=f"10.{i % 200}.{i // 200 % 250}.1",
            place=cities[i % 5],
            started=NOW - i,
            active=i % 4 != 0,
        )
        for i in range(20_000)
    )
    history = History(devices={f"h{i}": DeviceSeen(NOW - DAY, NOW - DAY) for i in range(5000)})
    begin = time.perf_counter()
    out = evaluate(Activity(sessions=sessions, history=history, geo=True), T, NOW)
    assert time.perf_counter() - begin < 20
    assert len(out) == 20_000
    # d0, d4, d8 ... have inactive sessions only (i % 4 == 0 for all i = k mod 5000).
    assert out["s1"].device_count == 3750 and out["s1"].device_count_window == 10_000


def test_duplicate_session_ids_give_one_answer_each() -> None:
    out = run(view("a", ip="1.1.1.1"), view("a", ip="2.2.2.2"))
    assert list(out) == ["a"] and out["a"].concurrent_sessions


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("81.0.0.1", "81.0.0.1"),
        ("::ffff:81.0.0.1", "81.0.0.1"),
        ("2a00:1450:1:2:3:4:5:6", "2a00:1450:1:2::/64"),
        (" 81.0.0.1 ", "81.0.0.1"),
        ("not an ip", "not an ip"),
    ],
)
def test_network_keys(ip: str, key: str) -> None:
    assert network_key(ip) == key


# properties

IPS = ["1.1.1.1", "2.2.2.2", "3.3.3.3", "2a00:1::1", "2a00:1::2"]
PLACES = [None, PARIS, VERSAILLES, BERLIN, NEW_YORK, Place("FR")]
times = st.floats(NOW - 3 * DAY, NOW + DAY)


@st.composite
def session_lists(draw: st.DrawFn, max_size: int = 8) -> tuple[SessionView, ...]:
    n = draw(st.integers(0, max_size))
    return tuple(
        view(
            f"s{i}",
            device=draw(st.sampled_from(["d0", "d1", "d2", "d3"])),
            device_type=draw(st.sampled_from(["computer", "tablet", "mobile"])),
            ip=draw(st.sampled_from(IPS)),
            place=draw(st.sampled_from(PLACES)),
            started=draw(times),
            last_seen=draw(times),
            active=draw(st.booleans()),
        )
        for i in range(n)
    )


@given(session_lists())
def test_concurrency_is_symmetric_among_active_sessions(sessions: tuple[SessionView, ...]) -> None:
    out = evaluate(Activity(sessions=sessions), T, NOW)
    keyed = {s.session: s for s in sessions}
    for a in sessions:
        expected = any(
            b.active
            and b.session != a.session
            and b.device_type == a.device_type
            and network_key(b.ip) != network_key(a.ip)
            for b in sessions
        )
        assert out[a.session].concurrent_sessions == expected
        for b in sessions:
            if (
                a.active
                and b.active
                and a.device_type == b.device_type
                and network_key(a.ip) != network_key(b.ip)
            ):
                assert out[a.session].concurrent_sessions
                assert out[b.session].concurrent_sessions
    assert keyed.keys() == out.keys()


@given(session_lists(), st.sampled_from(IPS))
def test_concurrency_never_fires_for_one_ip(sessions: tuple[SessionView, ...], ip: str) -> None:
    one_ip = tuple(
        SessionView(**{**{f: getattr(s, f) for f in s.__struct_fields__}, "ip": ip})
        for s in sessions
    )
    assert not any(c.concurrent_sessions for c in evaluate(Activity(one_ip), T, NOW).values())


@given(session_lists())
def test_concurrency_never_fires_across_device_types(sessions: tuple[SessionView, ...]) -> None:
    types: list[DeviceType] = ["computer", "tablet", "mobile"]
    one_each = tuple(
        SessionView(**{**{f: getattr(s, f) for f in s.__struct_fields__}, "device_type": t})
        for s, t in zip(sessions[:3], types, strict=False)
    )
    assert not any(c.concurrent_sessions for c in evaluate(Activity(one_each), T, NOW).values())


@given(session_lists(), st.floats(0, 20_000), st.floats(1, 2000))
@settings(max_examples=200)
def test_travel_fires_exactly_when_too_far_too_fast(
    sessions: tuple[SessionView, ...], min_km: float, speed: float
) -> None:
    thresholds = Thresholds(travel_min_km=min_km, travel_speed=speed)
    out = evaluate(Activity(sessions, geo=True), thresholds, NOW)
    for a in sessions:
        expected = False
        for b in sessions:
            if b.session == a.session or not (a.place and b.place and a.place.located):
                continue
            if not b.place.located:
                continue
            d = separation_km(a.place, b.place)
            gap = max(0.0, b.span[0] - a.span[1], a.span[0] - b.span[1])
            if d > min_km and d > speed * gap / 3600:
                expected = True
        assert out[a.session].impossible_travel == expected


@given(session_lists(), st.floats(0, 20_000))
def test_travel_never_fires_under_the_minimum_distance(
    sessions: tuple[SessionView, ...], min_km: float
) -> None:
    out = evaluate(Activity(sessions, geo=True), Thresholds(travel_min_km=min_km), NOW)
    located = [s for s in sessions if s.place and s.place.located]
    widest = max(
        (separation_km(a.place, b.place) for a in located for b in located if a.place and b.place),
        default=0.0,
    )
    if widest <= min_km:
        assert not any(c.impossible_travel for c in out.values())


@given(session_lists(), st.floats(NOW - DAY, NOW + DAY), st.booleans())
def test_evaluation_is_deterministic_and_total(
    sessions: tuple[SessionView, ...], now: float, geo: bool
) -> None:
    activity = Activity(sessions, history=remember(History(), sessions, T, now), geo=geo)
    first = evaluate(activity, T, now)
    assert first == evaluate(activity, T, now)
    assert changed(first, evaluate(activity, T, now)) == frozenset()
    for c in first.values():
        assert c.device_count <= c.device_count_window
        assert c.computer_device_count + c.tablet_device_count + c.mobile_device_count == (
            c.device_count
        )
        assert (c.ip_country is None and c.impossible_travel is None) or geo


@given(session_lists())
def test_remembering_the_sessions_changes_no_newness(sessions: tuple[SessionView, ...]) -> None:
    """`is_new_device` and `is_new_ip` of a session read the same whether or not the history
    already holds the current sessions' sightings."""
    before = evaluate(Activity(sessions), T, NOW)
    after = evaluate(Activity(sessions, history=remember(History(), sessions, T, NOW)), T, NOW)
    for sid, c in before.items():
        assert (c.is_new_device, c.is_new_ip) == (after[sid].is_new_device, after[sid].is_new_ip)
