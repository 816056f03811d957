"""Fan-out: every matching connection gets each event once, in order; a consumer that
stops reading is closed with 1013 without slowing the others or growing memory."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct

from phoenix.keys import CONNECTIONS, HUB

from .conftest import T0, TIMEOUT, Server, event, recv, send, token


async def raw_ws(
    server: Server, tok: str, buffer: int = 4096
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-made WebSocket client with a tiny receive buffer, which we can make stop
    reading for real (aiohttp's client reads in the background)."""
    host, port = server.client.host, server.client.port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=buffer)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws?token={tok} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    writer.write(request.encode())
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


def client_frame(text: str, opcode: int = 0x81) -> bytes:
    payload = text.encode("latin-1" if opcode == 0x88 else "utf-8")
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return struct.pack("!BB", opcode, 0x80 | len(payload)) + mask + masked


async def test_every_subscriber_gets_every_event_in_order(server: Server) -> None:
    clients = [await server.connect(token(f"u{i}")) for i in range(20)]
    for ws in clients:
        await send(ws, type="subscribe", channels=["agents"])
    events = [
        event(
            "agent.heartbeat",
            {"agent_id": f"agent-{i}", "n": i},
            t=T0 + 1 + i // 50,
            agent_id=f"agent-{i}",
        )
        for i in range(200)
    ]
    server.publish(*events)
    for ws in clients:
        got = [(await recv(ws))["data"]["n"] for _ in range(200)]
        assert got == list(range(200))
    for ws in clients:
        await ws.close()


async def test_slow_consumer_is_closed_1013_and_others_keep_receiving(serve) -> None:
    limit = 100
    # A long close timeout: the close frame waits behind the unread data until we read.
    server: Server = await serve(limits={"outbound_queue": limit}, websocket={"close_timeout": 30})
    reader, writer = await raw_ws(server, token("slow"))
    writer.write(client_frame('{"type":"subscribe","channels":["agents"]}'))
    await writer.drain()
    readers = [await server.connect(token(f"good{i}")) for i in range(4)]
    for ws in readers:
        await send(ws, type="subscribe", channels=["agents"])
    await server.wait_connections(5)
    while server.app[HUB].subscriber_count("agents") < 5:
        await asyncio.sleep(0.01)

    total = 3000
    received: list[list[int]] = [[] for _ in readers]

    async def read_all(ws, into: list[int]) -> None:
        while len(into) < total:
            into.append((await recv(ws))["data"]["n"])

    reading = asyncio.gather(*(read_all(ws, r) for ws, r in zip(readers, received, strict=True)))
    blob = "x" * 1000
    deepest = 0
    for batch in range(total // 100):
        server.publish(
            *[
                event(
                    "agent.heartbeat",
                    {"agent_id": "agent-a", "n": batch * 100 + i, "pad": blob},
                    t=T0 + 1 + batch,
                    agent_id="agent-a",
                )
                for i in range(100)
            ]
        )
        deepest = max([deepest, *(c.queued for c in server.app[CONNECTIONS].all())])
        await asyncio.sleep(0.005)
    await asyncio.wait_for(reading, TIMEOUT * 2)
    assert all(r == list(range(total)) for r in received)  # the readers lost nothing
    assert deepest <= limit  # memory stayed bounded by the queue limit
    assert server.app[HUB].subscriber_count("agents") == 4  # the slow one gets no more
    metrics = await (await server.client.get("/metrics")).text()
    assert "phoenix_slow_consumer_closes_total 1.0" in metrics

    # When the slow client reads again, what was already in flight ends in a close frame
    # with 1013 (the queued frames were dropped, not sent).
    data = b""
    while _last_close_code(data) is None:
        chunk = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        assert chunk, "connection ended without a close frame"
        data += chunk
    assert _last_close_code(data) == 1013
    writer.write(client_frame(struct.pack("!H", 1013).decode("latin-1"), opcode=0x88))
    await server.wait_connections(4)  # the slow one is gone
    writer.close()
    for ws in readers:
        await ws.close()


def _last_close_code(data: bytes) -> int | None:
    """Scan server frames for a close frame and return its code."""
    i, code = 0, None
    while i + 2 <= len(data):
        op, ln = data[i] & 0x0F, data[i + 1] & 0x7F
        j = i + 2
        if ln == 126:
            ln = struct.unpack("!H", data[j : j + 2])[0]
            j += 2
        elif ln == 127:
            ln = struct.unpack("!Q", data[j : j + 8])[0]
            j += 8
        if op == 0x8 and ln >= 2 and j + 2 <= len(data):
            code = struct.unpack("!H", data[j : j + 2])[0]
        i = j + ln
    return code


async def test_health_reports_connections_and_uptime(server: Server) -> None:
    ws = await server.connect()
    await server.wait_connections(1)
    body = await (await server.client.get("/health")).json()
    assert body["status"] == "ok" and body["connections"] == 1
    assert body["uptime_seconds"] >= 0
    await ws.close()
