"""Fixtures for end-to-end tests of the server: a real app on loopback, a real client.

`ListSource` is a scripted event source (the feed's in-memory test double): tests put
events in it and the real feed, hub and sockets deliver them. Tests that need the real
simulation use `scenario_source` instead.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from phoenix.app import create_app
from phoenix.auth import issue
from phoenix.config import Config, parse_config
from phoenix.feed import SourceInfo
from simulator.events import Event

from ..contract.validate import text_frame_problem

SECRET = "test-secret-that-is-long-enough-for-every-hmac-algorithm-0123456789"
T0 = 1705744800.0  # 2024-01-20T10:00:00Z
TIMEOUT = 5.0  # the one timeout unit for waiting on frames


class ListSource:
    """A source whose events the test scripts."""

    def __init__(self, start: float = T0) -> None:
        self._now = start
        self.pending: list[Event] = []
        self.end: float | None = None
        self.state: dict[str, Any] = {
            "experiments": [],
            "agents": [],
            "deployments": [],
            "alerts": [],
        }

    @property
    def now(self) -> float:
        return self._now

    def push(self, event: Event) -> None:
        self.pending.append(event)

    def advance_to(self, t: float) -> list[Event]:
        due = [e for e in self.pending if e.time <= t]
        self.pending = [e for e in self.pending if e.time > t]
        self._now = max(self._now, t)
        return due

    def snapshot(self) -> dict[str, Any]:
        return self.state


def make_config(**sections: dict[str, Any]) -> Config:
    raw: dict[str, Any] = {"auth": {"jwt_secret": SECRET}, "websocket": {"heartbeat": 0}}
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return parse_config(raw, {})


def token(sub: str = "alice", ttl: float = 3600, **claims: Any) -> str:
    return issue(SECRET, sub, time.time(), ttl, **claims)


class Server:
    """A running app plus helpers to connect, publish and read frames."""

    def __init__(self, client: TestClient, source: ListSource) -> None:
        self.client = client
        self.app = client.app
        self.source = source

    def url(self, tok: str | None = None) -> str:
        return "/ws" if tok is None else f"/ws?token={tok}"

    async def connect(self, tok: str | None = "", **kw: Any) -> aiohttp.ClientWebSocketResponse:
        if tok == "":
            tok = token()
        return await self.client.ws_connect(self.url(tok), **kw)

    async def wait_connections(self, n: int) -> None:
        """Wait until the server counts `n` open connections."""
        from phoenix.keys import CONNECTIONS

        for _ in range(int(TIMEOUT / 0.01)):
            if self.app[CONNECTIONS].count() == n:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {n} connections, have {self.app[CONNECTIONS].count()}")

    def publish(self, *events: Event) -> None:
        """Publish now, synchronously, through the real feed."""
        from phoenix.keys import FEED

        for e in events:
            self.source.push(e)
        feed = self.app[FEED]
        feed.step(max(0.0, max(e.time for e in events) - feed.source.now))


@pytest.fixture
def source() -> ListSource:
    return ListSource()


@pytest.fixture
def serve(
    aiohttp_client: Callable[..., Awaitable[TestClient]], source: ListSource
) -> Callable[..., Awaitable[Server]]:
    async def start(config: Config | None = None, **sections: dict[str, Any]) -> Server:
        cfg = config or make_config(**sections)
        app = create_app(cfg, source, SourceInfo("scenario", "scripted", 0))
        from phoenix.keys import FEED

        app[FEED].pause()  # scripted tests publish by hand
        client = await aiohttp_client(app)
        return Server(client, source)

    return start


@pytest.fixture
async def server(serve: Callable[..., Awaitable[Server]]) -> Server:
    return await serve()


async def recv(ws: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == aiohttp.WSMsgType.TEXT, f"expected a text frame, got {msg.type} {msg.data!r}"
    return json.loads(msg.data)


async def recv_close(ws: aiohttp.ClientWebSocketResponse, timeout: float = TIMEOUT) -> int | None:
    """Read until the socket closes; returns the code of the server's close frame (None
    when the connection ended without one)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        msg = await ws.receive(timeout=max(left, 0.01))
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return ws.close_code
        if msg.type == aiohttp.WSMsgType.ERROR:
            return None


async def send(ws: aiohttp.ClientWebSocketResponse, **msg: Any) -> dict[str, Any]:
    await ws.send_str(json.dumps(msg))
    return await recv(ws)


def event(name: str, data: dict[str, Any], t: float = T0 + 1, **tags: str) -> Event:
    channel = {
        "experiment": "experiments",
        "metrics": "metrics",
        "agent": "agents",
        "deployment": "deployments",
        "alert": "alerts",
        "cost": "cost-flow",
    }[name.split(".")[0]]
    return Event(t, channel, name, data, dict(tags))


@pytest.fixture
async def ws_factory(
    server: Server,
) -> AsyncIterator[Callable[..., Awaitable[aiohttp.ClientWebSocketResponse]]]:
    opened: list[aiohttp.ClientWebSocketResponse] = []

    async def open_ws(tok: str | None = "", **kw: Any) -> aiohttp.ClientWebSocketResponse:
        ws = await server.connect(tok, **kw)
        opened.append(ws)
        return ws

    yield open_ws
    for ws in opened:
        await ws.close()


# Whether a test's own call failed: the contract check after it then has nothing to add.
CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


@pytest.fixture(autouse=True)
def frames_match_the_contract(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Every frame any server test receives through aiohttp must match docs/asyncapi.yaml
    (tests/contract/validate.py): so the document is checked against every reply, error
    and event the protocol tests provoke, not only against frames written for it.

    `receive` is the one read path of aiohttp's client WebSocket (`receive_str`,
    `receive_json` and `async for` all go through it). A frame that fails raises there,
    naming the frame and the schema error, which fails the test; if the test's own code
    swallowed that, the check after the test fails it instead."""
    failures: list[str] = []
    receive = aiohttp.ClientWebSocketResponse.receive

    async def checked(self: aiohttp.ClientWebSocketResponse, timeout: float | None = None) -> Any:
        msg = await receive(self, timeout)
        if msg.type is aiohttp.WSMsgType.TEXT:
            data = msg.data if isinstance(msg.data, str) else bytes(msg.data).decode()
            found = text_frame_problem(data)
        elif msg.type is aiohttp.WSMsgType.BINARY:
            data, found = repr(msg.data[:200]), "binary: the server sends JSON in text frames only"
        else:
            return msg
        if found is not None:
            failures.append(f"{found}\n    frame: {data[:1000]}")
            raise AssertionError(f"a frame does not match docs/asyncapi.yaml: {failures[-1]}")
        return msg

    monkeypatch.setattr(aiohttp.ClientWebSocketResponse, "receive", checked)
    yield
    if failures and not request.node.stash.get(CALL_FAILED, False):
        pytest.fail("frames that do not match docs/asyncapi.yaml:\n" + "\n".join(failures))
