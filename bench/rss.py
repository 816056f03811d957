"""Memory per idle connection: the server's RSS growth per subscribed idle WebSocket.

    .venv/bin/python bench/rss.py                 # ours and bare, 1,000 then 2,000
    .venv/bin/python bench/rss.py --step 500

Starts `fanout_server.py ours` (the real application) and `fanout_server.py bare` (a
plain aiohttp handler) on free loopback ports, one at a time, opens one connection (the
first costs what is done once: imports, caches), then two steps of `--step` aiohttp
clients, each subscribed to all six channels on ours (bare has no protocol; its clients
send the same subscribe frame, which it reads and drops). Prints VmRSS growth per
connection for each step. Clients and server are separate processes; the server is
stopped by its own handle.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from _common import SECRET, rss_kib

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from phoenix.auth import issue  # noqa: E402

SUBSCRIBE = (
    '{"type":"subscribe","channels":["agents","metrics","experiments","deployments",'
    '"alerts","cost-flow"]}'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(kind: str, step: int) -> list[float]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fanout_server.py"), kind, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:
            socks: list[aiohttp.ClientWebSocketResponse] = []

            async def open_n(n: int) -> None:
                for _ in range(n):
                    tok = issue(SECRET, f"u{len(socks)}", time.time(), 3600)
                    ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws?token={tok}")
                    await ws.send_str(SUBSCRIBE)
                    if kind == "ours":
                        await ws.receive(timeout=10)
                    socks.append(ws)
                await asyncio.sleep(0.5)

            await open_n(1)
            before = rss_kib(proc.pid)
            out = []
            for _ in range(2):
                await open_n(step)
                after = rss_kib(proc.pid)
                out.append((after - before) / step)
                before = after
            for ws in socks:
                await ws.close()
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


async def main(args: argparse.Namespace) -> int:
    print(f"RSS per idle connection (KiB), steps of {args.step}")
    print("| server | first step | second step |")
    print("|---|---:|---:|")
    for kind in ("ours", "bare"):
        first, second = await measure(kind, args.step)
        print(f"| {kind} | {first:.1f} | {second:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--step", type=int, default=1000, help="connections per step")
    sys.exit(asyncio.run(main(p.parse_args())))
