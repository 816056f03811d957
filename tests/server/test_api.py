"""The HTTP API over a real server on the real engine: snapshots, simulation control and
every auth case."""

from __future__ import annotations

import time

import jwt
import pytest

from phoenix.app import create_app
from phoenix.keys import FEED
from phoenix.sources import scenario_source

from .conftest import SECRET, make_config, token

START = "2024-01-20T10:00:00Z"
ADMIN = {"Authorization": f"Bearer {token('root', role='admin')}"}


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


@pytest.fixture
async def api(aiohttp_client):
    source, info = scenario_source("demo", 7, START)
    app = create_app(make_config(), source, info)
    app[FEED].pause()
    app[FEED].step(120)  # two simulated minutes: experiments running, agents online
    return await aiohttp_client(app)


@pytest.mark.parametrize("name", ["experiments", "agents", "deployments", "alerts"])
async def test_collections_give_a_snapshot_to_start_from(api, name) -> None:
    resp = await api.get(f"/api/v1/{name}", headers=bearer(token()))
    assert resp.status == 200
    body = await resp.json()
    assert body["count"] == len(body[name])
    assert body["as_of"] == "2024-01-20T10:02:00Z"
    assert body["last_event_id"].startswith("evt-")
    if name in ("experiments", "agents", "deployments"):
        assert body[name], f"no {name} two minutes into demo"


async def test_one_experiment_and_a_missing_one(api) -> None:
    resp = await api.get("/api/v1/experiments/exp-789", headers=bearer(token()))
    exp = await resp.json()
    assert resp.status == 200 and exp["id"] == "exp-789"
    assert {"status", "progress", "metrics", "baseline_pipeline_id"} <= set(exp)
    resp = await api.get("/api/v1/experiments/exp-0", headers=bearer(token()))
    assert resp.status == 404


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "missing"),
        ({"Authorization": "Basic abc"}, "missing"),
        (bearer("garbage"), "malformed"),
        (bearer(token(ttl=-5)), "expired"),
        (bearer(jwt.encode({"sub": "a", "exp": time.time() + 60}, "k" * 40)), "invalid_signature"),
        (
            bearer(jwt.encode({"sub": "a", "exp": time.time() + 60}, None, algorithm="none")),
            "algorithm_not_allowed",
        ),
        (bearer(jwt.encode({"exp": time.time() + 60}, SECRET)), "invalid_claims"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/agents", "/api/sim"])
async def test_a_wrong_or_missing_token_is_401_json(api, headers, reason, path) -> None:
    resp = await api.get(path, headers=headers)
    assert resp.status == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    body = await resp.json()
    assert body["details"]["reason"] == reason and body["error"]


async def test_a_viewer_on_admin_routes_is_403(api) -> None:
    for path, body in [("/api/sim", {"action": "pause"}), ("/api/sim/faults", {"type": "spike"})]:
        resp = await api.post(path, json=body, headers=bearer(token()))
        assert resp.status == 403
        assert "admin" in (await resp.json())["error"]


async def test_admin_pauses_steps_resumes_and_sets_speed(api) -> None:
    state = await (await api.get("/api/sim", headers=bearer(token()))).json()
    assert state["paused"] is True and state["scenario"] == "demo" and state["seed"] == 7
    resp = await api.post("/api/sim", json={"action": "step", "seconds": 30}, headers=ADMIN)
    assert (await resp.json())["simulated_time"] == "2024-01-20T10:02:30Z"
    resp = await api.post("/api/sim", json={"action": "speed", "speed": 60}, headers=ADMIN)
    assert (await resp.json())["speed"] == 60
    resp = await api.post("/api/sim", json={"action": "resume"}, headers=ADMIN)
    assert (await resp.json())["paused"] is False
    resp = await api.post("/api/sim", json={"action": "pause"}, headers=ADMIN)
    paused = await resp.json()
    assert paused["paused"] is True
    again = await (await api.get("/api/sim", headers=ADMIN)).json()
    assert again["simulated_time"] == paused["simulated_time"]  # time stands still


async def test_admin_restarts_with_another_scenario_and_seed(api) -> None:
    before = await (await api.get("/api/sim", headers=ADMIN)).json()
    resp = await api.post(
        "/api/sim",
        json={"action": "restart", "scenario": "agent-churn", "seed": 3, "start": START},
        headers=ADMIN,
    )
    state = await resp.json()
    assert resp.status == 200
    assert state["scenario"] == "agent-churn" and state["seed"] == 3
    assert state["simulated_time"] == "2024-01-20T10:00:00Z"
    # Event ids keep increasing across a restart: clients never see an id twice.
    assert state["last_event_id"] == before["last_event_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "action"),
        ({"action": "jump"}, "action"),
        ({"action": "speed"}, "speed"),
        ({"action": "speed", "speed": -2}, "speed"),
        ({"action": "speed", "speed": "fast"}, "speed"),
        ({"action": "pause", "now": True}, "now"),
        ({"action": "step", "seconds": 0}, "seconds"),
        ({"action": "restart", "seed": "x"}, "seed"),
        ({"action": "restart", "scenario": "nope"}, "scenario"),
        ({"action": "restart", "start": "yesterday"}, "start"),
        ({"action": "restart", "start": 5}, "start"),
    ],
)
async def test_a_bad_body_is_400_naming_the_field(api, body, field) -> None:
    resp = await api.post("/api/sim", json=body, headers=ADMIN)
    assert resp.status == 400
    err = await resp.json()
    assert err["details"]["field"] == field


async def test_a_body_that_is_not_json_is_400(api) -> None:
    resp = await api.post("/api/sim", data=b"{oops", headers=ADMIN)
    assert resp.status == 400


async def test_page_token_on_loopback_is_a_short_lived_viewer_token(api) -> None:
    resp = await api.post("/api/token")
    body = await resp.json()
    claims = jwt.decode(body["token"], SECRET, algorithms=["HS256"])
    assert claims.get("role") == "viewer" and claims["exp"] - time.time() <= 900
    resp = await api.post("/api/sim", json={"action": "pause"}, headers=bearer(body["token"]))
    assert resp.status == 403


async def test_page_token_is_refused_when_not_bound_to_loopback(aiohttp_client) -> None:
    source, info = scenario_source("demo", 7, START)
    config = make_config(server={"host": "0.0.0.0"})
    client = await aiohttp_client(create_app(config, source, info))
    resp = await client.post("/api/token")
    assert resp.status == 403


async def test_scenarios_route_lists_the_bundled_scenarios(api) -> None:
    body = await (await api.get("/api/sim/scenarios", headers=bearer(token()))).json()
    names = [s["name"] for s in body["scenarios"]]
    assert "demo" in names and all(s["description"] for s in body["scenarios"])


async def test_the_page_is_served_with_a_content_security_policy(api) -> None:
    resp = await api.get("/")
    assert resp.status == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert (await api.get("/favicon.ico")).status == 204
