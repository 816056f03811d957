"""What a presenter's page reads and asks besides the stream: the scenario's timeline,
the recent history of a channel for the charts, and a pause at a chosen simulated time."""

from __future__ import annotations

import asyncio
import json

import pytest

from phoenix.app import create_app
from phoenix.keys import FEED
from phoenix.sources import scenario_source

from .conftest import make_config, token

START = "2024-01-20T10:00:00Z"
VIEWER = {"Authorization": f"Bearer {token()}"}
ADMIN = {"Authorization": f"Bearer {token('root', role='admin')}"}


@pytest.fixture
async def api(aiohttp_client):
    source, info = scenario_source("demo", 7, START)
    app = create_app(make_config(), source, info)
    app[FEED].pause()
    app[FEED].step(150)
    return await aiohttp_client(app)


async def test_the_timeline_lists_what_the_scenario_schedules_done_or_to_come(api) -> None:
    resp = await api.get("/api/sim/timeline", headers=VIEWER)
    assert resp.status == 200
    body = await resp.json()
    assert body["scenario"] == "demo" and body["simulated_time"] == "2024-01-20T10:02:30Z"
    items = body["items"]
    assert [i["at"] for i in items] == sorted(i["at"] for i in items)
    created = [i for i in items if i["what"] == "experiment.created"]
    assert {i["id"] for i in created} == {"exp-789", "exp-790"}
    faults = [i for i in items if i["kind"] == "fault"]
    assert faults and all(i["done"] == (i["at"] <= body["simulated_time"]) for i in items)
    upcoming = [i for i in items if not i["done"]]
    assert upcoming, "demo schedules faults after its third minute"
    resp = await api.get("/api/sim/timeline")
    assert resp.status == 401


async def test_history_serves_a_channels_recent_events_for_the_charts(api) -> None:
    resp = await api.get(
        "/api/sim/history?channel=metrics&events=metrics.update&limit=5", headers=VIEWER
    )
    assert resp.status == 200
    body = await resp.json()
    events = body["events"]
    assert len(events) == 5 and {e["event"] for e in events} == {"metrics.update"}
    ids = [int(e["id"].removeprefix("evt-")) for e in events]
    assert ids == sorted(ids)
    # The newest five: nothing newer on the channel.
    every = await (
        await api.get("/api/sim/history?channel=metrics&limit=10000", headers=VIEWER)
    ).json()
    newest = [e for e in every["events"] if e["event"] == "metrics.update"][-5:]
    assert newest == events


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("channel=nope", "channel"),
        ("channel=metrics&limit=0", "limit"),
        ("channel=metrics&limit=10001", "limit"),
        ("channel=metrics&limit=" + "9" * 5000, "limit"),
        ("channel=metrics&limit=-1", "limit"),
        ("channel=metrics&events=" + "x" * 65, "events"),
    ],
)
async def test_a_bad_history_query_is_400_naming_the_field(api, query, field) -> None:
    resp = await api.get(f"/api/sim/history?{query}", headers=VIEWER)
    assert resp.status == 400
    assert (await resp.json())["details"]["field"] == field


async def test_history_respects_the_tokens_channels(api) -> None:
    limited = {"Authorization": f"Bearer {token(channels=['alerts'])}"}
    resp = await api.get("/api/sim/history?channel=metrics", headers=limited)
    assert resp.status == 403


async def test_pause_at_a_simulated_time_stops_exactly_there(api) -> None:
    state = await (await api.post("/api/sim", json={"action": "resume"}, headers=ADMIN)).json()
    assert state["paused"] is False
    await api.post("/api/sim", json={"action": "speed", "speed": 200}, headers=ADMIN)
    resp = await api.post(
        "/api/sim", json={"action": "pause", "at": "2024-01-20T10:03:00Z"}, headers=ADMIN
    )
    body = await resp.json()
    assert resp.status == 200 and body["pause_at"] == "2024-01-20T10:03:00Z"
    for _ in range(200):
        state = await (await api.get("/api/sim", headers=VIEWER)).json()
        if state["paused"]:
            break
        await asyncio.sleep(0.05)
    assert state["paused"] is True and state["pause_at"] is None
    assert state["simulated_time"] == "2024-01-20T10:03:00Z"
    await asyncio.sleep(0.3)  # paused means paused: at 200x this would be a minute
    again = await (await api.get("/api/sim", headers=VIEWER)).json()
    assert again["simulated_time"] == "2024-01-20T10:03:00Z"
    # A time already passed pauses at once; a bad one is a 400 naming `at`.
    await api.post("/api/sim", json={"action": "resume"}, headers=ADMIN)
    resp = await api.post(
        "/api/sim", json={"action": "pause", "at": "2024-01-20T10:00:00Z"}, headers=ADMIN
    )
    assert (await resp.json())["paused"] is True
    for bad in ("tomorrow", 12, "9999-01-01T00:00:00Z"):
        resp = await api.post("/api/sim", json={"action": "pause", "at": bad}, headers=ADMIN)
        assert resp.status == 400, bad
        assert json.loads(await resp.text())["details"]["field"] == "at"


async def test_simulation_faults_in_force_are_listed_with_delivery_faults(api) -> None:
    """GET /api/sim and /api/sim/faults list every fault in force: the simulation's own
    (spike, error_surge, ...) as well as the delivery faults the server carries out."""
    for fault in (
        {"type": "spike", "duration": 60, "params": {"factor": 2}},
        {"type": "latency", "duration": 60},
    ):
        resp = await api.post("/api/sim/faults", json=fault, headers=ADMIN)
        assert resp.status == 202, await resp.text()
    await api.post("/api/sim", json={"action": "step", "seconds": 2}, headers=ADMIN)
    state = await (await api.get("/api/sim", headers=VIEWER)).json()
    kinds = {f["fault"]: f for f in state["faults"]}
    # The demo's own agents_leave is in force too at this time.
    assert set(kinds) == {"spike", "latency", "agents_leave"}, state["faults"]
    assert kinds["spike"]["target"] == "global" and kinds["spike"]["ends"]
    listed = await (await api.get("/api/sim/faults", headers=VIEWER)).json()
    assert {f["fault"] for f in listed["faults"]} == set(kinds)
    await api.post("/api/sim", json={"action": "step", "seconds": 120}, headers=ADMIN)
    state = await (await api.get("/api/sim", headers=VIEWER)).json()
    left = {f["fault"] for f in state["faults"]}
    assert not left & {"spike", "latency"}, left  # ours have ended (the demo's go on)
