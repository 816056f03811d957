"""Delivery faults over a real server: each one, its seeded repeatability, and how it
shows on /metrics and the API."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from phoenix.auth import issue
from phoenix.keys import FAULTS, FEED
from simulator.events import CONTROL, Event

from .conftest import SECRET, T0, TIMEOUT, Server, event, recv, recv_close, send, token


def start(fid: str, fault: str, t: float = T0 + 1, duration: float = 0, **params) -> Event:
    return Event(
        t,
        CONTROL,
        "fault.start",
        {"fault": fault, "id": fid, "params": params, "duration_seconds": duration},
    )


def end(fid: str, fault: str, t: float) -> Event:
    return Event(t, CONTROL, "fault.end", {"fault": fault, "id": fid, "params": {}})


def beat(n: int, t: float) -> Event:
    return event("agent.heartbeat", {"agent_id": "agent-a", "n": n}, t=t, agent_id="agent-a")


async def subscribed(server: Server, sub: str = "alice", channels=("agents",)):
    ws = await server.connect(token(sub))
    await send(ws, type="subscribe", channels=list(channels))
    return ws


async def closes(ws: aiohttp.ClientWebSocketResponse, timeout: float = 0.3) -> int | None:
    """The close code if the server closes `ws` within `timeout`, else None
    (1006 for a connection that ended with no close frame)."""
    try:
        return await recv_close(ws, timeout) or 1006
    except TimeoutError:
        return None


async def chosen_by_close(server: Server, n: int, **params) -> list[int]:
    socks = [await subscribed(server, f"u{i}") for i in range(n)]
    server.publish(start("f1", "close_connections", **params))
    outcome = [await closes(ws) for ws in socks]
    closed = [i for i, code in enumerate(outcome) if code is not None]
    codes = {code for code in outcome if code is not None}
    for ws in socks:
        await ws.close()
    return closed, codes


async def test_close_connections_closes_a_seeded_share_with_the_code(serve) -> None:
    first, codes = await chosen_by_close(await serve(), 6, share=0.5, code=4000)
    assert len(first) == 3 and codes == {4000}
    # The same run again chooses the same connections.
    again, _ = await chosen_by_close(await serve(), 6, share=0.5, code=4000)
    assert again == first


async def test_close_connections_of_one_user_or_one_channel(server: Server) -> None:
    bob = await subscribed(server, "bob", ("metrics",))
    ann = await subscribed(server, "ann", ("agents",))
    server.publish(start("f1", "close_connections", user="bob", code=1001))
    assert await closes(bob) == 1001
    assert not await closes(ann)
    server.publish(start("f2", "close_connections", t=T0 + 2, channel="agents", code=4002))
    assert await closes(ann) == 4002


async def test_abrupt_close_sends_no_close_frame(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(start("f1", "close_connections", abrupt=True))
    assert await closes(ws, TIMEOUT) == 1006  # no close frame: the server just went away


async def test_latency_delays_delivery_while_it_lasts(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(
        start("lat", "latency", duration=60, delay_ms=400, jitter_ms=0, distribution="normal")
    )
    sent = time.monotonic()
    server.publish(beat(1, T0 + 2))
    await recv(ws)
    assert time.monotonic() - sent >= 0.35
    server.publish(end("lat", "latency", T0 + 3))
    sent = time.monotonic()
    server.publish(beat(2, T0 + 4))
    await recv(ws)
    assert time.monotonic() - sent < 0.35
    await ws.close()


async def test_frames_held_by_latency_stay_ahead_when_it_ends(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(
        start("lat", "latency", duration=60, delay_ms=300, jitter_ms=0, distribution="normal")
    )
    server.publish(beat(1, T0 + 2))  # held for 300 ms
    await asyncio.sleep(0.1)  # the writer is now waiting on it
    server.publish(end("lat", "latency", T0 + 3))
    server.publish(beat(2, T0 + 4))  # no latency now, but must not overtake the first
    assert [(await recv(ws))["data"]["n"] for _ in range(2)] == [1, 2]
    await ws.close()


async def test_burst_holds_events_then_delivers_n_at_once(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(start("b", "burst", count=5))
    server.publish(*[beat(i, T0 + 2) for i in range(4)])
    assert (await send(ws, type="ping"))["type"] == "pong"  # nothing yet
    server.publish(beat(4, T0 + 3))
    assert [(await recv(ws))["data"]["n"] for _ in range(5)] == [0, 1, 2, 3, 4]
    server.publish(beat(5, T0 + 4))  # the burst is over: live again
    assert (await recv(ws))["data"]["n"] == 5
    await ws.close()


async def test_duplicate_sends_the_same_event_twice(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(start("d", "duplicate", duration=60, probability=1.0))
    server.publish(beat(1, T0 + 2))
    a, b = await recv(ws), await recv(ws)
    assert a == b
    await ws.close()


async def test_reorder_shuffles_within_a_window(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(start("r", "reorder", duration=60, window=6))
    server.publish(*[beat(i, T0 + 2) for i in range(6)])
    got = [(await recv(ws))["data"]["n"] for _ in range(6)]
    assert sorted(got) == list(range(6)) and got != list(range(6))
    await ws.close()


async def test_pause_delivery_then_flood_in_order(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(start("p", "pause_delivery", duration=10))
    server.publish(*[beat(i, T0 + 2 + i) for i in range(5)])
    assert (await send(ws, type="ping"))["type"] == "pong"
    metrics = await (await server.client.get("/metrics")).text()
    assert 'phoenix_faults_active{fault="pause_delivery"} 1.0' in metrics
    server.publish(end("p", "pause_delivery", T0 + 11))
    assert [(await recv(ws))["data"]["n"] for _ in range(5)] == list(range(5))
    await ws.close()


async def test_token_expiry_storm(server: Server) -> None:
    old = issue(SECRET, "old", time.time() - 5, 3600)  # issued before the storm
    ws = await server.connect(old)
    server.publish(start("s", "token_expiry_storm", duration=30))
    err = await recv(ws)
    assert err["error"]["code"] == "UNAUTHORIZED"
    assert err["error"]["details"]["reason"] == "expired"
    assert await recv_close(ws) == 4001
    again = await server.connect(old)  # the old token is refused while the storm lasts
    assert (await recv(again))["error"]["details"]["reason"] == "expired"
    fresh = await server.connect(token("old"))  # a fresh one is fine
    assert (await send(fresh, type="ping"))["type"] == "pong"
    await fresh.close()


async def test_rate_limit_squeeze_lowers_the_limit_for_a_while(server: Server) -> None:
    ws = await server.connect()
    server.publish(start("q", "rate_limit_squeeze", duration=30, messages_per_second=3))
    for _ in range(10):
        await ws.send_str('{"type":"ping"}')
    frames = [await recv(ws) for _ in range(10)]
    assert sum(f["type"] == "error" for f in frames) >= 6
    assert frames[-1]["error"]["details"]["messages_per_second"] == 3
    server.publish(end("q", "rate_limit_squeeze", T0 + 31))
    await asyncio.sleep(1.0)  # let the bucket refill at the normal rate
    for _ in range(10):
        await ws.send_str('{"type":"ping"}')
    assert [(await recv(ws))["type"] for _ in range(10)] == ["pong"] * 10
    await ws.close()


async def test_server_restart_drops_everyone_then_accepts_again(server: Server) -> None:
    ws = await subscribed(server)
    server.publish(start("x", "server_restart", duration=5))
    assert await closes(ws, TIMEOUT) == 1012
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await server.connect()
    assert info.value.status == 503
    server.publish(end("x", "server_restart", T0 + 6))
    ws2 = await server.connect()
    assert (await send(ws2, type="ping"))["type"] == "pong"
    await ws2.close()


async def test_injected_fault_through_the_api_on_the_real_engine(aiohttp_client) -> None:
    from phoenix.app import create_app
    from phoenix.sources import scenario_source

    from .conftest import make_config

    source, info = scenario_source("demo", 7, "2024-01-20T10:00:00Z")
    client = await aiohttp_client(create_app(make_config(simulation={"speed": 20}), source, info))
    ws = await client.ws_connect(f"/ws?token={token('v')}")
    await send(ws, type="subscribe", channels=["metrics"])
    admin = {"Authorization": f"Bearer {token('root', role='admin')}"}
    body = {"type": "close_connections", "params": {"code": 4000}}
    resp = await client.post("/api/sim/faults", json=body, headers=admin)
    assert resp.status == 202, await resp.text()
    assert await closes(ws, TIMEOUT) == 4000
    bad = {"type": "close_connections", "params": {"code": 1006}}
    resp = await client.post("/api/sim/faults", json=bad, headers=admin)
    assert resp.status == 400
    assert "params.code" in (await resp.json())["error"]


async def test_api_fault_injection_auth_and_validation(server: Server) -> None:
    admin = {"Authorization": f"Bearer {token('root', role='admin')}"}
    viewer = {"Authorization": f"Bearer {token('v')}"}
    body = {"type": "latency", "duration": "1m", "params": {"delay_ms": 100}}
    resp = await server.client.post("/api/sim/faults", json=body, headers=viewer)
    assert resp.status == 403
    resp = await server.client.post("/api/sim/faults", json=body)
    assert resp.status == 401
    resp = await server.client.post("/api/sim/faults", data=b"[1", headers=admin)
    assert resp.status == 400
    # The scripted source takes no faults; the message says so.
    resp = await server.client.post("/api/sim/faults", json=body, headers=admin)
    assert resp.status == 400
    assert "takes no faults" in (await resp.json())["error"]
    assert server.app[FAULTS].active() == []
    assert server.app[FEED].paused


async def test_a_fault_on_a_list_of_agents_through_the_api(aiohttp_client) -> None:
    from phoenix.app import create_app
    from phoenix.sources import scenario_source

    from .conftest import make_config

    source, info = scenario_source("demo", 7, "2024-01-20T10:00:00Z")
    client = await aiohttp_client(create_app(make_config(simulation={"speed": 20}), source, info))
    admin = {"Authorization": f"Bearer {token('root', role='admin')}"}
    listed = ["agent-prod-app-001", "agent-prod-app-150"]
    body = {"type": "spike", "duration": "10m", "target": listed, "params": {"factor": 2}}
    resp = await client.post("/api/sim/faults", json=body, headers=admin)
    assert resp.status == 202, await resp.text()
    deadline = time.monotonic() + TIMEOUT
    faults: list[dict] = []
    while not faults and time.monotonic() < deadline:
        await asyncio.sleep(0.05)  # the fault takes effect at the next tick
        state = await (await client.get("/api/sim", headers=admin)).json()
        faults = [f for f in state["faults"] if f["fault"] == "spike"]
    assert [f["target"] for f in faults] == [listed]
    bad = {**body, "target": ["agent-prod-app-001", "agent-prod-app-151"]}
    resp = await client.post("/api/sim/faults", json=bad, headers=admin)
    assert resp.status == 400
    error = (await resp.json())["error"]
    assert "target[1]" in error and "'agent-prod-app-151'" in error, error
