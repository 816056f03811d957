"""The three commands of scaling out, as a user runs them: `serve --workers N --broker`,
`engine` and `gateway`; and what they say when the broker is wrong."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.request

import aiohttp

from ..server.procs import PhoenixProcess, free_port, run
from .conftest import START, RedisServer, token
from .wsclient import ALL, closed, events, subscribe


def test_an_unreachable_broker_is_exit_2_with_what_to_fix() -> None:
    nobody = f"redis://127.0.0.1:{free_port()}/0"
    for argv in (
        ["engine", "--broker", nobody],
        ["gateway", "--broker", nobody, "--port", str(free_port())],
        ["serve", "--workers", "2", "--broker", nobody, "--port", str(free_port())],
    ):
        out = run(*argv, timeout=120)
        assert out.returncode == 2, (argv, out.stderr)
        assert "cannot reach Redis at redis://127.0.0.1:" in out.stderr, out.stderr
        assert "redis-server" in out.stderr


def test_a_wrong_broker_setting_refuses_to_start() -> None:
    out = run("gateway", "--broker", "http://127.0.0.1:6379")
    assert out.returncode == 2
    assert "broker.url: expected a Redis URL such as redis://127.0.0.1:6379/0" in out.stderr
    out = run("serve", "--workers", "2")
    assert out.returncode == 2 and "--workers: gateways need a broker" in out.stderr
    out = run("engine")
    assert out.returncode == 2 and "--broker" in out.stderr


async def test_serve_workers_runs_an_engine_and_gateways_on_one_port(
    redis_server: RedisServer,
) -> None:
    port = free_port()
    srv = PhoenixProcess(
        [
            *("serve", "--workers", "2", "--broker", redis_server.url, "--port", str(port)),
            *("--scenario", "demo", "--seed", "7", "--start", START, "--speed", "60"),
        ],
        port,
    )
    try:
        gateways = await asyncio.to_thread(_joined, port, 2)
        assert len(gateways) == 2, "both gateways answer on the one port"
        async with aiohttp.ClientSession() as session:
            clients = [
                await session.ws_connect(f"ws://127.0.0.1:{port}/ws?token={token()}")
                for _ in range(8)
            ]
            for ws in clients:
                await subscribe(ws, ALL)
                await events(ws, 1)
            srv.proc.send_signal(signal.SIGTERM)
            codes = [await closed(ws) for ws in clients]
        assert codes == [1001] * len(clients)
        assert srv.proc.wait(30) == 0
    finally:
        output = srv.stop()
    assert "one engine and 2 gateways" in output, output


def _joined(port: int, want: int) -> set[str]:
    """The gateways that answer /health on the port (the kernel picks one per connection)."""
    seen: set[str] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(seen) < want:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                body = json.loads(r.read())
            if body["broker"]["engine"] == "up" and body["broker"]["epoch"]:
                seen.add(body["broker"]["gateway"])
        except (OSError, KeyError, ValueError):
            time.sleep(0.1)
    return seen


def test_one_sigterm_stops_a_busy_engine_and_gateway(redis_server: RedisServer) -> None:
    """A single SIGTERM stops each, exit 0, even while they are busy with Redis (a
    cancel lost inside a redis-py call on Python 3.11 once left them running)."""
    from .conftest import Cluster

    cluster = Cluster(redis_server)
    try:
        for _ in range(3):
            engine = cluster.start_engine(
                "--scenario", "firehose", "--seed", "1", "--rate", "agents=3000/s"
            )
            gateway = cluster.start_gateway(0)
            gateway.wait_joined()
            time.sleep(1.0)  # busy: writing, reading, polling
            for node in (gateway, engine):
                node.proc.send_signal(signal.SIGTERM)
                try:
                    code = node.proc.wait(20)
                except subprocess.TimeoutExpired:
                    raise AssertionError(f"{node.role} ignored SIGTERM: {node.stop()}") from None
                assert code == 0, node.stop()
                node.stop()
    finally:
        cluster.close()
