"""Control from anywhere: the simulation's controls and faults through any gateway, the
same answers from every gateway; and the connections-per-user limit over all of them."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from .conftest import Cluster, Node, get_json, post_json, token, wait_for
from .wsclient import ALL, closed, events, frame, open_ws, subscribe


async def test_controls_work_on_any_gateway_and_every_gateway_answers_the_same(
    cluster: Cluster,
) -> None:
    a, b = cluster.engine_and_two_gateways()

    status, state = await asyncio.to_thread(post_json, a.base + "/api/sim", {"action": "pause"})
    assert status == 200 and state["paused"] is True
    # B hears it from the engine within its next read of the engine's state.
    on_b = await asyncio.to_thread(wait_for, lambda: _paused(get_json(b.base + "/api/sim")))
    assert on_b["simulated_time"] == state["simulated_time"]
    on_a = await asyncio.to_thread(get_json, a.base + "/api/sim")
    assert on_a == on_b

    # Snapshots come from the engine: the same on every gateway, last_event_id included.
    for name in ("experiments", "agents", "deployments", "alerts"):
        sa = await asyncio.to_thread(get_json, f"{a.base}/api/v1/{name}")
        sb = await asyncio.to_thread(get_json, f"{b.base}/api/v1/{name}")
        assert sa == sb and sa["last_event_id"] == state["last_event_id"], name
    # The timeline and the charts' history answer on any gateway.
    ta = await asyncio.to_thread(get_json, a.base + "/api/sim/timeline")
    tb = await asyncio.to_thread(get_json, b.base + "/api/sim/timeline")
    assert ta == tb and ta["items"] and ta["scenario"] == "demo"
    ha = await asyncio.to_thread(get_json, a.base + "/api/sim/history?channel=metrics&limit=3")
    hb = await asyncio.to_thread(get_json, b.base + "/api/sim/history?channel=metrics&limit=3")
    assert ha == hb and ha["events"]
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
        paused_at = int(state["last_event_id"].removeprefix("evt-"))
        # Events from before the pause that A had not read yet may come first.
        got = [e for e in await events(ws, 30) if int(e["id"].removeprefix("evt-")) > paused_at]
        assert got and got[0]["id"] == f"evt-{paused_at + 1}"

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


async def test_each_gateway_draws_its_own_fault_choices_and_a_run_repeats(
    cluster: Cluster,
) -> None:
    """close_connections with share 0.5: which connections close is drawn by each
    gateway from the run's seed, the fault's id and its index; the same again in a
    second run, another draw on another index."""

    async def closed_pattern(namespace: str, index: int) -> list[bool]:
        cluster.namespace = namespace
        engine = cluster.start_engine()
        gw = cluster.start_gateway(index)
        gw.wait_joined()
        async with aiohttp.ClientSession() as session:
            conns = []
            for _ in range(12):  # one at a time: connection order is the draw's order
                ws = await open_ws(session, gw)
                await subscribe(ws, ["alerts"])
                conns.append(ws)
            status, _ = await asyncio.to_thread(
                post_json,
                gw.base + "/api/sim/faults",
                {"type": "close_connections", "params": {"share": 0.5, "code": 4000}},
            )
            assert status == 202
            await asyncio.sleep(1.5)  # the fault starts at the next tick, then closes
            pattern = [await _was_closed(ws) for ws in conns]
            for ws in conns:
                await ws.close()
        gw.stop()
        engine.stop()
        return pattern

    async def _was_closed(ws: aiohttp.ClientWebSocketResponse) -> bool:
        while True:
            try:
                msg = await ws.receive(timeout=0.3)
            except TimeoutError:
                return False
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                return True

    first = await closed_pattern("run-a", 0)
    again = await closed_pattern("run-b", 0)
    other = await closed_pattern("run-c", 1)
    assert sum(first) == 6
    assert first == again, "the same seed, fault and index drew differently"
    assert sum(other) == 6 and other != first
