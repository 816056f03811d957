"""A real WebSocket client for the cluster tests, with one timeout for every wait."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from .conftest import TIMEOUT, Node, token

ALL = ["experiments", "agents", "metrics", "deployments", "alerts", "cost-flow"]


async def open_ws(
    session: aiohttp.ClientSession, node: Node, tok: str | None = None
) -> aiohttp.ClientWebSocketResponse:
    return await session.ws_connect(f"{node.ws}?token={tok or token()}")


async def frame(ws: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    if msg.type is not aiohttp.WSMsgType.TEXT:
        raise AssertionError(f"expected a frame, got {msg.type.name} {msg.data!r} {msg.extra!r}")
    body: dict[str, Any] = json.loads(msg.data)
    return body


async def subscribe(
    ws: aiohttp.ClientWebSocketResponse,
    channels: list[str],
    since: dict[str, str] | None = None,
    filters: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Subscribe and return the reply (events that come before it fail the test)."""
    msg: dict[str, Any] = {"type": "subscribe", "id": "s", "channels": channels}
    if since:
        msg["since"] = since
    if filters:
        msg["filters"] = filters
    await ws.send_json(msg)
    reply = await frame(ws)
    assert reply.get("type") == "response", reply
    return reply


async def events(
    ws: aiohttp.ClientWebSocketResponse, n: int, timeout: float = TIMEOUT
) -> list[dict[str, Any]]:
    out = []
    while len(out) < n:
        f = await frame(ws, timeout)
        if f["type"] == "event":
            out.append(f)
    return out


async def closed(ws: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> int | None:
    """Read until the server closes; its close code."""
    while True:
        msg = await ws.receive(timeout=timeout)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
            return ws.close_code
        if msg.type is aiohttp.WSMsgType.ERROR:
            return ws.close_code
