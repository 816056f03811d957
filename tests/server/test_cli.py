"""The `phoenix` command for real: serve, signals, logs, token, check."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import aiohttp
import jwt

from .conftest import SECRET
from .procs import ServerProcess, env, run

START = "2024-01-20T10:00:00Z"


async def test_sigterm_closes_every_socket_1001_and_exits_0(tmp_path) -> None:
    srv = ServerProcess("--scenario", "demo", "--seed", "1", "--start", START, "--speed", "5")
    try:
        await asyncio.to_thread(srv.wait_ready)
        tok = run("token", "--sub", "t").stdout.strip()
        async with aiohttp.ClientSession() as session:
            socks = [await session.ws_connect(f"{srv.base}/ws?token={tok}") for _ in range(3)]
            for ws in socks:
                await ws.send_str('{"type":"subscribe","channels":["agents","metrics"]}')
                assert json.loads((await ws.receive(timeout=15)).data)["status"] == "ok"
            srv.proc.send_signal(signal.SIGTERM)
            for ws in socks:
                while True:
                    msg = await ws.receive(timeout=20)
                    if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                        break
                assert ws.close_code == 1001
        assert await asyncio.to_thread(srv.proc.wait, 15) == 0
    finally:
        srv.stop()


async def test_sigint_exits_0() -> None:
    srv = ServerProcess("--start", START)
    try:
        await asyncio.to_thread(srv.wait_ready)
        srv.proc.send_signal(signal.SIGINT)
        assert await asyncio.to_thread(srv.proc.wait, 15) == 0
    finally:
        srv.stop()


async def test_the_token_never_reaches_a_log_line() -> None:
    srv = ServerProcess("--start", START)
    tok = run("token", "--sub", "secret-user").stdout.strip()
    try:
        await asyncio.to_thread(srv.wait_ready)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{srv.base}/ws?token={tok}")
            await ws.close()
            bad = await session.ws_connect(f"{srv.base}/ws?token={tok}x")
            await bad.receive(timeout=15)
            await bad.close()
            async with session.get(f"{srv.base}/health?token={tok}") as r:
                assert r.status == 200
    finally:
        out = srv.stop()
    assert "GET /ws" in out  # the access log is on...
    assert tok not in out and tok[:40] not in out  # ...and never shows the token
    assert "token=" not in out


def test_token_command_signs_with_the_configured_secret() -> None:
    res = run(
        "token", "--sub", "ann", "--ttl", "60", "--role", "admin", "--channels", "metrics,alerts"
    )
    assert res.returncode == 0, res.stderr
    claims = jwt.decode(res.stdout.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "ann" and claims["role"] == "admin"
    assert claims["channels"] == ["metrics", "alerts"]
    assert 55 <= claims["exp"] - time.time() <= 61


def test_token_refuses_unknown_channels() -> None:
    res = run("token", "--channels", "metrics,bogus")
    assert res.returncode == 2
    assert "--channels" in res.stderr and "bogus" in res.stderr


def test_check_accepts_the_bundled_config() -> None:
    res = run("check", "--config", "config.yaml")
    assert res.returncode == 0, res.stderr
    assert "config ok" in res.stdout


def test_check_names_the_field_path(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits:\n  outbound_queue: lots\n")
    res = run("check", "--config", str(bad))
    assert res.returncode == 2
    assert "limits.outbound_queue" in res.stderr and "lots" in res.stderr
    bad.write_text("server:\n  prot: 80\n")
    res = run("check", "--config", str(bad))
    assert "server.prot: unknown setting" in res.stderr


def test_a_short_secret_refuses_to_start() -> None:
    res = run("serve", "--port", "0", env=env(PHOENIX_JWT_SECRET="short"))
    assert res.returncode == 2
    assert "PHOENIX_JWT_SECRET" in res.stderr and "at least 32" in res.stderr


def test_the_dev_secret_is_refused_off_loopback() -> None:
    e = env()
    del e["PHOENIX_JWT_SECRET"]
    res = run("serve", "--host", "0.0.0.0", "--port", "0", env=e)
    assert res.returncode == 2
    assert "auth.jwt_secret" in res.stderr and "loopback" in res.stderr


def test_serve_refuses_a_bad_scenario_naming_it() -> None:
    res = run("serve", "--port", "0", "--scenario", "no-such-scenario")
    assert res.returncode == 2
    assert "no-such-scenario" in res.stderr


def test_check_refuses_a_start_that_is_not_text(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("simulation:\n  start: 5\n")
    res = run("check", "--config", str(bad))
    assert res.returncode == 2
    assert "simulation.start: expected an RFC 3339 time" in res.stderr
