"""What must hold across gateways: the same stream everywhere, equal to the headless
one, and a resume on any gateway of what was seen on another."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import aiohttp

from .conftest import ROOT, START, Cluster, env, token
from .wsclient import ALL, events, open_ws, subscribe


async def test_every_gateway_sends_the_same_events_as_the_headless_run(cluster: Cluster) -> None:
    cluster.start_engine()
    a, b = cluster.start_gateway(0), cluster.start_gateway(1)
    a.wait_joined()
    b.wait_joined()
    async with aiohttp.ClientSession() as session:
        wa, wb = await open_ws(session, a), await open_ws(session, b)
        await subscribe(wa, ALL)
        await subscribe(wb, ALL)
        got_a, got_b = await asyncio.gather(events(wa, 150), events(wb, 150))
    by_id_b = {e["id"]: e for e in got_b}
    common = [e for e in got_a if e["id"] in by_id_b]
    assert len(common) >= 100, "the two gateways' streams barely overlap"
    assert common == [by_id_b[e["id"]] for e in common]  # same frames, same order
    ids = [int(e["id"].removeprefix("evt-")) for e in got_a]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "one gateway skipped events"

    # Served equals headless: the first epoch of a fresh namespace numbers from evt-1,
    # as `phoenix simulate` does for the same scenario, seed and start.
    last = max(ids)
    headless = _simulate(minutes=10)
    lines = {e["id"]: e for e in headless if int(e["id"].removeprefix("evt-")) <= last}
    assert len(lines) >= last, "the headless run is shorter than the served one"
    for e in got_a:
        assert e == lines[e["id"]], e["id"]


def _simulate(minutes: int) -> list[dict[str, Any]]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "phoenix",
            "simulate",
            "--scenario",
            "demo",
            "--seed",
            "7",
            "--start",
            START,
            "--duration",
            f"{minutes}m",
        ],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return [json.loads(line) for line in out.stdout.splitlines()]


async def test_a_client_resumes_on_another_gateway_what_it_missed(cluster: Cluster) -> None:
    cluster.start_engine()
    a, b = cluster.start_gateway(0), cluster.start_gateway(1)
    a.wait_joined()
    b.wait_joined()
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
