"""What must hold across gateways: the same stream everywhere, equal to the headless
one, and a resume on any gateway of what was seen on another."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp

from ..server.procs import run
from .conftest import START, Cluster, token
from .wsclient import ALL, events, open_ws, subscribe


async def test_every_gateway_sends_the_same_events_as_the_headless_run(cluster: Cluster) -> None:
    a, b = cluster.engine_and_two_gateways()
    # Both from the same point (the engine's id in a snapshot): each replays what it has
    # and waits for what it has not read yet, so the two lists must be equal outright.
    snap = await asyncio.to_thread(_get, a.base + "/api/v1/experiments")
    since = {c: snap["last_event_id"] for c in ALL}
    async with aiohttp.ClientSession() as session:
        wa, wb = await open_ws(session, a), await open_ws(session, b)
        assert (await subscribe(wa, ALL, since=since))["recovered"] is True
        assert (await subscribe(wb, ALL, since=since))["recovered"] is True
        got_a, got_b = await asyncio.gather(events(wa, 150), events(wb, 150))
    assert got_a == got_b  # the same frames, ids and order on both gateways
    ids = [int(e["id"].removeprefix("evt-")) for e in got_a]
    first = int(snap["last_event_id"].removeprefix("evt-")) + 1
    assert ids == list(range(first, first + len(ids))), "a gateway skipped events"

    # Served equals headless: the first epoch of a fresh namespace numbers from evt-1,
    # as `phoenix simulate` does for the same scenario, seed and start.
    last = max(ids)
    headless = _simulate(minutes=10)
    lines = {e["id"]: e for e in headless if int(e["id"].removeprefix("evt-")) <= last}
    assert len(lines) >= last, "the headless run is shorter than the served one"
    for e in got_a:
        assert e == lines[e["id"]], e["id"]


def _simulate(minutes: int) -> list[dict[str, Any]]:
    out = run(
        *("simulate", "--scenario", "demo", "--seed", "7", "--start", START),
        *("--duration", f"{minutes}m"),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


async def test_a_client_resumes_on_another_gateway_what_it_missed(cluster: Cluster) -> None:
    a, b = cluster.engine_and_two_gateways()
    async with aiohttp.ClientSession() as session:
        # A witness stays on A the whole time; the client leaves A, misses a while and
        # comes back on B with `since`.
        witness = await open_ws(session, a)
        await subscribe(witness, ALL)
        client = await open_ws(session, a)
        await subscribe(client, ALL)
        seen = await events(client, 20)
        await client.close()
        await asyncio.sleep(1.0)  # a simulated minute: events it misses
        back = await open_ws(session, b)
        last = seen[-1]["id"]
        reply = await subscribe(back, ALL, since={c: last for c in ALL})
        assert reply["recovered"] is True
        resumed = await events(back, 60)
        reference = await events(witness, 200)
    start = int(last.removeprefix("evt-")) + 1
    ids = [int(e["id"].removeprefix("evt-")) for e in resumed]
    assert ids == list(range(start, start + len(ids))), "a partial or reordered replay"
    ref = {e["id"]: e for e in reference}
    for e in resumed:
        if e["id"] in ref:
            assert e == ref[e["id"]]


async def test_an_id_the_gateway_has_not_read_yet_is_waited_for_not_refused(
    cluster: Cluster,
) -> None:
    """A snapshot's last_event_id is the engine's: a gateway behind it still resumes."""
    cluster.start_engine()
    gw = cluster.start_gateway()
    gw.wait_joined()
    snap = await asyncio.to_thread(_get, gw.base + "/api/v1/experiments")
    last = snap["last_event_id"]
    assert last is not None
    async with aiohttp.ClientSession() as session:
        ws = await open_ws(session, gw)
        reply = await subscribe(ws, ALL, since={c: last for c in ALL})
        assert reply["recovered"] is True
        first = (await events(ws, 1))[0]
    assert int(first["id"].removeprefix("evt-")) == int(last.removeprefix("evt-")) + 1


def _get(url: str) -> Any:
    from .conftest import get_json

    return get_json(url, token())


async def test_a_backlog_longer_than_one_read_is_delivered_in_order(cluster: Cluster) -> None:
    """One XREAD returns at most COUNT entries per stream: a quiet stream's entry from
    far ahead must not overtake a busy stream's backlog (9,000 events written at once,
    as after an outage: agents at positions 1 and 9000, metrics between)."""
    import redis as redis_py

    from phoenix.broker import Keys, entry_fields, stream_id

    r = redis_py.Redis.from_url(cluster.redis.url)
    keys = Keys(cluster.namespace)
    r.hset(keys.meta, mapping={"epoch": "e1", "base": 1, "last": 0})
    gw = cluster.start_gateway(0)
    await asyncio.to_thread(gw.wait_joined, engine=False)

    def frame(pos: int, channel: str, name: str) -> bytes:
        return (
            f'{{"id":"evt-{pos}","type":"event","channel":"{channel}","event":"{name}",'
            f'"data":{{}},"timestamp":"2024-01-20T10:00:00Z"}}'
        ).encode()

    async with aiohttp.ClientSession() as session:
        ws = await open_ws(session, gw)
        await subscribe(ws, ["agents", "metrics"])
        pipe = r.pipeline(transaction=False)
        pipe.xadd(
            keys.streams["agents"],
            entry_fields(
                frame(1, "agents", "agent.heartbeat"), "agent.heartbeat", {}, 0, 0, "e1", 0
            ),
            id=stream_id(1),
        )
        for pos in range(2, 9000):
            fields = entry_fields(
                frame(pos, "metrics", "metrics.update"),
                "metrics.update",
                {},
                0,
                0,
                "e1",
                max(0, pos - 1) if pos > 2 else 0,
            )
            pipe.xadd(keys.streams["metrics"], fields, id=stream_id(pos))
        pipe.xadd(
            keys.streams["agents"],
            entry_fields(
                frame(9000, "agents", "agent.heartbeat"), "agent.heartbeat", {}, 0, 0, "e1", 1
            ),
            id=stream_id(9000),
        )
        pipe.execute()
        got = await events(ws, 9000, timeout=60)
    r.close()
    ids = [int(e["id"].removeprefix("evt-")) for e in got]
    assert ids == list(range(1, 9001)), "events out of order across channels"
