"""Hostile input, over a real server: every number that comes in has a bound, every string
that is echoed can be encoded, and no request, command or fault holds the event loop or
locks anyone out for long (issue 8, classes 1, 2, 3 and 8)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import os
from pathlib import Path

import aiohttp
import pytest

from phoenix.app import create_app
from phoenix.keys import FEED
from phoenix.sources import scenario_source
from simulator.clock import parse_start

from .conftest import SECRET, T0, Server, make_config, recv, recv_close, send, token
from .test_faults import end, start

START = "2024-01-20T10:00:00Z"
ADMIN = {"Authorization": f"Bearer {token('root', role='admin')}"}


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad]


# --- 3. text that is echoed can be encoded ------------------------------------------


@pytest.mark.parametrize(
    "frame, field",
    [
        ('{"type":"ping","id":"\\ud800"}', "id"),
        ('{"type":"ping","id":"ok\\udfffok"}', "id"),
        ('{"type":"subscribe","channels":["\\ud800"]}', "channels[0]"),
        ('{"type":"subscribe","channels":["agents"],"filters":{"agent_id":"\\udc00"}}', None),
        ('{"type":"\\ud83d"}', "type"),
        ('{"\\ud800":1,"type":"ping"}', None),
    ],
)
async def test_a_lone_surrogate_is_refused_and_the_connection_lives(
    server: Server, caplog, frame: str, field: str | None
) -> None:
    ws = await server.connect()
    await ws.send_str(frame)
    reply = await recv(ws)
    assert reply["type"] == "error"
    assert reply["error"]["code"] == "INVALID_MESSAGE"
    assert "surrogate" in reply["error"]["details"]["problem"]
    if field is not None:
        assert reply["error"]["details"]["field"] == field
    assert "id" not in reply  # the id is what could not be echoed, or was never read
    # The socket is still there and still answers.
    assert (await send(ws, type="ping", id="after"))["id"] == "after"
    await ws.close()
    no_tracebacks(caplog)


async def test_a_surrogate_pair_is_text_and_is_echoed(server: Server) -> None:
    ws = await server.connect()
    await ws.send_str('{"type":"ping","id":"\\ud83d\\ude00"}')
    assert (await recv(ws))["id"] == "\U0001f600"
    await ws.close()


# --- 2. numbers and ids have bounds ---------------------------------------------------


@pytest.mark.parametrize("since", ["evt-²", "evt-１", "evt-٣", "evt-1.5", "evt--1", "evt-"])
async def test_since_takes_ascii_digits_only(server: Server, since: str) -> None:
    ws = await server.connect()
    reply = await send(ws, type="subscribe", channels=["agents"], since={"agents": since})
    assert reply["error"]["code"] == "INVALID_MESSAGE"
    assert reply["error"]["details"]["field"] == "since.agents"
    await ws.close()


async def test_a_frame_of_exactly_the_limit_is_read_and_one_byte_more_closes(serve, caplog) -> None:
    server = await serve(limits={"max_message_bytes": 4096})
    ws = await server.connect()
    base = '{"type":"ping","pad":""}'
    exact = base.replace('""', '"' + "x" * (4096 - len(base)) + '"')
    assert len(exact.encode()) == 4096
    await ws.send_str(exact)
    reply = await recv(ws)
    assert reply["error"]["details"]["field"] == "pad"  # read and answered: not too big
    over = base.replace('""', '"' + "x" * (4097 - len(base)) + '"')
    await ws.send_str(over)
    assert await recv_close(ws) == 1009
    no_tracebacks(caplog)


def raw_token(payload: str) -> str:
    """A token signed with the server's secret around a payload written by hand, so it
    can hold what PyJWT would never write (NaN, Infinity, 400-digit numbers)."""

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    head = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(payload.encode())
    sig = b64(hmac.new(SECRET.encode(), head, hashlib.sha256).digest())
    return (head + b"." + sig).decode()


BAD_TIMES = [
    '{"sub":"a","exp":NaN}',
    '{"sub":"a","exp":Infinity}',
    '{"sub":"a","exp":-Infinity}',
    '{"sub":"a","exp":1' + "0" * 400 + "}",
    '{"sub":"a","exp":1e400}',
    '{"sub":"a","exp":253402300800}',
    '{"sub":"a","exp":4102444800,"iat":-1' + "0" * 400 + "}",
    '{"sub":"' + "u" * 257 + '","exp":4102444800}',
    '{"sub":"\\ud800","exp":4102444800}',
]


@pytest.mark.parametrize("payload", BAD_TIMES)
async def test_token_claims_out_of_range_are_invalid_claims(
    server: Server, caplog, payload: str
) -> None:
    tok = raw_token(payload)
    ws = await server.connect(tok)
    reply = await recv(ws)
    assert reply["error"]["code"] == "UNAUTHORIZED"
    assert reply["error"]["details"]["reason"] == "invalid_claims"
    assert await recv_close(ws) == 4001
    resp = await server.client.get("/api/sim", headers={"Authorization": f"Bearer {tok}"})
    assert resp.status == 401
    assert (await resp.json())["details"]["reason"] == "invalid_claims"
    no_tracebacks(caplog)


async def test_a_good_hand_written_token_is_accepted(server: Server) -> None:
    # The control for raw_token: the same signing, sensible claims.
    ws = await server.connect(raw_token('{"sub":"a","exp":4102444800,"iat":1700000000}'))
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()


# --- the HTTP API's bodies and bounds -----------------------------------------------


@pytest.fixture
async def api(aiohttp_client, tmp_path):
    source, info = scenario_source("demo", 7, START)
    cfg = make_config(simulation={"scenario_dirs": [str(tmp_path / "scenarios")]})
    return await aiohttp_client(create_app(cfg, source, info))


@pytest.fixture(autouse=True)
def scenario_dir(tmp_path: Path) -> Path:
    d = tmp_path / "scenarios"
    d.mkdir()
    return d


BAD_BODIES = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"\xff\xfe{}",
    b'{"action":"pause"',
    b'"pause"',
    b"[]",
    b"null",
    b'{"action":"\\ud800"}',
    b"",
    b"NaN",
]


@pytest.mark.parametrize("body", BAD_BODIES)
@pytest.mark.parametrize("path", ["/api/sim", "/api/sim/faults"])
async def test_every_malformed_body_is_a_400(api, caplog, body: bytes, path: str) -> None:
    resp = await api.post(path, data=body, headers=ADMIN)
    assert resp.status == 400, await resp.text()
    assert "error" in await resp.json()
    no_tracebacks(caplog)


@pytest.mark.parametrize(
    "body, field, allowed",
    [
        ({"action": "step", "seconds": 3601}, "seconds", "at most 3600"),
        ({"action": "step", "seconds": 1e308}, "seconds", "at most 3600"),
        ({"action": "speed", "speed": 10001}, "speed", "at most 10000"),
        ({"action": "speed", "speed": 10**400}, "speed", "at most 10000"),
        ({"action": "restart", "seed": 10**400}, "seed", "1,000,000,000"),
        ({"action": "speed", "speed": 0}, "speed", "> 0"),
        ({"action": "restart", "start": "9999-12-31T23:59:30Z"}, "start", "9000-01-01"),
        ({"action": "restart", "start": "1969-12-31T23:59:59Z"}, "start", "1970-01-01"),
        ({"action": "restart", "speed": 1e9}, "speed", "at most 10000"),
    ],
)
async def test_control_values_out_of_range_are_400_naming_the_range(
    api, body, field, allowed
) -> None:
    resp = await api.post("/api/sim", json=body, headers=ADMIN)
    assert resp.status == 400
    got = await resp.json()
    assert got["details"]["field"] == field
    assert allowed in got["error"]


@pytest.mark.parametrize(
    "fault, field, allowed",
    [
        ({"type": "burst", "params": {"count": 1_000_000_000}}, "params.count", "100000"),
        ({"type": "reorder", "duration": "1m", "params": {"window": 10**9}}, "params.window", ""),
        ({"type": "pause_delivery", "duration": "99999999999999999999d"}, "duration", "366d"),
        ({"type": "pause_delivery", "duration": "2h"}, "duration", "at most 1h"),
        ({"type": "latency", "duration": "1e400"}, "duration", ""),
        (
            {"type": "rate_limit_squeeze", "duration": "1m", "params": {"messages_per_second": 0}},
            "params.messages_per_second",
            "",
        ),
        ({"type": "close_connections", "params": {"user": "u" * 300}}, "params.user", "256"),
    ],
)
async def test_fault_values_out_of_range_are_400_naming_the_field(
    api, caplog, fault, field, allowed
) -> None:
    resp = await api.post("/api/sim/faults", json=fault, headers=ADMIN)
    assert resp.status == 400, await resp.text()
    got = await resp.json()
    assert got["details"]["field"] == field
    assert allowed in got["error"]
    # Nothing was started, and the state still answers.
    state = await api.get("/api/sim", headers=ADMIN)
    assert state.status == 200
    assert (await state.json())["faults"] == []
    no_tracebacks(caplog)


# --- 1. restart loads only what it may, off the loop ----------------------------------


async def restart(api, scenario: str) -> aiohttp.ClientResponse:
    return await api.post(
        "/api/sim", json={"action": "restart", "scenario": scenario}, headers=ADMIN
    )


async def test_restart_loads_a_yaml_file_from_the_scenario_dir(api, scenario_dir) -> None:
    (scenario_dir / "mine.yaml").write_text("name: mine\nfleet:\n  agents: 3\n")
    resp = await restart(api, "mine.yaml")
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["scenario"] == "mine"
    resp = await restart(api, str(scenario_dir / "mine.yaml"))  # absolute, inside: fine
    assert resp.status == 200


async def test_restart_refuses_paths_outside_the_scenario_dirs(api, scenario_dir, tmp_path):
    outside = tmp_path / "outside.yaml"
    outside.write_text("name: outside\n")
    (scenario_dir / "link.yaml").symlink_to(outside)
    (scenario_dir / "etc.yaml").symlink_to("/etc/passwd")
    for ref in [
        str(outside),
        "../outside.yaml",
        "link.yaml",  # a symlink that leaves the directory
        "etc.yaml",
        "/etc/passwd",
        "/dev/zero",
        "../../../../etc/hostname",
        "demo\x00.yaml",
    ]:
        resp = await restart(api, ref)
        assert resp.status == 400, ref
        text = await resp.text()
        assert "root:" not in text  # nothing of a file that is not a scenario is quoted


async def test_a_fifo_or_a_huge_file_is_refused_without_blocking(api, scenario_dir) -> None:
    fifo = scenario_dir / "fifo.yaml"
    os.mkfifo(fifo)  # nobody ever writes to it: reading it would block for ever
    resp = await asyncio.wait_for(restart(api, "fifo.yaml"), 10)
    assert resp.status == 400
    assert "not a regular file" in (await resp.json())["error"]
    big = scenario_dir / "big.yaml"
    big.write_text("name: big\n" + "# padding\n" * 110_000)  # just over 1 MiB
    resp = await restart(api, "big.yaml")
    assert resp.status == 400
    assert "limit of 1048576 bytes" in (await resp.json())["error"]


async def test_a_long_step_keeps_serving_others_meanwhile(aiohttp_client) -> None:
    # Firehose: a step of two simulated minutes is seconds of work. It runs in slices,
    # so /health keeps answering while the step is still going (no time limit is
    # asserted: the proof is the order of the answers).
    source, info = scenario_source("firehose", 1, START)
    client = await aiohttp_client(create_app(make_config(), source, info))
    await client.post("/api/sim", json={"action": "pause"}, headers=ADMIN)
    step = asyncio.ensure_future(
        client.post("/api/sim", json={"action": "step", "seconds": 120}, headers=ADMIN)
    )
    answered = 0
    while not step.done():
        resp = await client.get("/health")
        assert resp.status == 200
        answered += 1 if not step.done() else 0
    assert (await step).status == 200
    assert answered >= 3
    state = await (await client.get("/api/sim", headers=ADMIN)).json()
    assert state["simulated_time"] == "2024-01-20T10:02:00Z"


# --- faults: held frames are capped; a squeeze below 1/s; a pause and a restart -------


async def test_a_pause_delivery_holds_at_most_the_outbound_queue(serve) -> None:
    from .test_faults import beat, subscribed

    server = await serve(limits={"outbound_queue": 50})
    ws = await subscribed(server)
    server.publish(start("p", "pause_delivery", duration=600))
    server.publish(*(beat(n, T0 + 2 + n * 0.001) for n in range(120)))
    # Two floods of 50 went out while the fault still holds the last 20.
    got = [(await recv(ws))["data"]["n"] for _ in range(100)]
    assert got == list(range(100))
    with pytest.raises(asyncio.TimeoutError):
        await ws.receive(timeout=0.3)
    server.publish(end("p", "pause_delivery", T0 + 10))
    assert [(await recv(ws))["data"]["n"] for _ in range(20)] == list(range(100, 120))
    await ws.close()


async def test_a_burst_flushes_at_the_outbound_queue_limit(serve) -> None:
    from .test_faults import beat, subscribed

    server = await serve(limits={"outbound_queue": 30})
    ws = await subscribed(server)
    server.publish(start("b", "burst", count=100_000))
    server.publish(*(beat(n, T0 + 2 + n * 0.001) for n in range(30)))
    assert [(await recv(ws))["data"]["n"] for _ in range(30)] == list(range(30))
    await ws.close()


async def test_a_squeeze_below_one_per_second_still_lets_one_through(server: Server) -> None:
    from .test_faults import subscribed

    ws = await subscribed(server)
    server.publish(start("s", "rate_limit_squeeze", duration=600, messages_per_second=0.5))
    assert (await send(ws, type="ping"))["type"] == "pong"
    refused = await send(ws, type="ping")
    assert refused["error"]["code"] == "RATE_LIMITED"
    wait = refused["error"]["details"]["retry_after_ms"]
    assert 1000 < wait <= 2000
    await asyncio.sleep(wait / 1000 + 0.05)
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()


async def test_a_paused_simulation_never_keeps_ws_closed_by_a_restart(server: Server) -> None:
    # The scripted server is paused throughout: the restart's simulated end never comes.
    # Its downtime is wall time (1 s at speed 1), told by Retry-After and GET /api/sim.
    ws = await server.connect()
    server.publish(start("r", "server_restart", duration=1))
    assert await recv_close(ws) == 1012
    resp = await server.client.get("/ws")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "1"
    state = await (await server.client.get("/api/sim", headers=ADMIN)).json()
    assert state["paused"] is True
    assert [f["fault"] for f in state["faults"]] == ["server_restart"]
    for _ in range(40):
        await asyncio.sleep(0.1)
        if not (await (await server.client.get("/api/sim", headers=ADMIN)).json())["faults"]:
            break
    ws2 = await server.connect()
    assert (await send(ws2, type="ping"))["type"] == "pong"
    await ws2.close()
    assert server.app[FEED].paused


def test_the_error_frame_never_raises() -> None:
    from phoenix import protocol
    from phoenix.protocol import Code, ProtocolError

    err = ProtocolError(Code.INVALID_MESSAGE, "bad \ud800", {"value": "\udfff", "x": float("nan")})
    frame = protocol.error_frame(err, "\ud800", T0)
    decoded = json.loads(frame)
    frame.encode("utf-8")
    assert decoded["error"]["code"] == "INVALID_MESSAGE"
    assert "id" not in decoded


@pytest.mark.parametrize(
    "section, key, value",
    [
        ("simulation", "speed", 10**400),
        ("history", "max_age", 10**400),
        ("limits", "outbound_queue", 10**400),
        ("websocket", "heartbeat", 1e308),
        ("simulation", "seed", 10**20),
    ],
)
def test_config_numbers_out_of_range_name_the_field(section, key, value) -> None:
    from phoenix.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=f"^{section}.{key}: expected ") as info:
        parse_config({section: {key: value}}, {})
    assert len(str(info.value)) < 200  # the 400 digits are not echoed whole


async def test_a_latency_fault_does_not_starve_the_heartbeat(serve) -> None:
    # Frames held two seconds by a latency fault; the heartbeat pings every 0.5 s and
    # wants a pong within 0.25 s. The pings go out past the held frames, so a client
    # that reads everything stays, and gets the held event late.
    from .test_faults import beat, subscribed

    server = await serve(websocket={"heartbeat": 0.5})
    ws = await subscribed(server)
    server.publish(start("l", "latency", duration=600, delay_ms=2000, jitter_ms=0))
    server.publish(beat(1, T0 + 2))
    got = await recv(ws, timeout=10)  # aiohttp's client answers pings while it reads
    assert got["data"]["n"] == 1
    assert not ws.closed
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()


async def test_a_looping_scenario_is_loaded_again_with_the_configured_cap(
    aiohttp_client, scenario_dir
) -> None:
    # A scenario over the default 1 MiB, allowed by the config: its second run must load
    # with the same cap (it used to fall back to the default and stop looping).
    path = scenario_dir / "big.yaml"
    path.write_text(
        "name: big\nstart: 2024-01-20T10:00:00Z\nduration: 3s\nfleet:\n  agents: 2\n"
        + "# padding\n" * 120_000
    )
    assert path.stat().st_size > 1 << 20
    cfg = make_config(
        simulation={"scenario": str(path), "max_scenario_bytes": 2 << 20, "speed": 20}
    )
    client = await aiohttp_client(create_app(cfg))
    feed = client.app[FEED]
    for _ in range(100):
        if feed.source.now > parse_start("2024-01-20T10:00:05Z"):
            break
        await asyncio.sleep(0.05)
    assert feed.error is None
    assert feed.source.now > parse_start("2024-01-20T10:00:05Z")  # the second run is on


async def test_restart_with_start_now(api) -> None:
    import time

    from simulator.clock import parse_rfc3339

    before = time.time()
    resp = await api.post(
        "/api/sim", json={"action": "restart", "scenario": "demo", "start": "now"}, headers=ADMIN
    )
    assert resp.status == 200, await resp.text()
    t = parse_rfc3339((await resp.json())["simulated_time"])
    assert before - 2 <= t <= time.time() + 2


async def test_set_rate_raises_a_rate_while_running_and_checks_its_values(aiohttp_client) -> None:
    # The firehose control that firehose's description promises.
    source, info = scenario_source("demo", 7, START)
    client = await aiohttp_client(create_app(make_config(), source, info))
    await client.post("/api/sim", json={"action": "pause"}, headers=ADMIN)
    await client.post("/api/sim", json={"action": "step", "seconds": 30}, headers=ADMIN)
    body = {"action": "set_rate", "channel": "agents", "per_second": 300}
    resp = await client.post("/api/sim", json=body, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    feed = client.app[FEED]
    before = feed.seq
    await client.post("/api/sim", json={"action": "step", "seconds": 10}, headers=ADMIN)
    assert feed.seq - before >= 2900  # 300 heartbeats a second, plus the rest
    for bad, field in [
        ({"channel": "nope", "per_second": 5}, "channel"),
        ({"channel": ["agents"], "per_second": 5}, "channel"),
        ({"channel": "agents", "per_second": 10**400}, "per_second"),
        ({"channel": "agents", "per_second": 0}, "per_second"),
        ({"channel": "metrics", "per_second": 5e-324}, "per_second"),
        ({"channel": "metrics", "per_second": 5}, "per_second"),
        ({"channel": "agents"}, "per_second"),
    ]:
        resp = await client.post("/api/sim", json={"action": "set_rate", **bad}, headers=ADMIN)
        assert resp.status == 400, bad
        assert (await resp.json())["details"]["field"] == field, bad
