"""Simulation benchmark: how fast the engine runs headless, and what share of a core the
server spends on it while serving.

    .venv/bin/python bench/sim.py            # about 1.5 minutes
    .venv/bin/python bench/sim.py --quick    # about 30 seconds

1. Headless: `Engine(load_scenario(name))` advanced in 60 s chunks, for `demo` and
   `firehose`; simulated hours per wall second and events per wall second. A scenario
   that ends (demo lasts 15 minutes) is run again from the start until the wall-time
   budget is spent.
2. Served: `python -m phoenix serve --scenario demo --speed S` as a subprocess, one client
   subscribed to every channel; the server process's CPU time (utime + stime from
   /proc/PID/stat) over a window after a warm-up, as a share of one core. The server does
   little else with one client, so this is the engine's share (plus serialising and
   sending its events once). The window is cut short where the scenario ends (demo at
   speed 60 ends after 15 wall seconds). Also firehose with `--rate agents=20000/s` at
   speed 1 (issue 9's target: at most 15% of a core).
3. Producer: what `phoenix serve` does per event (the engine, then `feed.published`: the
   wire bytes and the hub's record) on firehose for 10 simulated minutes, in events per
   CPU second of one core; against that, the same events merely re-serialised by orjson
   from dicts, in the same run (best of three, cyclic GC off while timing). The ratio of
   the two says how close the producer is to the cost of serialising alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sys
import time
from pathlib import Path

import aiohttp
from _common import SECRET, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402

from phoenix.auth import issue  # noqa: E402
from phoenix.feed import published  # noqa: E402
from simulator.engine import Engine  # noqa: E402
from simulator.events import CONTROL  # noqa: E402
from simulator.scenario import load_scenario  # noqa: E402

T0 = 1705744800.0  # used when a scenario has no start of its own
CHUNK = 60.0
CHANNELS = ["experiments", "metrics", "agents", "deployments", "alerts", "cost-flow"]


def headless(name: str, budget: float) -> dict[str, float]:
    scenario = load_scenario(name)
    simulated = events = 0.0
    wall = cpu = 0.0
    runs = 0
    while wall < budget:
        engine = Engine(scenario, start=None if scenario.start is not None else T0)
        runs += 1
        w0, c0 = time.perf_counter(), time.process_time()
        start = engine.now
        while wall + (time.perf_counter() - w0) < budget:
            if engine.end is not None and engine.now >= engine.end:
                break
            events += len(engine.advance_to(engine.now + CHUNK))
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
        simulated += engine.now - start
    return {
        "scenario_runs": runs,
        "simulated_h": simulated / 3600,
        "wall_s": wall,
        "sim_h_per_wall_s": simulated / 3600 / wall,
        "sim_s_per_cpu_s": simulated / cpu,
        "events_per_wall_s": events / wall,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def producer(name: str, simulated: float, repeats: int = 3) -> dict[str, float]:
    """Events per CPU second: the engine plus each event's wire bytes (as `phoenix
    serve` makes them), and orjson alone re-serialising the same events from dicts. Best
    of `repeats`, with the cyclic GC off while timing (its pauses, set off by the
    hundreds of thousands of objects held here, made single runs vary by 2x)."""
    scenario = load_scenario(name)
    best_produce = best_serialise = float("inf")
    frames: list[bytes] = []
    for _ in range(repeats):
        engine = Engine(scenario, seed=1, start=None if scenario.start is not None else T0)
        end = engine.now + simulated
        frames = []
        seq = 0
        gc.collect()
        gc.disable()
        try:
            c0 = time.process_time()
            while engine.now < end:
                for event in engine.advance_to(min(end, engine.now + CHUNK)):
                    if event.channel == CONTROL:
                        continue
                    seq += 1
                    frames.append(published(seq, event).frame)
            best_produce = min(best_produce, time.process_time() - c0)
            payloads = [orjson.loads(f) for f in frames]
            c1 = time.process_time()
            for payload in payloads:
                orjson.dumps(payload)
            best_serialise = min(best_serialise, time.process_time() - c1)
        finally:
            gc.enable()
    return {
        "events": len(frames),
        "producer_per_cpu_s": len(frames) / best_produce,
        "orjson_per_cpu_s": len(frames) / best_serialise,
        "ratio": best_serialise / best_produce,
    }


async def served(
    speed: float,
    window: float,
    warmup: float,
    scenario: str = "demo",
    length: float = 900.0,
    extra: tuple[str, ...] = (),
) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PHOENIX_JWT_SECRET": SECRET}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "phoenix",
        "serve",
        "--port",
        str(port),
        "--speed",
        f"{speed:g}",
        "--scenario",
        scenario,
        *extra,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    started = time.monotonic()
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"http://127.0.0.1:{port}/health") as r:
                        if r.status < 500:
                            break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                raise RuntimeError("the server did not start")
            token = issue(SECRET, "bench", time.time(), 3600)
            url = f"http://127.0.0.1:{port}/ws?token={token}"
            async with http.ws_connect(url) as ws:
                await ws.send_json({"type": "subscribe", "id": "s", "channels": CHANNELS})
                received = 0
                loop = asyncio.get_running_loop()
                # Stop a second before the scenario ends (demo: 15 simulated minutes).
                left = length / speed - (time.monotonic() - started) - warmup - 1.0
                window = max(1.0, min(window, left))
                phase_end = loop.time() + warmup
                c0 = w0 = 0.0
                for phase in ("warmup", "window"):
                    while (wait := phase_end - loop.time()) > 0:
                        try:
                            msg = await ws.receive(timeout=wait)
                        except TimeoutError:
                            break
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            raise RuntimeError(f"unexpected frame {msg.type}")
                        if phase == "window" and json.loads(msg.data).get("type") == "event":
                            received += 1
                    if phase == "warmup":
                        c0, w0 = cpu_seconds(proc.pid), time.monotonic()
                        phase_end = loop.time() + window
                cpu = cpu_seconds(proc.pid) - c0
                wall = time.monotonic() - w0
        return {
            "speed": speed,
            "window_s": wall,
            "cpu_share": cpu / wall,
            "events_per_s": received / wall,
        }
    finally:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


async def main(args: argparse.Namespace) -> int:
    print("headless (60 s chunks)")
    print("| scenario | simulated h / wall s | events / wall s | simulated s / CPU s |")
    print("|---|---:|---:|---:|")
    rates = {}
    for name in ("demo", "firehose"):
        r = headless(name, args.budget)
        rates[name] = r["sim_s_per_cpu_s"]
        print(
            f"| {name} | {r['sim_h_per_wall_s']:,.1f} | {r['events_per_wall_s']:,.0f} | "
            f"{r['sim_s_per_cpu_s']:,.0f} |",
            flush=True,
        )
    print("\nserving demo, one client on every channel")
    print(
        "| speed | window | server CPU (share of one core) | events/s to the client "
        "| headless engine alone would need |"
    )
    print("|---:|---:|---:|---:|---:|")
    for speed in (1.0, 60.0):
        r = await served(speed, args.window, args.warmup)
        print(
            f"| {speed:g} | {r['window_s']:.0f} s | {r['cpu_share']:.1%} | "
            f"{r['events_per_s']:,.1f} | {speed / rates['demo']:.2%} |",
            flush=True,
        )
    r = await served(
        1.0, args.window, args.warmup, "firehose", 3600.0, ("--rate", "agents=20000/s")
    )
    print(
        f"\nserving firehose at speed 1 with --rate agents=20000/s, one client on every "
        f"channel: server CPU {r['cpu_share']:.1%} of one core, "
        f"{r['events_per_s']:,.0f} events/s to the client",
        flush=True,
    )
    print("\nproducer: firehose, 10 simulated minutes, events per CPU second (one core)")
    print("| producer (engine + wire bytes) | orjson alone, same events | ratio |")
    print("|---:|---:|---:|")
    r = producer("firehose", 600.0)
    print(
        f"| {r['producer_per_cpu_s']:,.0f} | {r['orjson_per_cpu_s']:,.0f} | {r['ratio']:.3f} |",
        flush=True,
    )
    return 0


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="shorter runs (about 30 s)")
    args = p.parse_args()
    args.budget = 3.0 if args.quick else 10.0  # wall seconds per headless scenario
    args.window = 8.0 if args.quick else 20.0  # wall seconds of measurement when serving
    args.warmup = 2.0
    return args


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
