"""Control from anywhere: the simulation's controls and faults through any gateway, the
same answers from every gateway; and the connections-per-user limit over all of them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from .conftest import Cluster, Node, get_json, post_json, token
from .wsclient import ALL, closed, events, frame, open_ws, subscribe


def _wait(check: Any, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


async def test_controls_work_on_any_gateway_and_every_gateway_answers_the_same(
    cluster: Cluster,
) -> None:
    cluster.start_engine()
    a, b = cluster.start_gateway(0), cluster.start_gateway(1)
    a.wait_joined()
    b.wait_joined()

    status, state = await asyncio.to_thread(post_json, a.base + "/api/sim", {"action": "pause"})
    assert status == 200 and state["paused"] is True
    # B hears it from the engine within its next read of the engine's state.
    on_b = await asyncio.to_thread(_wait, lambda: _paused(get_json(b.base + "/api/sim")))
    assert on_b["simulated_time"] == state["simulated_time"]
    on_a = await asyncio.to_thread(get_json, a.base + "/api/sim")
    assert on_a == on_b

    # Snapshots come from the engine: the same on every gateway, last_event_id included.
    for name in ("experiments", "agents", "deployments", "alerts"):
        sa = await asyncio.to_thread(get_json, f"{a.base}/api/v1/{name}")
        sb = await asyncio.to_thread(get_json, f"{b.base}/api/v1/{name}")
        assert sa == sb and sa["last_event_id"] == state["last_event_id"], name
    exp_id = sa_exps[0]["id"] if (sa_exps := (await _exps(a))) else None
    if exp_id is not None:
        one = await asyncio.to_thread(get_json, f"{b.base}/api/v1/experiments/{exp_id}")
        assert one["id"] == exp_id

    async with aiohttp.ClientSession() as session:
        ws = await open_ws(session, a)
        await subscribe(ws, ALL)
        # A step asked of B moves the engine, and A's client sees the events.
        status, stepped = await asyncio.to_thread(
            post_json, b.base + "/api/sim", {"action": "step", "seconds": 30}
        )
        assert status == 200
        assert stepped["last_event_id"] != state["last_event_id"]
        got = await events(ws, 3)
        assert got[0]["id"] == f"evt-{int(state['last_event_id'].removeprefix('evt-')) + 1}"

        # A bad control is refused by the engine with the same 400 as in one process.
        status, body = await asyncio.to_thread(
            post_json, b.base + "/api/sim", {"action": "speed", "speed": -1}
        )
        assert status == 400 and body["details"]["field"] == "speed"
        status, body = await asyncio.to_thread(
            post_json, b.base + "/api/sim", {"action": "pause"}, token()
        )
        assert status == 403  # a viewer's token, checked by the gateway

        # A delivery fault injected through B is carried out by every gateway on its
        # own connections.
        wb = await open_ws(session, b)
        await subscribe(wb, ALL)
        status, body = await asyncio.to_thread(
            post_json,
            b.base + "/api/sim/faults",
            {"type": "close_connections", "params": {"code": 4000}},
        )
        assert status == 202, body
        await asyncio.to_thread(post_json, a.base + "/api/sim", {"action": "step", "seconds": 2})
        assert await closed(ws) == 4000
        assert await closed(wb) == 4000

        status, body = await asyncio.to_thread(
            post_json, a.base + "/api/sim/faults", {"type": "no_such_fault"}
        )
        assert status == 400 and body["details"]["field"] == "type"

        status, body = await asyncio.to_thread(
            post_json, a.base + "/api/sim", {"action": "restart", "scenario": "agent-churn"}
        )
        assert status == 200 and body["scenario"] == "agent-churn"


def _paused(state: dict[str, Any]) -> dict[str, Any] | None:
    return state if state["paused"] else None


async def _exps(node: Node) -> list[dict[str, Any]]:
    body = await asyncio.to_thread(get_json, f"{node.base}/api/v1/experiments")
    items: list[dict[str, Any]] = body["experiments"]
    return items


async def test_connections_per_user_count_over_all_gateways_and_a_dead_one_frees_them(
    cluster: Cluster,
) -> None:
    limits = {"PHOENIX_LIMITS__CONNECTIONS_PER_USER": "3", "PHOENIX_BROKER__LEASE": "1"}
    cluster.start_engine(**limits)
    a, b = cluster.start_gateway(0, **limits), cluster.start_gateway(1, **limits)
    a.wait_joined()
    b.wait_joined()
    tok = token("one-user")
    async with aiohttp.ClientSession() as session:
        held = [await open_ws(session, a, tok), await open_ws(session, a, tok)]
        held.append(await open_ws(session, b, tok))
        for ws in held:
            await subscribe(ws, ["alerts"])
        for node in (a, b):
            over = await open_ws(session, node, tok)
            err = await frame(over)
            assert err["error"]["details"]["limit"] == "connections", err
            assert await closed(over) == 4029
        # Another user is not counted with this one.
        other = await open_ws(session, b, token("another-user"))
        await subscribe(other, ["alerts"])

        # A gateway killed outright cannot say goodbye: its two slots stay taken until
        # its lease runs out (1 s here), then B admits two more.
        a.stop(signal_kill())
        started = time.monotonic()
        admitted = []
        while len(admitted) < 2 and time.monotonic() - started < 10:
            ws = await open_ws(session, b, tok)
            await ws.send_json({"type": "subscribe", "channels": ["alerts"]})
            first = await frame(ws)
            if first["type"] == "error":
                assert first["error"]["details"]["limit"] == "connections"
                await ws.close()
                await asyncio.sleep(0.2)
                continue
            admitted.append(ws)
        assert len(admitted) == 2, "a dead gateway held its users' slots"
        # And a clean close gives a slot back at once.
        await held[2].close()
        await asyncio.sleep(0.2)
        again = await open_ws(session, b, tok)
        reply = await subscribe(again, ["alerts"])
        assert reply["status"] == "ok"


def signal_kill() -> int:
    import signal

    return signal.SIGKILL
