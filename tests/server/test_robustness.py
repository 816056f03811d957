"""What a careless or hostile client, a bad recording or a bug in a source must not do:
grow memory without bound, hold a connection open past its close, leave a fault on
forever, or stop the server."""

from __future__ import annotations

import asyncio
import base64
import json
import time

import pytest

from phoenix.app import create_app
from phoenix.auth import issue
from phoenix.feed import SourceInfo
from phoenix.hub import Hub, Published
from phoenix.keys import CONNECTIONS, FAULTS, FEED, HUB
from phoenix.replay import parse_line
from phoenix.sources import scenario_source

from .conftest import SECRET, T0, ListSource, Server, event, make_config, recv, send, token
from .test_fanout import client_frame, raw_ws
from .test_faults import beat, end, start


def exp(n: int, t: float = T0 + 1, pad: str = ""):
    return event(
        "experiment.updated", {"id": "exp-1", "n": n, "pad": pad}, t=t, experiment_id="exp-1"
    )


async def test_asking_for_replays_without_reading_is_bounded(serve) -> None:
    # own_limit = outbound_queue + history.max_events x 6 channels = 10 + 120
    server: Server = await serve(
        limits={"outbound_queue": 10, "messages_per_second": 1000, "close_after_rejected": 1000},
        history={"max_events": 20},
    )
    server.publish(*[exp(i, pad="x" * 2000) for i in range(20)])
    reader, writer = await raw_ws(server, token("greedy"))
    ask = client_frame(
        '{"type":"subscribe","channels":["experiments"],"since":{"experiments":"evt-0"}}'
    )
    for _ in range(200):  # 200 replays of 20 frames of 2 KB: 8 MB if nothing stopped it
        writer.write(ask)
    await writer.drain()
    for _ in range(500):
        if server.app[CONNECTIONS].count() == 0:
            break
        deepest = max((c.queued for c in server.app[CONNECTIONS].all()), default=0)
        assert deepest <= 10 + 120 + 1
        await asyncio.sleep(0.01)
    # Evicted as a slow consumer once its own frames passed their cap.
    metrics = await (await server.client.get("/metrics")).text()
    assert "phoenix_slow_consumer_closes_total 1.0" in metrics
    writer.close()


async def test_a_client_that_stops_reading_is_closed_when_its_token_expires(serve) -> None:
    server: Server = await serve(limits={"outbound_queue": 100000}, websocket={"close_timeout": 1})
    reader, writer = await raw_ws(server, token("sleepy", ttl=2))
    writer.write(client_frame('{"type":"subscribe","channels":["agents"]}'))
    await writer.drain()
    while server.app[HUB].subscriber_count("agents") < 1:
        await asyncio.sleep(0.01)
    blob = "y" * 1000
    for batch in range(30):  # 3 MB it will never read: the error frame waits behind it
        server.publish(*[beat(batch * 100 + i, T0 + 1 + batch) for i in range(100)])
        server.source.pending.clear()
    for _ in range(100):
        conn = server.app[CONNECTIONS].all()
        conn[0].offer(json.dumps({"pad": blob}).encode())
    deadline = time.monotonic() + 8
    while server.app[CONNECTIONS].count() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.app[CONNECTIONS].count() == 0  # expired at 2 s, closed by 2 s + 1 s
    writer.close()


async def test_faults_end_with_the_run_that_started_them(aiohttp_client, tmp_path) -> None:
    short = tmp_path / "short.yaml"
    short.write_text(
        "name: short\nduration: 20s\nfleet: {agents: 3}\nintervals: {heartbeat: 2s}\n"
        "faults:\n  - {at: 15s, type: pause_delivery, duration: 5m}\n"
    )
    source, info = scenario_source(str(short), 1, "2024-01-20T10:00:00Z")
    app = create_app(make_config(simulation={"speed": 50}), source, info)
    client = await aiohttp_client(app)
    ws = await client.ws_connect(f"/ws?token={token()}")
    await send(ws, type="subscribe", channels=["agents"])
    # The pause began at 10:00:15 and would last 5 minutes, but its run ends at 10:00:20:
    # the held events are let go and the next run delivers live.
    got = []
    while not got or got[-1] < "2024-01-20T10:00:30Z":
        got.append((await recv(ws))["timestamp"])
    assert "2024-01-20T10:00:17Z" in got
    assert app[FAULTS].active() == []
    await ws.close()


async def test_a_restart_fault_past_the_end_does_not_refuse_forever(aiohttp_client, tmp_path):
    short = tmp_path / "short.yaml"
    short.write_text(
        "name: short\nduration: 10s\nfaults:\n  - {at: 5s, type: server_restart, duration: 1h}\n"
    )
    source, info = scenario_source(str(short), 1, "2024-01-20T10:00:00Z")
    app = create_app(make_config(simulation={"speed": 20, "loop": False}), source, info)
    client = await aiohttp_client(app)
    for _ in range(200):
        if app[FEED].finished:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    assert not app[FAULTS].restarting
    ws = await client.ws_connect(f"/ws?token={token()}")
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()


