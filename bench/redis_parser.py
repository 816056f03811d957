"""Does hiredis help a gateway? The gateway's hot read, measured with and without it.

A gateway spends its broker time in one place: XREAD of a batch of stream entries (the
engine's events: wire bytes plus six small fields) and turning each into an Entry. This
starts a redis-server of its own on a free loopback port (no persistence, a temporary
directory, stopped by PID), writes N entries shaped like the engine's, and times reading
them all back in batches of 5,000, first with redis-py's pure-Python parser and then with
hiredis, each in a fresh subprocess (redis-py picks its parser at import). Reports CPU
seconds of the reading process per 100,000 entries.

    .venv/bin/python bench/redis_parser.py [--entries 200000] [--hiredis-path DIR]

`--hiredis-path` is a directory holding the hiredis package (e.g. made with
`pip install --target DIR hiredis`), put on the reader's sys.path for the second run;
by default, whatever the venv has is used for both (then the two runs are alike).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

READER = r"""
import json, sys, time
sys.path.insert(0, sys.argv[3]) if len(sys.argv) > 3 else None
import redis
from redis.utils import HIREDIS_AVAILABLE
from phoenix.broker import read_entry
r = redis.Redis(port=int(sys.argv[1]))
total = int(sys.argv[2])
last, n = "0-0", 0
t0, c0 = time.perf_counter(), time.process_time()
while n < total:
    got = r.xread({"bench:ch:agents": last}, count=5000)
    for _key, entries in got:
        for sid, fields in entries:
            read_entry("agents", sid, fields)
            n += 1
        last = entries[-1][0]
print(json.dumps({"hiredis": HIREDIS_AVAILABLE, "entries": n,
                  "cpu": time.process_time() - c0, "wall": time.perf_counter() - t0}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=200_000)
    p.add_argument("--hiredis-path", help="a directory with the hiredis package")
    args = p.parse_args()
    if not 1000 <= args.entries <= 2_000_000:
        p.error("--entries: 1,000 to 2,000,000")
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        server = subprocess.Popen(
            [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", d],
            stdout=subprocess.DEVNULL,
        )
        try:
            _fill(port, args.entries)
            runs = [_read(port, args.entries, None)]
            runs.append(_read(port, args.entries, args.hiredis_path))
        finally:
            server.terminate()
            server.wait(10)
    for run in runs:
        per = run["cpu"] / run["entries"] * 100_000
        print(
            f"hiredis={run['hiredis']!s:5}  {run['entries']:,} entries  "
            f"CPU {run['cpu']:.2f} s ({per:.2f} s per 100k)  wall {run['wall']:.2f} s"
        )


def _fill(port: int, entries: int) -> None:
    sys.path.insert(0, str(ROOT))
    import redis

    from phoenix.broker import entry_fields

    r = redis.Redis(port=port)
    deadline = time.monotonic() + 120
    frame = (
        b'{"id":"evt-1","type":"event","channel":"agents","event":"agent.heartbeat",'
        b'"data":{"agent_id":"agent-0042","status":"healthy","cpu":0.42,"memory":0.61},'
        b'"timestamp":"2024-01-20T10:00:01Z"}'
    )
    tags = {"agent_id": "agent-0042"}
    for start in range(1, entries + 1, 5000):
        pipe = r.pipeline(transaction=False)
        for pos in range(start, min(start + 5000, entries + 1)):
            fields = entry_fields(frame, "agent.heartbeat", tags, 1.7e9, time.time(), "e", pos - 1)
            pipe.xadd("bench:ch:agents", fields, id=f"{pos}-0")
        pipe.execute()
        if time.monotonic() > deadline:
            raise SystemExit("filling Redis took too long")


def _read(port: int, entries: int, path: str | None) -> dict[str, float]:
    argv = [sys.executable, "-c", READER, str(port), str(entries)]
    if path:
        argv.append(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


if __name__ == "__main__":
    main()
