"""Faults of the system itself: a gateway killed, Redis stopped or emptied, the engine
killed. Failure is a state, not a crash: said on /health and /metrics, then recovered."""

from __future__ import annotations

import asyncio
import signal
import urllib.request
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from .conftest import Cluster, Node, get_json, post_json, wait_for
from .wsclient import ALL, closed, events, open_ws, subscribe


def _ids(evs: list[dict[str, Any]]) -> list[int]:
    return [int(e["id"].removeprefix("evt-")) for e in evs]


def _metric(node: Node, name: str) -> float:
    with urllib.request.urlopen(node.base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    raise AssertionError(f"no {name} on /metrics")


async def _until(check: Any, timeout: float = 15.0) -> Any:
    return await asyncio.to_thread(wait_for, check, timeout)


async def test_a_killed_gateways_clients_resume_on_another(cluster: Cluster) -> None:
    a, b = cluster.engine_and_two_gateways()
    async with aiohttp.ClientSession() as session:
        witness = await open_ws(session, b)
        await subscribe(witness, ALL)
        client = await open_ws(session, a)
        await subscribe(client, ALL)
        seen = await events(client, 10)
        a.stop(signal.SIGKILL)
        assert await closed(client) is not None or client.closed
        back = await open_ws(session, b)
        reply = await subscribe(back, ALL, since={c: seen[-1]["id"] for c in ALL})
        assert reply["recovered"] is True
        resumed = await events(back, 30)
    assert _ids(resumed)[0] == _ids(seen)[-1] + 1
    assert _ids(resumed) == list(range(_ids(resumed)[0], _ids(resumed)[0] + 30))


async def test_redis_stopped_for_ten_seconds_loses_nothing_the_history_holds(
    cluster: Cluster,
) -> None:
    a, b = cluster.engine_and_two_gateways()
    async with aiohttp.ClientSession() as session:
        stays = await open_ws(session, a)  # keeps its connection through the outage
        await subscribe(stays, ALL)
        before = await events(stays, 5)
        leaves = await open_ws(session, b)
        await subscribe(leaves, ALL)
        left_at = (await events(leaves, 5))[-1]["id"]
        await leaves.close()

        cluster.redis.freeze()
        try:
            down = await _until(lambda: _down(a), timeout=10)
            assert down["status"] == "degraded"
            assert _metric(a, "phoenix_broker_up") == 0
            await asyncio.sleep(max(0.0, 10.0 - 4.0))  # ten seconds in all, about
            assert not stays.closed
        finally:
            cluster.redis.thaw()
        await _until(lambda: a.health()["broker"]["broker"] == "up")
        assert _metric(a, "phoenix_broker_up") == 1

        # The engine simulated on and wrote what it held once Redis was back: the client
        # that stayed gets every event, in order, and one that left resumes elsewhere.
        after = await events(stays, 60, timeout=30)
        ids = _ids(before + after)
        assert ids == list(range(ids[0], ids[0] + len(ids))), "events lost in the outage"
        back = await open_ws(session, a)
        reply = await subscribe(back, ALL, since={c: left_at for c in ALL})
        assert reply["recovered"] is True
        got = await events(back, 5)
        assert _ids(got)[0] == int(left_at.removeprefix("evt-")) + 1


def _down(node: Node) -> dict[str, Any] | None:
    body = node.health()
    return body if body["broker"]["broker"] == "down" else None


async def test_an_outage_longer_than_the_history_is_said_not_papered_over(
    cluster: Cluster,
) -> None:
    # A high rate and a small history: the engine's outbox (10,000 entries at least)
    # overflows while Redis is stopped, so events are lost for good.
    firehose = ("--scenario", "firehose", "--seed", "1", "--rate", "agents=5000/s")
    small = {"PHOENIX_HISTORY__MAX_EVENTS": "100"}
    cluster.start_engine(*firehose, **small)
    gw = cluster.start_gateway(0, **small)
    gw.wait_joined()
    async with aiohttp.ClientSession() as session:
        ws = await open_ws(session, gw)
        await subscribe(ws, ["agents"])
        seen: list[str] = []
        other = await open_ws(session, gw)
        await subscribe(other, ["experiments"])  # not the channel with the gap

        async def drain() -> int | None:
            while True:
                msg = await ws.receive(timeout=60)
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return ws.close_code
                if '"type":"event"' in msg.data:
                    seen.append(msg.data[7 : msg.data.index('"', 7)])

        reader = asyncio.create_task(drain())
        await asyncio.sleep(1.0)
        cluster.redis.freeze()
        await asyncio.sleep(4.0)  # 20,000 events at 5,000/s: more than the outbox holds
        cluster.redis.thaw()
        code = await asyncio.wait_for(reader, 30)
        assert seen, f"no event before the outage (closed with {code}): {gw.stop()[-3000:]}"
        assert code == 1012, "subscribers of a channel with a gap must be told"
        assert not other.closed
        assert await _until(lambda: _metric(gw, "phoenix_broker_gaps_total") >= 1)

        again = await open_ws(session, gw)
        reply = await subscribe(again, ["agents"], since={"agents": seen[-1]})
        assert reply["recovered"] is False


async def test_redis_restarted_empty_the_stream_goes_on(cluster: Cluster) -> None:
    cluster.start_engine()
    a = cluster.start_gateway(0)
    a.wait_joined()
    async with aiohttp.ClientSession() as session:
        ws = await open_ws(session, a)
        await subscribe(ws, ALL)
        before = await events(ws, 5)
        cluster.redis.stop()
        cluster.redis.start()  # same port, nothing kept
        after = await events(ws, 30, timeout=30)
        ids = _ids(before + after)
        assert ids == list(range(ids[0], ids[0] + len(ids)))
        # A gateway that joins now finds the epoch again (the engine wrote it back).
        b = cluster.start_gateway(1)
        joined = b.wait_joined()
        assert joined["broker"]["epoch"] == a.health()["broker"]["epoch"]
        wb = await open_ws(session, b)
        await subscribe(wb, ALL)
        assert len(await events(wb, 3)) == 3


async def test_a_new_engine_takes_over_with_a_new_epoch(cluster: Cluster) -> None:
    engine = cluster.start_engine()
    gw = cluster.start_gateway(0)
    first = gw.wait_joined()["broker"]["epoch"]
    async with aiohttp.ClientSession() as session:
        ws = await open_ws(session, gw)
        await subscribe(ws, ALL)
        seen = await events(ws, 5)
        engine.stop(signal.SIGKILL)

        gone = await _until(lambda: _engine_down(gw))
        assert gone["status"] == "degraded"
        state = await asyncio.to_thread(get_json, gw.base + "/api/sim")
        assert state["engine"] == "down" and "no engine" in state["error"]
        status, body = await asyncio.to_thread(post_json, gw.base + "/api/sim", {"action": "pause"})
        assert status == 503 and body["details"]["reason"] == "engine_unavailable"

        cluster.start_engine()  # waits out the old one's lock, then a new epoch
        assert await closed(ws, timeout=30) == 1012
        second = await _until(lambda: _new_epoch(gw, first))
        ws = await open_ws(session, gw)
        reply = await subscribe(ws, ALL, since={c: seen[-1]["id"] for c in ALL})
        assert reply["recovered"] is False, "an id of the old epoch was resumed"
        got = await events(ws, 3)
    assert _ids(got)[0] > _ids(seen)[-1], "ids of the new epoch repeat old ones"
    assert second != first


def _engine_down(node: Node) -> dict[str, Any] | None:
    body = node.health()
    return body if body["broker"]["engine"] == "down" else None


def _new_epoch(node: Node, old: str) -> str | None:
    body = node.health()
    epoch = body["broker"]["epoch"]
    return epoch if epoch != old and body["broker"]["engine"] == "up" else None
