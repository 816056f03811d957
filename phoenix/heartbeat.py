"""The protocol-level heartbeat (RFC 6455 ping/pong) for every connection, from one task.

Every `websocket.heartbeat` seconds of silence from a client, the server pings it; a
client that sends nothing (no pong, no frame at all) within half that again is gone, or
stuck and not reading: it is logged, counted (heartbeat_timeout) and its TCP connection
cut, which frees its user's slot.

One sweep over all connections every half interval, not aiohttp's heartbeat: that keeps
a timer per connection and moves it on every frame received (measured: about 1.7 KiB of
the server's memory per idle connection; bench/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from phoenix.keys import CONFIG, CONNECTIONS


async def heartbeat(app: web.Application) -> AsyncIterator[None]:
    """A cleanup context: the sweeper runs while the app does (not at all for 0)."""
    interval = app[CONFIG].websocket.heartbeat
    task = asyncio.get_running_loop().create_task(_sweep(app, interval)) if interval else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _sweep(app: web.Application, interval: float) -> None:
    loop = asyncio.get_running_loop()
    registry = app[CONNECTIONS]
    while True:
        await asyncio.sleep(interval / 2)
        now = loop.time()
        for conn in registry.all():
            conn.check_heartbeat(now, interval)