def test_nan_in_a_recording_is_refused_not_sent() -> None:
    line = (
        '{"type":"event","channel":"agents","event":"agent.heartbeat",'
        '"data":{"cpu":NaN},"timestamp":"2024-01-20T10:00:00Z"}'
    )
    with pytest.raises(ValueError, match="NaN is not a JSON number"):
        parse_line(line)


class Broken(ListSource):
    def advance_to(self, t: float):
        if t > T0 + 3:
            raise RuntimeError("boom")
        return super().advance_to(t)


async def test_a_bug_in_the_source_pauses_it_and_says_why(aiohttp_client, caplog) -> None:
    app = create_app(make_config(simulation={"speed": 50}), Broken(), SourceInfo("scenario", "b"))
    client = await aiohttp_client(app)
    for _ in range(200):
        if app[FEED].error:
            break
        await asyncio.sleep(0.01)
    state = await (
        await client.get("/api/sim", headers={"Authorization": f"Bearer {token()}"})
    ).json()
    assert state["paused"] is True and state["error"] == "RuntimeError: boom"
    assert "internal error" in caplog.text
    assert (await client.get("/health")).status == 200  # the server goes on


def test_a_serialisation_failure_drops_that_event_only(caplog) -> None:
    from phoenix.feed import Feed

    hub = Hub()
    source = ListSource()
    source.push(event("agent.heartbeat", {"cpu": float("nan")}, t=T0 + 1))
    source.push(event("agent.heartbeat", {"cpu": 1.0}, t=T0 + 1))
    feed = Feed(hub, source, SourceInfo("scenario", "x"))
    assert feed.step(2) == 1
    assert hub.last_seq == 1 and "cannot be serialised" in caplog.text


def test_history_never_replays_part_of_a_reordered_stream() -> None:
    hub = Hub(history_size=2)

    def pub(seq: int) -> None:
        hub.publish(Published(seq, "agents", "agent.heartbeat", {}, b"x"))

    for seq in (1, 3, 2, 4, 5):  # published out of order, as under a reorder fault
        pub(seq)
    assert hub.replay("agents", 2, {}) is None  # evt-3 is gone: no partial replay
    assert hub.replay("agents", 3, {}) == [(4, b"x"), (5, b"x")]


async def test_resume_from_a_snapshot_taken_during_a_pause(server: Server) -> None:
    server.publish(start("p", "pause_delivery", duration=60))
    server.publish(exp(1, T0 + 2), exp(2, T0 + 3))  # handed ids, held back
    snapshot = await (
        await server.client.get(
            "/api/v1/experiments", headers={"Authorization": f"Bearer {token()}"}
        )
    ).json()
    ws = await server.connect()
    resp = await send(
        ws,
        type="subscribe",
        channels=["experiments"],
        since={"experiments": snapshot["last_event_id"]},
    )
    assert resp["recovered"] is True
    server.publish(end("p", "pause_delivery", T0 + 10))
    assert [(await recv(ws))["data"]["n"] for _ in range(2)] == [1, 2]  # then arrive live
    await ws.close()


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_a_token_with_a_bad_header_is_malformed_not_a_crash(server: Server) -> None:
    bad = f"{_b64({'alg': 'HS256', 'kid': 5})}.{_b64({'sub': 'a', 'exp': 9e9})}.c2ln"
    ws = await server.connect(bad)
    frame = await recv(ws)
    assert frame["error"]["details"]["reason"] == "malformed"
    resp = await server.client.get("/api/sim", headers={"Authorization": f"Bearer {bad}"})
    assert resp.status == 401


async def test_http_snapshots_respect_the_channels_claim_and_the_token_storm(
    server: Server,
) -> None:
    only_metrics = {"Authorization": f"Bearer {token(channels=['metrics'])}"}
    assert (await server.client.get("/api/v1/alerts", headers=only_metrics)).status == 403
    assert (await server.client.get("/api/v1/experiments/x", headers=only_metrics)).status == 403
    old = {"Authorization": f"Bearer {issue(SECRET, 'o', time.time() - 5, 3600)}"}
    assert (await server.client.get("/api/v1/alerts", headers=old)).status == 200
    server.publish(start("s", "token_expiry_storm", duration=30))
    resp = await server.client.get("/api/v1/alerts", headers=old)
    assert resp.status == 401 and (await resp.json())["details"]["reason"] == "expired"


async def test_page_token_refuses_a_foreign_host_name(server: Server) -> None:
    resp = await server.client.post("/api/token", headers={"Host": "evil.example:8080"})
    assert resp.status == 403
    assert (await server.client.post("/api/token")).status == 200
