"""The JavaScript client of docs/clients.md (clients/phoenix-client.mjs), run under Node
against a real server while the server expires its token and then goes away: it must get
a fresh token after 4001 and resume with `since`, reload the snapshot after 1001, and
never see an event twice or out of order."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from .procs import ServerProcess, run

ROOT = Path(__file__).resolve().parents[2]
NODE = shutil.which("node")
START = "2024-01-20T10:00:00Z"


@pytest.mark.skipif(NODE is None and os.environ.get("CI") != "true", reason="node not installed")
async def test_the_client_survives_an_expired_token_and_a_server_going_away() -> None:
    assert NODE is not None, "node is needed (it also installs the page's uPlot)"
    srv = ServerProcess("--scenario", "demo", "--seed", "7", "--start", START, "--speed", "10")
    try:
        await asyncio.to_thread(srv.wait_ready)
        admin = {"Authorization": f"Bearer {run('token', '--role', 'admin').stdout.strip()}"}
        node = subprocess.Popen(
            [NODE, "--experimental-websocket", "--no-warnings", "tests/server/js_client_driver.mjs",
             srv.base, "9"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        async with aiohttp.ClientSession() as http:

            async def fault(body: dict) -> None:
                r = await http.post(f"{srv.base}/api/sim/faults", json=body, headers=admin)
                assert r.status == 202, await r.text()

            await asyncio.sleep(2.5)
            await fault({"type": "token_expiry_storm"})
            await asyncio.sleep(3.0)
            await fault({"type": "close_connections", "params": {"code": 1001}})
        out, err = await asyncio.to_thread(node.communicate, timeout=60)
    finally:
        srv.stop()
    assert node.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    states = [(x["what"], x.get("detail")) for x in lines if x["kind"] == "state"]
    ids = [int(x["id"][4:]) for x in lines if x["kind"] == "event"]
    # Events: never twice, never out of order, across both reconnects.
    assert ids == sorted(set(ids)) and len(ids) > 50
    # 4001: a fresh token, then a resume the server could answer whole.
    assert ("unauthorized", "expired") in states and ("closed", 4001) in states
    after = states[states.index(("closed", 4001)) :]
    assert ("subscribed", True) in after
    assert max(x["tokens"] for x in lines if x["kind"] == "state") >= 2
    # 1001: the snapshot again, then a subscribe from where it was taken.
    assert ("closed", 1001) in states
    assert sum(x["kind"] == "snapshot" for x in lines) == 2
    assert ("subscribed", True) in states[states.index(("closed", 1001)) :]
