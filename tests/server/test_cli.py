"""The `phoenix` command for real: serve, signals, logs, token, check."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import time
import urllib.request

import aiohttp
import jwt
import pytest

from .conftest import SECRET
from .procs import ServerProcess, env, run

START = "2024-01-20T10:00:00Z"


async def _close_code(ws: aiohttp.ClientWebSocketResponse) -> int | None:
    """Read to the end; the code of the close frame the server sent, which must also be
    the client's own `close_code` once it has answered it: the handshake completed.

    aiohttp's server, asked to close from another task than the one reading, drops the
    TCP connection right after its close frame; the client's answer then fails and it
    sets close_code to 1006 though it received 1001 (this test failed about one run in
    ten). The server's reading task now carries out the handshake (Connection._shut).
    """
    while True:
        msg = await ws.receive(timeout=20)
        if msg.type is aiohttp.WSMsgType.CLOSE:
            assert ws.close_code == int(msg.data), (ws.close_code, msg.data, ws.exception())
            return int(msg.data)
        if msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
            return ws.close_code  # no close frame came


async def _subscribed(
    session: aiohttp.ClientSession, base: str, tok: str, channels: list[str], n: int = 3
) -> list[aiohttp.ClientWebSocketResponse]:
    """n sockets of one user, each subscribed to `channels`."""
    socks = [await session.ws_connect(f"{base}/ws?token={tok}") for _ in range(n)]
    for ws in socks:
        await ws.send_str(json.dumps({"type": "subscribe", "channels": channels}))
        assert json.loads((await ws.receive(timeout=15)).data)["status"] == "ok"
    return socks


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
async def test_a_signal_closes_every_socket_1001_and_exits_0(sig: signal.Signals) -> None:
    srv = ServerProcess("--scenario", "demo", "--seed", "1", "--start", START, "--speed", "5")
    try:
        await asyncio.to_thread(srv.wait_ready)
        tok = run("token", "--sub", "t").stdout.strip()
        async with aiohttp.ClientSession() as session:
            socks = await _subscribed(session, srv.base, tok, ["agents", "metrics"])
            srv.proc.send_signal(sig)
            assert [await _close_code(ws) for ws in socks] == [1001, 1001, 1001]
        assert await asyncio.to_thread(srv.proc.wait, 15) == 0
    finally:
        srv.stop()


def _outbound_max(base: str) -> float:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'^phoenix_outbound_queue\{stat="max"\} (\S+)$', text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


async def test_sigterm_closes_1001_a_client_with_frames_queued(tmp_path) -> None:
    # A queue long enough that the client that stops reading is not closed with 1013
    # first, and a close timeout long enough for it to read what is in its socket.
    cfg = tmp_path / "config.yaml"
    cfg.write_text("limits:\n  outbound_queue: 1000000\nwebsocket:\n  close_timeout: 15\n")
    srv = ServerProcess(
        "--config", str(cfg), "--scenario", "firehose", "--start", START, "--rate", "agents=20000/s"
    )
    try:
        await asyncio.to_thread(srv.wait_ready)
        tok = run("token", "--sub", "t").stdout.strip()
        async with aiohttp.ClientSession() as session:
            socks = await _subscribed(session, srv.base, tok, ["agents"])
            reader, stalled = socks[0], socks[1:]
            reading = asyncio.ensure_future(_close_code(reader))
            # The others read nothing (aiohttp stops reading their sockets): once their
            # socket buffers are full, the server queues their frames.
            deadline = time.monotonic() + 60
            while await asyncio.to_thread(_outbound_max, srv.base) < 100:
                assert time.monotonic() < deadline, "no frames queued"
                await asyncio.sleep(0.2)
            srv.proc.send_signal(signal.SIGTERM)
            codes = [await _close_code(ws) for ws in stalled]
            assert [await reading, *codes] == [1001, 1001, 1001]
        assert await asyncio.to_thread(srv.proc.wait, 30) == 0
    finally:
        out = srv.stop()
    assert "slow consumer" not in out


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


def test_a_busy_port_exits_2_naming_it() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run("serve", "--port", str(port))
    assert res.returncode == 2
    assert f"127.0.0.1:{port}" in res.stderr and "in use" in res.stderr
    assert "--port" in res.stderr and "stop what is using it" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("ttl", ["inf", "nan", "1e400", "0", "-5", "0.5", "315360001", "soon"])
def test_token_refuses_a_ttl_out_of_bounds(ttl: str) -> None:
    res = run("token", "--ttl", ttl)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "--ttl" in res.stderr and "315360000" in res.stderr


def test_token_ttl_goes_up_to_10_years() -> None:
    res = run("token", "--ttl", "315360000")
    assert res.returncode == 0, res.stderr
    claims = jwt.decode(res.stdout.strip(), SECRET, algorithms=["HS256"])
    assert abs(claims["exp"] - time.time() - 315_360_000) <= 60
    assert "315360000 (10 years)" in run("token", "--help").stdout


@pytest.mark.parametrize("sub", ["", "u" * 257])
def test_token_refuses_a_sub_the_server_would_refuse(sub: str) -> None:
    res = run("token", "--sub", sub)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and "--sub" in res.stderr and "256" in res.stderr
    assert run("token", "--sub", "u" * 256).returncode == 0


def test_simulate_bounds_the_start() -> None:
    res = run("simulate", "--start", "9999-12-31T23:59:30Z", "--duration", "1s")
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (
        "phoenix: error: --start: the start must be between 1970-01-01T00:00:00Z and "
        "9000-01-01T00:00:00Z\n"
    )
    res = run("simulate", "--start", "yesterday", "--duration", "1s")
    assert res.returncode == 2 and "--start: expected an RFC 3339 time" in res.stderr


def test_serve_bounds_the_start() -> None:
    res = run("serve", "--port", "0", "--start", "9999-12-31T23:59:30Z")
    assert res.returncode == 2
    assert "start must be between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z" in res.stderr
    assert "Traceback" not in res.stderr


def test_simulate_says_when_the_scenario_ends_before_the_duration(tmp_path) -> None:
    out = tmp_path / "run.jsonl"
    done = run(
        "simulate", "--scenario", "demo", "--start", START, "--duration", "24h", "--out", str(out)
    )
    assert done.returncode == 0
    assert "demo ends after 15m (its duration), before --duration 1d" in done.stderr
    last = json.loads(out.read_text().splitlines()[-1])
    assert last["timestamp"] == "2024-01-20T10:15:00Z"
    short = run(
        "simulate", "--scenario", "demo", "--start", START, "--duration", "5m", "--out", str(out)
    )
    assert short.returncode == 0 and short.stderr == ""


def test_version() -> None:
    from importlib.metadata import version

    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"phoenix {version('phoenix-simulator')}"


def test_the_environment_sets_any_config_key_and_refuses_typos() -> None:
    done = run("check", env=env(PHOENIX_SERVER__PORT="9123", PHOENIX_LIMITS__OUTBOUND_QUEUE="50"))
    assert done.returncode == 0, done.stderr
    assert "serving on 127.0.0.1:9123" in done.stdout
    # Not our form: perhaps another tool's variable (Arize Phoenix has PHOENIX_PORT).
    other = run("check", env=env(PHOENIX_PORT="9123"))
    assert other.returncode == 0
    assert "PHOENIX_PORT is not a setting of this server (did you mean" in other.stderr
    typo = run("check", env=env(PHOENIX_SERVER__PROT="9123"))
    assert typo.returncode == 2
    assert "PHOENIX_SERVER__PROT: not a setting (did you mean PHOENIX_SERVER__PORT?)" in (
        typo.stderr
    )
    # A secret is text as it is (digits, a #), and an error never shows it.
    secret = "1234567890" * 4 + " #tail"
    ok = run("check", env=env(PHOENIX_AUTH__JWT_SECRET=secret))
    assert ok.returncode == 0, ok.stderr
    empty = run("check", env=env(PHOENIX_AUTH__JWT_SECRET=""))
    assert empty.returncode == 2 and "an empty string" in empty.stderr
    bad = run("check", env=env(PHOENIX_SERVER__PORT="lots"))
    assert bad.returncode == 2 and "PHOENIX_SERVER__PORT: expected a port number" in bad.stderr


async def test_serve_says_where_the_page_and_socket_are_and_flags_beat_the_environment():
    from .procs import free_port

    srv = ServerProcess("--start", START, environ=env(PHOENIX_SERVER__PORT=str(free_port())))
    try:
        await asyncio.to_thread(srv.wait_ready)  # on --port, not the environment's
    finally:
        out = srv.stop()
    line = next(x for x in out.splitlines() if "serving scenario demo" in x)
    assert f"page http://127.0.0.1:{srv.port}/" in line
    assert f"WebSocket ws://127.0.0.1:{srv.port}/ws (the JWT goes in the `token`" in line
    assert "-m phoenix token" in line


def test_start_now_is_the_wall_clock(tmp_path) -> None:
    out = tmp_path / "run.jsonl"
    before = time.time()
    done = run("simulate", "--start", "now", "--duration", "2s", "--out", str(out))
    assert done.returncode == 0, done.stderr
    first = json.loads(out.read_text().splitlines()[0])
    from simulator.clock import parse_rfc3339

    assert before - 2 <= parse_rfc3339(first["timestamp"]) <= time.time() + 2


def test_token_decode_says_what_the_server_would_make_of_it() -> None:
    tok = run("token", "--sub", "carol", "--role", "admin", "--channels", "agents").stdout.strip()
    ok = run("token", "--decode", tok)
    assert ok.returncode == 0
    assert "accepted: sub carol, role admin, channels agents" in ok.stdout
    assert run("token", "--decode", tok[:-2] + "xx").returncode == 1
    expired = jwt.encode({"sub": "d", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256")
    done = run("token", "--decode", expired)
    assert done.returncode == 1 and "refused: UNAUTHORIZED, reason expired" in done.stdout
    assert '"sub": "d"' in done.stdout  # the claims as written, to see why


async def test_log_format_json_and_log_level() -> None:
    srv = ServerProcess("--start", START, "--log-format", "json")
    try:
        await asyncio.to_thread(srv.wait_ready)
    finally:
        out = srv.stop()
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert entries and all({"time", "level", "logger", "message"} <= set(e) for e in entries)
    assert any(e["logger"] == "phoenix" and "serving scenario" in e["message"] for e in entries)
    quiet = ServerProcess("--start", START, "--log-level", "warning")
    try:
        await asyncio.to_thread(quiet.wait_ready)
    finally:
        out = quiet.stop()
    assert "serving scenario" not in out and "aiohttp.access" not in out


def test_check_reports_every_problem_in_one_run(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server:\n  port: 99999\n  hots: x\nlimits:\n  outbound_queue: -1\nbogus: {}\n")
    done = run("check", "--config", str(bad), env=env(PHOENIX_SERVER__PROT="1"))
    assert done.returncode == 2
    assert "5 problems:" in done.stderr
    for part in (
        "PHOENIX_SERVER__PROT: not a setting",
        "bad.yaml: server.port: expected a port number",
        "bad.yaml: server.hots: unknown setting",
        "bad.yaml: limits.outbound_queue: expected a whole number",
        "bad.yaml: bogus: unknown section",
    ):
        assert part in done.stderr, part


def test_config_defaults_prints_every_key_with_the_default_values() -> None:
    import yaml

    from phoenix.config import SCHEMA, parse_config

    done = run("config", "--defaults")
    assert done.returncode == 0
    raw = yaml.safe_load(done.stdout)
    assert parse_config(raw, {}) == parse_config({}, {})  # the values are the defaults
    shown = {(section, key) for section, values in raw.items() for key in values}
    commented = {("auth", "jwt_secret")}  # shown as a comment: no default secret to copy
    assert shown | commented == {(s, k) for s in SCHEMA for k in SCHEMA[s]}
    assert done.stdout.count("#") > 40  # and commented


async def test_record_writes_what_the_server_sent_and_replay_reads_it(tmp_path) -> None:
    # Record 3 s of the demo at speed 60 from a real server; every recorded line is the
    # very line `simulate` writes for that id (served == headless), and the replay reader
    # takes the file whole.
    from phoenix.replay import read_recording

    srv = ServerProcess("--scenario", "demo", "--seed", "7", "--start", START, "--speed", "60")
    rec = tmp_path / "rec.jsonl"
    try:
        await asyncio.to_thread(srv.wait_ready)
        tok = run("token").stdout.strip()
        url = f"ws://127.0.0.1:{srv.port}/ws?token={tok}"
        done = await asyncio.to_thread(
            run,
            "record",
            url,
            "--channels",
            "agents,metrics",
            "--duration",
            "3s",
            "--out",
            str(rec),
        )
    finally:
        srv.stop()
    assert done.returncode == 0, done.stderr
    assert tok not in done.stderr  # the URL is said without its query
    lines = rec.read_text().splitlines()
    assert len(lines) > 100
    assert {json.loads(x)["channel"] for x in lines} == {"agents", "metrics"}
    headless = tmp_path / "sim.jsonl"
    sim = run(
        "simulate",
        "--scenario",
        "demo",
        "--seed",
        "7",
        "--start",
        START,
        "--duration",
        "15m",
        "--out",
        str(headless),
    )
    assert sim.returncode == 0
    by_id = {json.loads(x)["id"]: x for x in headless.read_text().splitlines()}
    assert all(by_id[json.loads(x)["id"]] == x for x in lines)
    events, problems = read_recording(rec)
    assert problems == [] and len(events) == len(lines)


def test_record_refuses_a_bad_url_or_channel() -> None:
    assert run("record", "http://x/ws").returncode == 2
    bad = run("record", "ws://127.0.0.1:9/ws", "--channels", "nope")
    assert bad.returncode == 2 and "--channels" in bad.stderr
    down = run("record", "ws://127.0.0.1:9/ws?token=secret-token")
    assert down.returncode == 2 and "cannot connect" in down.stderr
    assert "secret-token" not in down.stderr
    assert run("record", "ws://127.0.0.1:99999/ws").returncode == 2  # no traceback


async def test_record_never_prints_the_token_and_keeps_an_old_recording(tmp_path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text("an earlier recording\n")
    srv = ServerProcess("--start", START)
    try:
        await asyncio.to_thread(srv.wait_ready)
        url = f"ws://user:pass@127.0.0.1:{srv.port}/nowhere?token=secret-token"
        done = await asyncio.to_thread(run, "record", url, "--out", str(old))
    finally:
        srv.stop()
    assert done.returncode == 2
    assert "the server answered 404" in done.stderr
    assert "secret-token" not in done.stderr and "pass" not in done.stderr
    assert old.read_text() == "an earlier recording\n"


def test_token_count_mints_many_tokens_for_distinct_users() -> None:
    done = run("token", "--count", "500", "--sub", "load", "--role", "admin")
    assert done.returncode == 0
    tokens = done.stdout.split()
    assert len(tokens) == 500 == len(set(tokens))
    subs = [jwt.decode(t, SECRET, algorithms=["HS256"])["sub"] for t in tokens]
    assert subs == [f"load-{i}" for i in range(1, 501)]
    assert run("token", "--count", "0").returncode == 2
    assert run("token", "--count", "100001").returncode == 2
