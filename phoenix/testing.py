"""The public API for testing your own client against a running simulator.

    from phoenix.testing import serve

    with serve(scenario="demo", seed=7, speed=60) as sim:
        token = sim.token()
        ...  # connect your client to sim.ws_url + "?token=" + token
        sim.pause()
        sim.step(30)
        assert sim.events_sent(channel="agents")

The server runs in this process, on a thread of its own with its own event loop, on a
free loopback port, with a random JWT secret; so synchronous and asyncio tests alike can
use it, and it stops when the `with` block ends. `phoenix.pytest_plugin` wraps it as the
`phoenix_sim` fixture. Nothing here is needed by the server itself.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar, cast

from aiohttp import web

from phoenix.app import create_app
from phoenix.auth import issue
from phoenix.config import parse_config
from phoenix.feed import Feed
from phoenix.keys import CONTROL, FEED, HUB
from simulator.events import CHANNELS

__all__ = ["Simulator", "serve"]

T = TypeVar("T")
DEFAULT_START = "2024-01-20T10:00:00Z"


class _Recorder:
    """A subscriber of the hub inside the server: every frame it broadcast, in order."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def offer(self, frame: bytes) -> None:
        self.frames.append(frame)


class Simulator:
    """A running simulator: where it is, tokens for it, and its controls."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        app: web.Application,
        port: int,
        secret: str,
        recorder: _Recorder,
        algorithm: str = "HS256",
    ) -> None:
        self._algorithm = algorithm
        self._loop = loop
        self._app = app
        self._secret = secret
        self._recorder = recorder
        self.port = port
        self.http_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def token(
        self,
        role: str = "viewer",
        channels: list[str] | None = None,
        ttl: float = 3600,
        sub: str = "test",
    ) -> str:
        """A JWT this server accepts (`role` admin for the controls)."""
        return issue(
            self._secret,
            sub,
            time.time(),
            ttl,
            role=role,
            channels=channels,
            algorithm=self._algorithm,
        )

    def url(self, token: str | None = None) -> str:
        """The /ws URL with a token (a fresh viewer token by default)."""
        return f"{self.ws_url}?token={token or self.token()}"

    def inject(self, fault: dict[str, Any]) -> None:
        """Start a fault at the next simulated tick (the scenario fault schema without
        `at`; README, "Faults"). A bad fault raises ValueError naming the field."""

        async def go() -> None:
            from phoenix.control import ControlError

            try:
                await self._app[CONTROL].inject(fault)
            except ControlError as exc:
                raise ValueError(str(exc)) from None

        self._call(go())

    def pause(self) -> None:
        self._call(self._do(lambda feed: feed.pause()))

    def resume(self) -> None:
        self._call(self._do(lambda feed: feed.resume()))

    def set_speed(self, speed: float) -> None:
        self._call(self._do(lambda feed: feed.set_speed(speed)))

    def step(self, seconds: float) -> None:
        """Advance the simulation by hand (pause first for a simulation that only moves
        when told); returns once the events are sent."""

        async def go() -> None:
            await cast(Feed, self._app[FEED]).advance(seconds)

        self._call(go())

    async def _do(self, action: Any) -> None:
        action(self._app[FEED])

    def state(self) -> dict[str, Any]:
        """As GET /api/sim: scenario, seed, speed, simulated time, paused, faults."""

        async def go() -> dict[str, Any]:
            from phoenix.api import with_faults

            return with_faults(self._app, self._app[FEED].state())

        return self._call(go())

    def events_sent(
        self, channel: str | None = None, event: str | None = None
    ) -> list[dict[str, Any]]:
        """Every event the server broadcast so far (what a client subscribed to every
        channel without filters received), decoded, optionally of one channel or event."""

        async def go() -> list[bytes]:
            return list(self._recorder.frames)

        frames = [json.loads(f) for f in self._call(go())]
        return [
            f
            for f in frames
            if (channel is None or f["channel"] == channel)
            and (event is None or f["event"] == event)
        ]


@contextmanager
def serve(
    scenario: str | None = None,
    seed: int | None = None,
    speed: float | None = None,
    start: str | None = None,
    config: dict[str, Any] | None = None,
) -> Iterator[Simulator]:
    """Serve `scenario` (a bundled name or a .yaml path) on a free loopback port for the
    `with` block. `config` is the config file's sections as a dict (README,
    "Configuration"), e.g. {"limits": {"messages_per_second": 10}}; the arguments win
    over its `simulation` section, and without either: demo, seed 7, speed 1, starting
    2024-01-20T10:00:00Z, so that a test repeats."""
    secret = secrets.token_hex(32)
    raw: dict[str, Any] = {k: dict(v or {}) for k, v in (config or {}).items()}
    raw.setdefault("auth", {})["jwt_secret"] = secret
    sim = raw.setdefault("simulation", {})
    for key, value, default in (
        ("scenario", scenario, "demo"),
        ("seed", seed, 7),
        ("speed", speed, 1.0),
        ("start", start, DEFAULT_START),
    ):
        sim[key] = value if value is not None else sim.get(key, default)
    cfg = parse_config(raw, {})
    loop = asyncio.new_event_loop()
    ready: dict[str, Any] = {}
    recorder = _Recorder()
    started = threading.Event()
    stopping: asyncio.Event | None = None

    async def main() -> None:
        nonlocal stopping
        stopping = asyncio.Event()
        try:
            app = create_app(cfg)
            # Before the feed starts (at setup): from the first event on.
            app[HUB].subscribe(recorder, CHANNELS, {})
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
        except BaseException as exc:
            ready["error"] = exc
            started.set()
            return
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            ready["app"] = app
            ready["port"] = runner.addresses[0][1]
        except BaseException as exc:
            ready["error"] = exc
            await runner.cleanup()  # the feed and the rest that setup started
            started.set()
            return
        started.set()
        try:
            await stopping.wait()
        finally:
            await runner.cleanup()

    thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    thread.start()
    if not started.wait(60):
        raise RuntimeError("the simulator did not start within 60 s")
    if "error" in ready:
        thread.join(10)
        if not thread.is_alive():
            loop.close()
        raise ready["error"]
    simulator = Simulator(
        loop, ready["app"], ready["port"], secret, recorder, cfg.auth.algorithms[0]
    )
    try:
        yield simulator
    finally:
        assert stopping is not None
        loop.call_soon_threadsafe(stopping.set)
        thread.join(30)
        if not thread.is_alive():  # else leave it: closing a running loop would raise
            loop.close()
