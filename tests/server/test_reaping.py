"""Dead connections are reaped, and every way a connection ends is counted by reason
(`phoenix_connections_closed_total{reason}`), over a real server and real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import struct
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from phoenix.app import create_app
from phoenix.keys import CONNECTIONS, HUB, METRICS
from phoenix.metrics import CLOSE_REASONS
from phoenix.sources import scenario_source

from .conftest import T0, TIMEOUT, Server, event, make_config, recv, recv_close, send, token
from .test_fanout import raw_ws

TEXT, PING, CLOSE = 0x1, 0x9, 0x8


def frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """A masked, final client frame (RFC 6455 §5.2)."""
    mask = os.urandom(4)
    n = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | n) if n < 126 else b""
    if n >= 126:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def command(**msg: Any) -> bytes:
    return frame(json.dumps(msg).encode())


async def silent_client(
    server: Server, tok: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-made WebSocket client with a 1 KB receive buffer: once it stops reading,
    the server's frames really pile up (aiohttp's client would read in the background)."""
    return await raw_ws(server, tok, buffer=1024)


def closed_counts(text: str) -> dict[str, float]:
    return {
        s.labels["reason"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "phoenix_connections_closed_total"
    }


async def counted(client: Any, **expected: int) -> None:
    """Wait until /metrics counts exactly `expected` closes by reason (every other reason
    0): the count is taken when the server's handler ends, just after the client sees it."""
    want = {reason: float(expected.get(reason, 0)) for reason in CLOSE_REASONS}
    got: dict[str, float] = {}
    for _ in range(int(TIMEOUT / 0.02)):
        got = closed_counts(await (await client.get("/metrics")).text())
        if got == want:
            return
        await asyncio.sleep(0.02)
    assert got == want


async def wait_count(app: Any, n: int) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if app[CONNECTIONS].count() == n:
            return
        await asyncio.sleep(0.01)
    assert app[CONNECTIONS].count() == n


def beat(n: int, pad: str = "") -> Any:
    return event("agent.heartbeat", {"agent_id": "a", "n": n, "pad": pad}, t=T0 + 1, agent_id="a")


async def test_a_client_that_floods_pings_then_goes_silent_is_reaped(serve, caplog) -> None:
    caplog.set_level(logging.WARNING, "phoenix.ws")
    server: Server = await serve(
        websocket={"heartbeat": 0.5, "close_timeout": 0.5}, limits={"connections_per_user": 1}
    )
    tok = token("mallory")
    reader, writer = await silent_client(server, tok)
    writer.write(command(type="subscribe", channels=["agents"]))
    await writer.drain()
    while server.app[HUB].subscriber_count("agents") < 1:
        await asyncio.sleep(0.01)
    (conn,) = server.app[CONNECTIONS].all()
    # The server's end of the socket gets a small send buffer too (a congested link), so
    # that what follows fills it whatever the kernel's buffer autotuning would allow.
    server_sock = conn._transport.get_extra_info("socket")
    server_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    # Protocol pings by the thousand (each asks for a pong), and our own ping command up
    # to the rate limit; then the client never reads again, with its TCP connection open.
    writer.write(b"".join(frame(b"p" * 125, PING) for _ in range(3000)))
    writer.write(b"".join(command(type="ping", id=f"p{i}") for i in range(100)))
    # Fill the server's side too: events until its socket is full and frames queue
    # behind it (the writer task waits on a drain that will never come).
    pad = "x" * 16000
    for n in range(2000):
        if conn.queued >= 10:
            break
        server.publish(beat(n, pad))
        await asyncio.sleep(0)
    assert conn.queued >= 10

    await server.wait_connections(0)  # a few heartbeats, not forever
    # The user's one slot is free again.
    ws = await server.connect(tok)
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()
    await counted(server.client, heartbeat_timeout=1, normal=1)
    lines = [r for r in caplog.records if "heartbeat timeout" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert "127.0.0.1" in lines[0].getMessage() and "sub=mallory" in lines[0].getMessage()
    assert tok not in caplog.text
    writer.close()


async def test_a_client_that_misses_the_pong_is_dropped_logged_and_counted(serve, caplog) -> None:
    caplog.set_level(logging.WARNING, "phoenix.ws")
    server: Server = await serve(websocket={"heartbeat": 0.5})
    tok = token("deaf")
    ws = await server.connect(tok, autoping=False)  # reads, but never answers a ping
    msg = await ws.receive(timeout=TIMEOUT)
    assert msg.type == aiohttp.WSMsgType.PING
    await server.wait_connections(0)
    await counted(server.client, heartbeat_timeout=1)
    lines = [r.getMessage() for r in caplog.records if "heartbeat timeout" in r.getMessage()]
    assert len(lines) == 1 and "sub=deaf" in lines[0]
    assert tok not in caplog.text
    await ws.close()


async def test_a_client_that_answers_pings_stays(serve) -> None:
    server: Server = await serve(websocket={"heartbeat": 0.2})
    ws = await server.connect()
    # aiohttp's client answers pings while it is receiving: five heartbeats' worth.
    reading = asyncio.create_task(ws.receive())
    await asyncio.sleep(1.0)
    assert not reading.done()
    await ws.send_str('{"type":"ping"}')
    assert json.loads((await reading).data)["type"] == "pong"
    await ws.close()
    await counted(server.client, normal=1)


async def test_a_protocol_ping_gets_a_pong(server: Server) -> None:
    ws = await server.connect(autoping=False)  # so that pongs reach us
    await ws.ping(b"hello")
    msg = await ws.receive(timeout=TIMEOUT)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.PONG, b"hello")
    await ws.close()


async def test_closed_by_the_client_is_normal_dropped_is_error(server: Server) -> None:
    ws = await server.connect()
    await ws.close()
    await counted(server.client, normal=1)
    reader, writer = await silent_client(server, token())
    await server.wait_connections(1)
    writer.close()  # TCP closed with no close frame
    await server.wait_connections(0)
    await counted(server.client, normal=1, error=1)


async def test_a_slow_consumer(serve) -> None:
    server: Server = await serve(limits={"outbound_queue": 20}, websocket={"close_timeout": 0.2})
    reader, writer = await silent_client(server, token("slow"))
    writer.write(command(type="subscribe", channels=["agents"]))
    await writer.drain()
    while server.app[HUB].subscriber_count("agents") < 1:
        await asyncio.sleep(0.01)
    pad = "x" * 16000
    for n in range(3000):
        if not server.app[HUB].subscriber_count("agents"):
            break
        server.publish(beat(n, pad))
        await asyncio.sleep(0)
    assert server.app[HUB].subscriber_count("agents") == 0  # evicted
    await server.wait_connections(0)
    await counted(server.client, slow_consumer=1)
    writer.close()


async def test_rate_limited_by_flooding_and_by_the_connection_limit(serve) -> None:
    server: Server = await serve(
        limits={"messages_per_second": 10, "close_after_rejected": 30, "connections_per_user": 1}
    )
    ws = await server.connect(token("flood"))
    for _ in range(100):
        await ws.send_str('{"type":"ping"}')
    assert await recv_close(ws) == 4029
    one = await server.connect(token("bob"))
    refused = await server.connect(token("bob"))
    assert await recv_close(refused) == 4029
    await counted(server.client, rate_limited=2)
    await one.close()
    await counted(server.client, rate_limited=2, normal=1)


async def test_unauthorized_refused_and_expired(server: Server) -> None:
    bad = await server.connect("nonsense")
    assert await recv_close(bad) == 4001
    ws = await server.connect(token("brief", ttl=2))
    assert (await recv(ws, TIMEOUT))["error"]["details"]["reason"] == "expired"
    assert await recv_close(ws) == 4001
    await counted(server.client, unauthorized=2)


async def test_server_shutdown(server: Server) -> None:
    clients = [await server.connect(token(f"u{i}")) for i in range(2)]
    await server.wait_connections(2)
    await server.client.server.close()  # the app's shutdown: 1001 to everyone
    assert [await recv_close(ws) for ws in clients] == [1001, 1001]
    counts = closed_counts(server.app[METRICS].render().decode())
    assert counts["shutdown"] == 2
    assert sum(counts.values()) == 2


async def test_faults_injected_through_the_api(aiohttp_client) -> None:
    source, info = scenario_source("demo", 7, "2024-01-20T10:00:00Z")
    app = create_app(make_config(simulation={"speed": 20}), source, info)
    client = await aiohttp_client(app)
    admin = {"Authorization": f"Bearer {token('root', role='admin')}"}
    faults = [
        {"type": "close_connections", "params": {"code": 4000}},
        {"type": "close_connections", "params": {"abrupt": True}},
        # Codes the server uses for other reasons still count as a fault here.
        {"type": "close_connections", "params": {"code": 1013}},
        {"type": "token_expiry_storm"},
        {"type": "server_restart", "duration": "1s"},
    ]
    for n, fault in enumerate(faults, 1):
        ws = await client.ws_connect(f"/ws?token={token('v')}")
        assert (await send(ws, type="ping"))["type"] == "pong"
        resp = await client.post("/api/sim/faults", json=fault, headers=admin)
        assert resp.status == 202, await resp.text()
        await recv_close(ws)
        await wait_count(app, 0)
        await counted(client, fault=n)
        await ws.close()
