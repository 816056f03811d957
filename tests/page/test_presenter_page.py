"""The page for a presenter: fleet and cost charts that start with the recent past (GET
/api/sim/history) and carry markers for faults, alerts, anomalies and deployments, and the
scenario's timeline (GET /api/sim/timeline) with the jump controls.

The demo scenario (seed 7) at speed 20: metrics and cost every 10 s; deployments start at
10:00:23 and 10:00:38; faults at 10:02 (agents_leave), 10:04 (error_surge on exp-790, whose
anomaly is detected at 10:04:00) and 10:06; "Fleet Capacity Low" fires at 10:02:30 and
"High Error Rate" at 10:04:30. ("Stop before next" is the pause at the next item's time
less a second: its name avoids "Pause", which test_page.py's role queries match as a
substring.) Tests move the simulation by hand (pause, then step) so that
what the page shows is exact, whatever the machine's speed.
"""

from __future__ import annotations

import calendar
import re
import time
from typing import Any

from playwright.sync_api import expect

from .conftest import START, TIMEOUT


def at(clock: str) -> str:
    return f"2024-01-20T{clock}Z"


def open_page(page: Any, server: Any) -> None:
    page.goto(server.url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")


def sim(server: Any) -> dict[str, Any]:
    return server.api("/api/sim", server.token())  # type: ignore[no-any-return]


def run_to(server: Any, when: str) -> None:
    """Pause the simulation and step it to exactly `when` (the server's own controls)."""
    admin = server.token("admin")
    state = server.api("/api/sim", admin, {"action": "pause"})
    now = _seconds(state["simulated_time"])
    ahead = _seconds(when) - now
    assert ahead >= 0, f"the simulation is already past {when}: {state['simulated_time']}"
    if ahead:
        state = server.api("/api/sim", admin, {"action": "step", "seconds": ahead})
    assert state["paused"] and state["simulated_time"] == when, state


def _seconds(rfc3339: str) -> int:
    return calendar.timegm(time.strptime(rfc3339, "%Y-%m-%dT%H:%M:%SZ"))


def wait_for_sim(server: Any, check: Any, what: str) -> dict[str, Any]:
    """GET /api/sim until `check(state)` (waiting on the server, not asserting on time)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        state = sim(server)
        if check(state):
            return state
        assert time.monotonic() < deadline, f"{what} never happened: {state}"
        time.sleep(0.1)


def upcoming(server: Any) -> list[dict[str, Any]]:
    timeline = server.api("/api/sim/timeline", server.token())
    return [item for item in timeline["items"] if not item["done"]]


def paste_admin(page: Any, server: Any) -> None:
    page.locator("#token-input").fill(server.token("admin"))
    page.get_by_role("button", name="Use token").click()


# --- (a) the charts start with the recent past -------------------------------------------


def test_fleet_and_cost_charts_start_with_the_recent_past(page: Any, server: Any) -> None:
    # A first run to 10:03, then a fresh one stopped at 10:01:30: the server's history
    # holds both (ids go on, simulated time starts over); the charts must hold this run's.
    run_to(server, at("10:03:00"))
    server.rewind()
    run_to(server, at("10:01:30"))
    open_page(page, server)
    expect(page.locator("#sim-time")).to_have_text("2024-01-20 10:01:30Z")
    for chart in ("#fleet-chart", "#cost-chart"):
        node = page.locator(chart)
        # Paused before the page opened: every point is from before it, out of the history.
        expect(node).to_have_attribute("data-first", START)
        expect(node).to_have_attribute("data-last", at("10:01:30"))
        expect(node).to_have_attribute("data-points", "10")  # every 10 s from 10:00:00
        expect(node.locator("canvas").first).to_be_attached()
    expect(page.locator("#fleet-chart")).to_have_attribute(
        "aria-label",
        re.compile(
            r"^Fleet over simulated time: now .* mps, .*, "
            r"10:00:00 to 10:01:30; marked: 2 deployments$"
        ),
    )
    # The stats above come from the history too (nothing live has arrived yet).
    expect(page.locator("#fleet-mps")).not_to_have_text("—")
    expect(page.locator("#cost-now")).not_to_have_text("—")

    # Then live: a minute more, one point each 10 s, none twice where they overlap.
    run_to(server, at("10:02:30"))
    for chart in ("#fleet-chart", "#cost-chart"):
        node = page.locator(chart)
        expect(node).to_have_attribute("data-last", at("10:02:30"))
        expect(node).to_have_attribute("data-points", "16")
        expect(node).to_have_attribute("data-first", START)


def test_history_and_live_overlap_count_once(page: Any, server: Any) -> None:
    """The page subscribes from its snapshots' last event id; here the snapshots are made
    to say 10:01:00, so the server replays what the history request also returned."""
    run_to(server, at("10:01:30"))
    query = "/api/sim/history?channel=metrics&events=metrics.update&limit=50"
    events = server.api(query, server.token())["events"]
    # (The latest run is the last one at that time: an earlier test's run may be there too.)
    since = [e["id"] for e in events if e["timestamp"] == at("10:01:00")][-1]

    def older(route: Any) -> None:
        resp = route.fetch()
        route.fulfill(response=resp, json=dict(resp.json(), last_event_id=since))

    page.route(re.compile(r"/api/v1/(experiments|agents|deployments|alerts)$"), older)
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(f)))
    open_page(page, server)
    expect(page.locator("#log")).to_contain_text("metrics.update")  # the replay came
    assert any(since in frame for frame in sent)
    for chart in ("#fleet-chart", "#cost-chart"):
        node = page.locator(chart)
        expect(node).to_have_attribute("data-last", at("10:01:30"))
        expect(node).to_have_attribute("data-points", "10")


# --- (b) the timeline shows what comes next ------------------------------------------------


def test_the_timeline_shows_what_comes_next(page: Any, server: Any) -> None:
    run_to(server, at("10:01:00"))
    open_page(page, server)
    following = upcoming(server)
    nxt = following[0]
    next_box = page.locator("#tl-next-box")
    expect(next_box).to_have_attribute("data-at", nxt["at"])
    expect(page.locator("#tl-next")).to_contain_text(nxt["at"][11:19])
    expect(page.locator("#tl-next")).to_contain_text(nxt["what"])
    expect(page.locator("#tl-next")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#tl-eta")).to_contain_text("In 1m of simulated time")
    expect(page.locator("#tl-eta")).to_contain_text("paused")
    current = page.locator("#timeline li[aria-current='step']")
    expect(current).to_have_count(1)
    expect(current).to_have_attribute("data-at", nxt["at"])
    items = server.api("/api/sim/timeline", server.token())["items"]
    expect(page.locator("#timeline li")).to_have_count(len(items))
    expect(page.locator("#timeline li.done")).to_have_count(len(items) - len(following))

    # Running: the wall-clock equivalent at the server's speed.
    server.api("/api/sim", server.token("admin"), {"action": "pause", "at": at("10:03:00")})
    server.api("/api/sim", server.token("admin"), {"action": "resume"})
    expect(page.locator("#tl-eta")).to_contain_text("of wall time at ×20")
    # Passing an item moves the highlight to the one after (as the server now says).
    wait_for_sim(server, lambda s: s["paused"], "the pause at 10:03:00")
    nxt = upcoming(server)[0]
    assert nxt["at"] == following[1]["at"]
    expect(next_box).to_have_attribute("data-at", nxt["at"])
    expect(current).to_have_attribute("data-at", nxt["at"])
    expect(page.locator("#tl-eta")).to_contain_text("In 1m of simulated time")

    # Started over (the same scenario, simulated time goes back): what is next is early again.
    server.rewind()
    server.api("/api/sim", server.token("admin"), {"action": "pause"})
    first = upcoming(server)[0]
    assert first["at"] < nxt["at"]
    expect(page.locator("#timeline li[aria-current='step']")).to_have_attribute(
        "data-at", first["at"]
    )
    # The charts start over with it (nothing of the run before, which reached 10:03).
    expect(page.locator("#fleet-chart")).to_have_attribute(
        "data-last", re.compile(r"^2024-01-20T10:00:")
    )

    # Another scenario: the page loads its timeline.
    body = {"action": "restart", "scenario": "agent-churn", "seed": 7, "start": START}
    server.api("/api/sim", server.token("admin"), body)
    server.api("/api/sim", server.token("admin"), {"action": "pause"})
    expect(page.locator("#tl-scenario")).to_have_text("(agent-churn)")
    first = upcoming(server)[0]
    expect(page.locator("#timeline li[aria-current='step']")).to_have_attribute(
        "data-at", first["at"]
    )


# --- (c) the jump controls -------------------------------------------------------------------


def test_stop_before_next_and_step_to_next(page: Any, server: Any) -> None:
    run_to(server, at("10:00:40"))
    open_page(page, server)
    pause_next = page.get_by_role("button", name="Stop before next")
    step_next = page.get_by_role("button", name="Step to next")
    expect(pause_next).to_be_disabled()  # a viewer
    expect(step_next).to_be_disabled()
    paste_admin(page, server)
    expect(pause_next).to_be_enabled()
    nxt = upcoming(server)[0]
    assert nxt["at"] == at("10:02:00")
    expect(page.locator("#tl-next-box")).to_have_attribute("data-at", nxt["at"])

    pause_next.click()
    expect(page.locator("#jump-status")).to_contain_text("10:01:59")
    assert sim(server)["pause_at"] == at("10:01:59")
    page.get_by_role("button", name="Resume", exact=True).click()
    state = wait_for_sim(server, lambda s: s["paused"], "the pause before the next item")
    assert state["simulated_time"] == at("10:01:59")
    assert state["pause_at"] is None
    expect(page.locator("#sim-mode")).to_have_text("paused")
    expect(page.locator("#tl-eta")).to_contain_text("In 1s of simulated time")

    step_next.click()
    expect(page.locator("#jump-status")).to_contain_text("Stepped to 10:02:00")
    state = sim(server)
    assert state["simulated_time"] == nxt["at"]
    assert state["paused"] is True
    after = upcoming(server)[0]
    expect(page.locator("#tl-next-box")).to_have_attribute("data-at", after["at"])

    # Keyboard alone: the next jump is reachable and works with Enter.
    expect(step_next).to_be_enabled()  # (disabled while a jump is under way)
    step_next.focus()
    page.keyboard.press("Enter")
    expect(page.locator("#jump-status")).to_contain_text("Stepped to " + after["at"][11:19])
    assert sim(server)["simulated_time"] == after["at"]


# --- (d) markers ------------------------------------------------------------------------------


def test_markers_for_faults_alerts_anomalies_and_deployments(page: Any, server: Any) -> None:
    run_to(server, at("10:03:00"))
    open_page(page, server)
    markers = page.locator("#chart-markers")
    # From the history and the timeline, at the page's opening:
    expect(markers.locator("li[data-kind='fault']")).to_contain_text("10:02:00")
    expect(markers.locator("li[data-kind='fault']")).to_contain_text("agents_leave")
    expect(markers.locator("li[data-kind='alert']")).to_contain_text("Fleet Capacity Low")
    expect(markers.locator("li[data-kind='alert']")).to_contain_text("10:02:30")
    expect(markers.locator("li[data-kind='deployment']")).to_have_count(2)
    expect(markers.locator("li[data-kind='anomaly']")).to_have_count(0)
    # Drawn on both charts (two deployment markers, a fault, an alert).
    for chart in ("#fleet-chart", "#cost-chart"):
        expect(page.locator(chart)).to_have_attribute("data-markers", "4")
    expect(page.locator("#fleet-chart")).to_have_attribute(
        "aria-label", re.compile(r"10:00:00 to 10:03:00; marked: 2 deployments, 1 fault, 1 alert$")
    )

    # Live: the error surge, its anomaly and its alert.
    run_to(server, at("10:04:40"))
    expect(markers.locator("li[data-kind='anomaly']")).to_contain_text("error_surge on exp-790")
    expect(markers.locator("li[data-kind='fault']").first).to_contain_text("error_surge on exp-790")
    expect(markers.locator("li[data-kind='alert']").first).to_contain_text("High Error Rate")
    for chart in ("#fleet-chart", "#cost-chart"):
        expect(page.locator(chart)).to_have_attribute("data-markers", "7")
    # The legend names every kind.
    legend = page.get_by_role("list", name="Markers on the charts")
    for name in ("Fault", "Alert fired", "Anomaly", "Deployment"):
        expect(legend).to_contain_text(name)
