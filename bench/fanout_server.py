"""One server of the fan-out benchmark, in its own process: `ours` or `bare`.

    python bench/fanout_server.py ours|bare PORT

`ours` is the real application (`create_app` with the default config apart from the JWT
secret, an idle scripted source and the feed paused); its publisher goes the real path,
`hub.publish(feed.published(seq, Event))`: serialise once, filter, `Connection.offer`.

`bare` is the floor: a plain aiohttp WebSocket handler that only registers the socket,
and a publisher that builds each event's WebSocket frame once (header + the same JSON
bytes) and hands it to every client's transport with one `transport.write`, awaiting
nobody. That is the cheapest way aiohttp can put a frame on N sockets: no task per send,
no queue, no per-client serialisation, no flow control (a slow client would grow its
buffer without bound, which ours must not do).

Both add `POST /bench/run?rate=MSGS_PER_S&seconds=S` (publish, then answer with counts)
and `GET /bench/state` (open connections, slow-consumer evictions). The process prints
`ready` when it listens and stops on SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
import time
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import SECRET, event_data, pace, pad_for, template  # noqa: E402

PAD = pad_for()


def frame_header(length: int) -> bytes:
    """Header of an unmasked, final text frame (RFC 6455 §5.2)."""
    if length < 126:
        return struct.pack("!BB", 0x81, length)
    if length < 65536:
        return struct.pack("!BBH", 0x81, 126, length)
    return struct.pack("!BBQ", 0x81, 127, length)


class IdleSource:
    """A source with no events: the benchmark publishes straight to the hub."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.end: float | None = None

    def advance_to(self, t: float) -> list[Any]:
        self.now = max(self.now, t)
        return []

    def snapshot(self) -> dict[str, Any]:
        return {"experiments": [], "agents": [], "deployments": [], "alerts": []}


def ours() -> tuple[web.Application, Any, Any]:
    from phoenix.app import create_app
    from phoenix.config import parse_config
    from phoenix.feed import SourceInfo, published
    from phoenix.keys import CONNECTIONS, FEED, HUB, METRICS
    from simulator.events import Event

    config = parse_config({"auth": {"jwt_secret": SECRET}}, {})
    t_sim = 1705744800.0
    app = create_app(config, IdleSource(t_sim), SourceInfo("scenario", "bench", 0))
    app[FEED].pause()
    hub = app[HUB]
    seq = 0

    def publish_one() -> int:
        nonlocal seq
        seq += 1
        data = event_data(time.time(), PAD)
        event = Event(t_sim, "agents", "agent.heartbeat", data, {"agent_id": data["agent_id"]})
        return hub.publish(published(seq, event))

    def state() -> dict[str, Any]:
        evicted = int(app[METRICS].slow_consumers._value.get())
        return {"connections": app[CONNECTIONS].count(), "evicted": evicted}

    return app, publish_one, state


def bare() -> tuple[web.Application, Any, Any]:
    app = web.Application()
    transports: set[asyncio.Transport] = set()
    head, tail = template(PAD)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        transport = request.transport
        assert transport is not None
        transports.add(transport)
        try:
            async for _ in ws:
                pass
        finally:
            transports.discard(transport)
        return ws

    def publish_one() -> int:
        payload = b"".join((head, repr(time.time()).encode(), tail))
        frame = frame_header(len(payload)) + payload
        n = 0
        for t in transports:
            if not t.is_closing():
                t.write(frame)
                n += 1
        return n

    def state() -> dict[str, Any]:
        return {"connections": len(transports), "evicted": 0}

    app.router.add_get("/ws", handler)
    return app, publish_one, state


async def main(kind: str, port: int) -> None:
    app, publish_one, state = ours() if kind == "ours" else bare()

    async def run(request: web.Request) -> web.Response:
        rate = float(request.query["rate"])
        seconds = float(request.query["seconds"])
        subscribers = max(1, int(request.query["clients"]))
        result = await pace(publish_one, rate / subscribers, seconds)
        return web.json_response({**result, **state()})

    async def get_state(request: web.Request) -> web.Response:
        return web.json_response(state())

    app.router.add_post("/bench/run", run)
    app.router.add_get("/bench/state", get_state)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    # BENCH_LOOP=uvloop runs either server on uvloop instead of asyncio's own loop (the
    # trial of issue 9; `pip install uvloop` first).
    if os.environ.get("BENCH_LOOP") == "uvloop":
        import uvloop

        uvloop.install()
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
