"""The served stream equals the headless one for the same scenario, seed and start, and
`phoenix simulate` / `phoenix scenarios` work from the command line."""

from __future__ import annotations

import json

from phoenix.app import create_app
from phoenix.keys import FEED
from phoenix.sources import scenario_source

from .conftest import make_config, send, token
from .procs import run

START = "2024-01-20T10:00:00Z"
ALL = ["experiments", "metrics", "agents", "deployments", "alerts", "cost-flow"]


def simulate(*args: str) -> list[bytes]:
    res = run("simulate", "--scenario", "demo", "--start", START, "--out", "-", *args)
    assert res.returncode == 0, res.stderr
    return [line.encode() for line in res.stdout.splitlines()]


async def test_served_stream_equals_headless_byte_for_byte(aiohttp_client) -> None:
    headless = simulate("--seed", "11", "--duration", "3m")
    assert len(headless) > 500
    source, info = scenario_source("demo", 11, START)
    app = create_app(make_config(simulation={"speed": 120}), source, info)
    app[FEED].pause()  # subscribe before the first event
    client = await aiohttp_client(app)
    ws = await client.ws_connect(f"/ws?token={token()}")
    await send(ws, type="subscribe", channels=ALL)
    app[FEED].resume()
    served = []
    for _ in range(len(headless)):
        msg = await ws.receive(timeout=10)
        served.append(msg.data.encode())
    assert served == headless
    await ws.close()


def test_simulate_is_repeatable_and_seeded() -> None:
    a = simulate("--seed", "5", "--duration", "2m")
    b = simulate("--seed", "5", "--duration", "2m")
    c = simulate("--seed", "6", "--duration", "2m")
    assert a == b and a != c
    frames = [json.loads(x) for x in a]
    assert [f["id"] for f in frames] == [f"evt-{i}" for i in range(1, len(frames) + 1)]
    assert all(set(f) == {"id", "type", "channel", "event", "data", "timestamp"} for f in frames)
    assert frames[-1]["timestamp"] <= "2024-01-20T10:02:00Z"


def test_simulate_writes_a_file_and_the_rate_flag_raises_the_rate(tmp_path) -> None:
    out = tmp_path / "fh.jsonl"
    res = run(
        "simulate",
        "--scenario",
        "demo",
        "--start",
        START,
        "--duration",
        "30s",
        "--out",
        str(out),
        "--rate",
        "agents=500/s",
    )
    assert res.returncode == 0, res.stderr
    beats = [json.loads(x) for x in out.read_text().splitlines()]
    per_second = sum(f["event"] == "agent.heartbeat" for f in beats) / 30
    assert 400 <= per_second <= 520


def test_simulate_refuses_bad_arguments_naming_them() -> None:
    res = run("simulate", "--duration", "soon")
    assert res.returncode == 2 and "--duration" in res.stderr
    res = run("simulate", "--rate", "agents=fast")
    assert res.returncode == 2 and "--rate" in res.stderr
    res = run("simulate", "--start", "yesterday")
    assert res.returncode == 2 and "--start" in res.stderr


def test_scenarios_lists_the_bundled_ones() -> None:
    res = run("scenarios")
    assert res.returncode == 0
    names = [line.split()[0] for line in res.stdout.splitlines()]
    assert {"demo", "experiment-failure", "agent-churn", "firehose"} <= set(names)


def test_check_validates_a_scenario_file_naming_field_and_line(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nfleet:\n  agents: lots\n")
    res = run("check", "--scenario", str(bad))
    assert res.returncode == 2
    assert "fleet.agents" in res.stderr and "line 3" in res.stderr


def test_simulate_shows_a_progress_bar_on_a_terminal(tmp_path) -> None:
    import os
    import pty
    import subprocess
    import sys

    from .procs import ROOT, env

    master, slave = pty.openpty()
    try:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "phoenix",
                "simulate",
                "--start",
                START,
                "--duration",
                "5m",
                "--out",
                str(tmp_path / "o.jsonl"),
            ],
            stderr=slave,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
            env=env(),
            timeout=60,
        )
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"100.0%" in shown and b"sim h/s" in shown
    # Not a terminal: no progress bar in the captured stderr.
    res = run("simulate", "--start", START, "--duration", "1m", "--out", str(tmp_path / "p"))
    assert res.stderr == ""


async def test_serve_rate_sets_the_heartbeat_rate() -> None:
    import asyncio
    from collections import Counter

    import aiohttp

    from .procs import ServerProcess

    srv = ServerProcess(
        "--scenario", "demo", "--start", START, "--speed", "5", "--rate", "agents=300/s"
    )
    try:
        await asyncio.to_thread(srv.wait_ready)
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"{srv.base}/ws?token={run('token').stdout.strip()}")
            await ws.send_str('{"type":"subscribe","channels":["agents"]}')
            per_second: Counter[str] = Counter()
            while len(per_second) < 6:
                frame = json.loads((await ws.receive(timeout=10)).data)
                if frame.get("event") == "agent.heartbeat":
                    # 2 per agent per second: at .500 and at the whole second.
                    per_second[frame["timestamp"][:19]] += 1
            await ws.close()
    finally:
        srv.stop()
    # Whole simulated seconds between the first (partial) and the last (still filling).
    full = sorted(per_second.items())[1:-1]
    assert all(250 <= n <= 350 for _, n in full), full
