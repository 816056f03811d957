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
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
REDIS = shutil.which("redis-server")
MISSING = "redis-server not installed: apt-get install redis-server (CI installs it)"
SECRET = "test-secret-that-is-long-enough-for-every-hmac-algorithm-0123456789"
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def run_phoenix(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`phoenix ARGS` to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "phoenix", *args],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
    e["PHOENIX_JWT_SECRET"] = SECRET
    e.update(extra)
    return e


class Node:
    """One `phoenix engine` or `phoenix gateway` process, its output in a file."""

    def __init__(self, role: str, *args: str, environ: dict[str, str] | None = None) -> None:
        self.role = role
        self.port = free_port() if role == "gateway" else None
        argv = [sys.executable, "-m", "phoenix", role, *args]
        if self.port is not None:
            argv += ["--port", str(self.port)]
        self._log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=environ or env(), stdout=self._log, stderr=subprocess.STDOUT
        )
        self.output = ""

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

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

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if not self._log.closed:
            self._log.seek(0)
            self.output = self._log.read()
            self._log.close()
        return self.output


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
