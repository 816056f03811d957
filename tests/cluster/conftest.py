"""Scaling out, tested whole: a real redis-server, a real `phoenix engine` and real
`phoenix gateway` processes on loopback, real WebSocket clients.

Each test starts its own redis-server on a free port, with no persistence, in a
temporary directory, and stops it by PID. Without redis-server these tests are skipped
locally (and say why) and fail in CI (CI=true), where .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ..server.conftest import SECRET
from ..server.procs import PhoenixProcess, env, free_port

REDIS = shutil.which("redis-server")
MISSING = "redis-server not installed: apt-get install redis-server (CI installs it)"
START = "2024-01-20T10:00:00Z"
TIMEOUT = 20.0  # seconds: the one unit for waiting on processes


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # In CI nothing is skipped: there the tests run, and fail on the missing server.
    if REDIS is not None or os.environ.get("CI") == "true":
        return
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.path)).is_relative_to(here):
            item.add_marker(pytest.mark.skip(reason=MISSING))


class RedisServer:
    """redis-server on a free loopback port: no RDB, no AOF, its own directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if REDIS is None:
            raise AssertionError(MISSING)
        self.proc = subprocess.Popen(
            [
                REDIS,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.dir),
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    """What `check` returns, once it is something; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


class Node(PhoenixProcess):
    """One `phoenix engine` or `phoenix gateway` process, its output in a file."""

    def __init__(self, role: str, *args: str, environ: dict[str, str] | None = None) -> None:
        self.role = role
        port = free_port() if role == "gateway" else None
        argv = [role, *args] + ([] if port is None else ["--port", str(port)])
        super().__init__(argv, port, environ)

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def health(self) -> dict[str, Any]:
        import json

        with urllib.request.urlopen(self.base + "/health", timeout=2) as r:
            body: dict[str, Any] = json.loads(r.read())
            return body

    def wait_joined(self, timeout: float = TIMEOUT, engine: bool = True) -> dict[str, Any]:
        """A gateway that answers and follows an epoch (and, with `engine`, whose engine
        is up: without, an epoch written by hand will do)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.role} exited: {self.stop()}")
            try:
                body = self.health()
                if body["broker"]["epoch"] and (not engine or body["broker"]["engine"] == "up"):
                    return body
            except (OSError, KeyError, ValueError):
                pass
            time.sleep(0.05)
        raise AssertionError(f"{self.role} did not join: {self.stop()}")


class Cluster:
    """A redis-server, an engine and gateways; every process stopped at the end."""

    def __init__(self, redis: RedisServer, namespace: str = "t") -> None:
        self.redis = redis
        self.namespace = namespace
        self.nodes: list[Node] = []
        self.engine: Node | None = None

    def common(self) -> list[str]:
        return ["--broker", self.redis.url]

    def environ(self, **extra: str) -> dict[str, str]:
        return env(PHOENIX_BROKER__NAMESPACE=self.namespace, **extra)

    def start_engine(self, *args: str, **extra: str) -> Node:
        argv = args or ("--scenario", "demo", "--seed", "7", "--start", START, "--speed", "60")
        node = Node("engine", *self.common(), *argv, environ=self.environ(**extra))
        self.nodes.append(node)
        self.engine = node
        return node

    def start_gateway(self, index: int = 0, **extra: str) -> Node:
        node = Node("gateway", *self.common(), "--index", str(index), environ=self.environ(**extra))
        self.nodes.append(node)
        return node

    def engine_and_two_gateways(self) -> tuple[Node, Node]:
        """The demo on an engine, and gateways 0 and 1, both joined."""
        self.start_engine()
        a, b = self.start_gateway(0), self.start_gateway(1)
        a.wait_joined()
        b.wait_joined()
        return a, b

    def close(self) -> None:
        for node in self.nodes:
            node.stop(signal.SIGKILL if node.proc.poll() is None else signal.SIGTERM)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="phoenix-redis-") as d:
        server = RedisServer(Path(d))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def cluster(redis_server: RedisServer) -> Iterator[Cluster]:
    c = Cluster(redis_server)
    try:
        yield c
    finally:
        c.close()


def token(sub: str = "tester", role: str | None = None, ttl: int = 3600) -> str:
    from phoenix.auth import issue

    return issue(SECRET, sub, time.time(), ttl, role=role)


def get_json(url: str, tok: str | None = None) -> Any:
    import json

    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {tok or token()}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return {"status": exc.code, **json.loads(exc.read() or b"{}")}


def post_json(url: str, body: dict[str, Any], tok: str | None = None) -> tuple[int, Any]:
    import json

    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {tok or token(role='admin')}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")
