"""Record and replay: a recorded stream served with every protocol feature, a malformed
line reported with its number and skipped, looping."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from phoenix.app import create_app
from phoenix.feed import SourceInfo
from phoenix.replay import ReplayError, ReplaySource

from .conftest import TIMEOUT, make_config, recv, send, token
from .procs import ServerProcess, run

START = "2024-01-20T10:00:00Z"


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two simulated minutes of `demo`, recorded by the real CLI."""
    out = tmp_path_factory.mktemp("rec") / "demo.jsonl"
    res = run(
        "simulate",
        "--scenario",
        "demo",
        "--seed",
        "3",
        "--start",
        START,
        "--duration",
        "2m",
        "--out",
        str(out),
    )
    assert res.returncode == 0, res.stderr
    return out


def with_bad_lines(recording: Path, tmp_path: Path) -> Path:
    lines = recording.read_text().splitlines()
    bad = tmp_path / "bad.jsonl"
    lines.insert(2, "{not json")
    lines.insert(
        5,
        json.dumps(
            {"type": "event", "channel": "nope", "event": "x", "data": {}, "timestamp": START}
        ),
    )
    bad.write_text("\n".join(lines) + "\n")
    return bad


def test_malformed_lines_are_reported_with_their_number(recording, tmp_path, caplog) -> None:
    bad = with_bad_lines(recording, tmp_path)
    with caplog.at_level(logging.WARNING, "phoenix.replay"):
        source = ReplaySource(bad)
    assert len(source.events) == len(recording.read_text().splitlines())
    assert source.problems[0].startswith("bad.jsonl:3: skipped: not valid JSON")
    assert source.problems[1].startswith("bad.jsonl:6: skipped: channel")
    assert "bad.jsonl:3" in caplog.text and "bad.jsonl:6" in caplog.text


def test_an_empty_or_missing_recording_is_refused(tmp_path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("garbage\n")
    with pytest.raises(ReplayError, match="no events to replay"):
        ReplaySource(empty)
    with pytest.raises(ReplayError, match="cannot read"):
        ReplaySource(tmp_path / "missing.jsonl")


async def test_replay_serves_the_recording_with_filters_and_resume(aiohttp_client, recording):
    source = ReplaySource(recording)
    app = create_app(make_config(simulation={"speed": 600}), source, SourceInfo("replay", "d"))
    from phoenix.keys import FEED

    app[FEED].pause()
    client = await aiohttp_client(app)
    full = await client.ws_connect(f"/ws?token={token('a')}")
    await send(full, type="subscribe", channels=["experiments", "metrics"])
    narrow = await client.ws_connect(f"/ws?token={token('b')}")
    await send(
        narrow,
        type="subscribe",
        channels=["experiments", "metrics"],
        filters={"experiment_id": "exp-789"},
    )
    app[FEED].resume()

    recorded = [json.loads(line) for line in recording.read_text().splitlines()]
    wanted = [r for r in recorded if r["channel"] in ("experiments", "metrics")]
    got = [await recv(full) for _ in range(len(wanted))]
    # The same events, data and times, in order (ids are this server's own).
    assert [(g["event"], g["data"], g["timestamp"]) for g in got] == [
        (w["event"], w["data"], w["timestamp"]) for w in wanted
    ]
    # Filters work on a replay: tags come from the data.
    mine = [w for w in wanted if w["channel"] == "metrics" or w["data"].get("id") == "exp-789"]
    for w in mine:
        g = await recv(narrow, timeout=TIMEOUT)
        assert g["event"] == w["event"] and g["timestamp"] == w["timestamp"]
        if g["event"] == "metrics.update":
            assert set(g["data"]["experiments"]) <= {"exp-789"}
        else:
            assert g["data"]["id"] == "exp-789"
    # Resume works on a replay too.
    mid = got[len(got) // 2]["id"]
    again = await client.ws_connect(f"/ws?token={token('c')}")
    resp = await send(again, type="subscribe", channels=["experiments"], since={"experiments": mid})
    assert resp["recovered"] is True
    snapshot = await (
        await client.get("/api/v1/experiments", headers={"Authorization": f"Bearer {token('d')}"})
    ).json()
    assert {e["id"] for e in snapshot["experiments"]} >= {"exp-789"}
    for ws in (full, narrow, again):
        await ws.close()


def test_loop_keeps_time_moving_forward(recording) -> None:
    source = ReplaySource(recording, loop=True)
    assert source.end is None
    n = len(source.events)
    first = source.events[0].time
    events = source.advance_to(first + 2 * 120 + 30)
    times = [e.time for e in events]
    assert len(events) > n and times == sorted(times)


async def test_serve_replay_from_the_cli_reports_bad_lines(recording, tmp_path) -> None:
    bad = with_bad_lines(recording, tmp_path)
    srv = ServerProcess("--replay", str(bad), "--speed", "30")
    try:
        await asyncio.to_thread(srv.wait_ready)
    finally:
        out = srv.stop()
    assert "bad.jsonl:3: skipped: not valid JSON" in out
    assert "bad.jsonl:6: skipped" in out
