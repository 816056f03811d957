"""Browser tests of the page: a real `phoenix serve` subprocess on loopback, driven with
Debian's headless Chromium through Playwright (sync API).

Without /usr/bin/chromium the page tests are skipped locally and fail in CI (CI=true),
where .ci/run installs it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..server.procs import ServerProcess, free_port, run

CHROMIUM = Path("/usr/bin/chromium")
MISSING = "chromium not installed: apt-get install chromium (CI installs it)"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
START = "2024-01-20T10:00:00Z"
TIMEOUT = 15.0  # seconds: the one unit for waiting on the server and the page


def phoenix_token(*args: str) -> str:
    """A fresh token from the real `phoenix token` command (subject page-test)."""
    out = run("token", "--sub", "page-test", *args)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


class Server:
    """One `phoenix serve` process; stop() and start() again keep the port."""

    def __init__(self, scenario: str, port: int | None = None, speed: float = 20) -> None:
        self.scenario = scenario
        self.port = port or free_port()
        self.speed = speed
        self.proc: ServerProcess | None = None
        self._tokens: dict[str, str] = {}  # role -> token (an hour long; same secret)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.proc = ServerProcess(
            *("--scenario", self.scenario, "--seed", "7", "--start", START),
            *("--speed", str(self.speed)),
            port=self.port,
        )
        self.proc.wait_ready(TIMEOUT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.stop(timeout=TIMEOUT)

    def token(self, role: str = "viewer") -> str:
        if role not in self._tokens:
            self._tokens[role] = phoenix_token("--role", role)
        return self._tokens[role]

    def api(self, path: str, token: str, body: dict[str, Any] | None = None) -> Any:
        headers = {"Authorization": f"Bearer {token}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers=headers)
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.load(resp)

    def rewind(self) -> None:
        """Restart the simulation from its start (POST /api/sim, admin): a fresh run."""
        body = {"action": "restart", "scenario": self.scenario, "seed": 7, "start": START}
        self.api("/api/sim", self.token("admin"), body)


# Module scope, not session: Playwright's sync API runs an event loop of its own in this
# thread, and it must be gone before the asyncio tests of the other modules run.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(MISSING, pytrace=False)
        pytest.skip(MISSING)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def demo_server(browser: Any) -> Iterator[Server]:
    srv = Server("demo")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def server(demo_server: Server) -> Server:
    """The shared demo server, rewound so that each test sees a live run from its start
    (at speed 20 the whole scenario lasts 45 s). The restart test stops and starts it."""
    demo_server.rewind()
    return demo_server


@pytest.fixture
def start_server(browser: Any) -> Iterator[Callable[[str], Server]]:
    """Start another server on a scenario (a name or a YAML path); stopped afterwards."""
    started: list[Server] = []

    def start(scenario: str) -> Server:
        srv = Server(scenario)
        started.append(srv)
        srv.start()
        return srv

    yield start
    for srv in started:
        srv.stop()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT * 1000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
