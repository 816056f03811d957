"""The demo served over a real socket matches docs/asyncapi.yaml frame by frame, data and
all: every event on every channel, events narrowed by a filter, a resume's replay, and the
replies. Connected the way the document says (its server path, its token parameter)."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from phoenix.app import create_app
from phoenix.auth import issue
from phoenix.config import parse_config
from phoenix.feed import Feed
from phoenix.keys import FEED
from phoenix.protocol import CHANNELS
from phoenix.sources import scenario_source

from .validate import document, event_schemas, frame_problem

SECRET = "contract-test-secret-long-enough-for-every-hmac-algorithm-0123456789"
START = "2024-01-20T10:00:00Z"
TIMEOUT = 5.0


class Reader:
    """One client socket whose every frame is checked against the document."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.pings = 0

    async def frame(self) -> dict[str, Any]:
        msg = await self.ws.receive(timeout=TIMEOUT)
        assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type}"
        frame = json.loads(msg.data)
        found = frame_problem(frame, events=True)
        assert found is None, f"{found}\n    frame: {msg.data[:1000]}"
        return frame

    async def command(self, **cmd: Any) -> dict[str, Any]:
        """Send a command; return its reply, keeping the events that come before it."""
        await self.ws.send_str(json.dumps(cmd))
        while (frame := await self.frame())["type"] == "event":
            self.events.append(frame)
        return frame

    async def drain(self) -> None:
        """Every event queued so far: a ping's pong comes after them."""
        self.pings += 1
        pong = await self.command(type="ping", id=f"p{self.pings}")
        assert (pong["type"], pong.get("id")) == ("pong", f"p{self.pings}"), pong


async def test_the_served_demo_matches_the_document(
    aiohttp_client: Callable[..., Awaitable[TestClient]],
) -> None:
    cfg = parse_config(
        {
            "auth": {"jwt_secret": SECRET},
            "websocket": {"heartbeat": 0},
            "limits": {"outbound_queue": 100_000},  # the test reads in bursts
        },
        {},
    )
    app = create_app(cfg, *scenario_source("demo", 7, START))
    feed = app[FEED]
    assert isinstance(feed, Feed)  # in one process: the simulation's own feed
    feed.pause()  # the test steps the simulation itself
    client = await aiohttp_client(app)
    doc = document()
    path = doc["servers"]["local"]["pathname"]
    param = doc["components"]["securitySchemes"]["token"]["name"]

    async def connect() -> Reader:
        tok = issue(SECRET, "contract", time.time(), 3600)
        return Reader(await client.ws_connect(f"{path}?{param}={tok}"))

    everything, narrowed = await connect(), await connect()
    reply = await everything.command(type="subscribe", id="all", channels=list(CHANNELS))
    assert reply["subscribed"] == list(CHANNELS)
    reply = await narrowed.command(
        type="subscribe",
        channels=["metrics", "cost-flow", "deployments", "alerts"],
        filters={"experiment_id": "exp-790"},
    )
    assert "recovered" not in reply
    for _ in range(120):  # ten simulated minutes, 5 s at a time
        feed.step(5)
        await everything.drain()
        await narrowed.drain()
    # The demo sends all sixteen within ten minutes: each was checked on the wire.
    assert {e["event"] for e in everything.events} == set(event_schemas())
    narrow_updates = [e for e in narrowed.events if e["event"] == "metrics.update"]
    assert narrow_updates and all(
        set(e["data"]["experiments"]) <= {"exp-790"} for e in narrow_updates
    )
    assert any(e["data"]["experiments"] for e in narrow_updates)

    # A resume: the response says recovered, and the replay comes after it.
    first = next(e for e in everything.events if e["channel"] == "experiments")
    resumed = await connect()
    reply = await resumed.command(
        type="subscribe", id="again", channels=["experiments"], since={"experiments": first["id"]}
    )
    assert reply["recovered"] is True
    await resumed.drain()
    expected = [e for e in everything.events if e["channel"] == "experiments"][1:]
    assert resumed.events == expected

    reply = await everything.command(type="unsubscribe", channels=["agents", "metrics"])
    assert reply["unsubscribed"] == ["agents", "metrics"]
    for reader in (everything, narrowed, resumed):
        await reader.ws.close()
