"""Scale-out benchmark (issue 10): gateways over Redis against the in-process hub, same
run, same clients, same event rate, alternating.

    .venv/bin/python bench/cluster.py            # about 4 minutes
    .venv/bin/python bench/cluster.py --quick    # about 1 minute

It starts, each on a free loopback port and with a temporary config (no access log): its
own `redis-server` (no persistence), `phoenix engine --scenario firehose --rate
agents=R/s` on it, two `phoenix gateway`s (A and B, each on its own port), and `phoenix
serve` with the same scenario and rate (one process, the in-process hub). Then two client
processes (bench/fanout_client.py's connections, with a frame counter that counts every
text frame, since the simulation's events carry no send time), each holding half of the
clients, subscribed to every channel: both halves on `serve`; on the gateway side both on
A ("1 gateway") or one on A and one on B ("2 gateways").

Only one simulation runs at a time: the other is paused (serve: POST /api/sim with an
admin token; the engine: the same request as a gateway forwards it, written to the broker
from here, so that a busy gateway cannot delay it), so its processes are idle. A window:
the clients' counts reset, the CPU time of every process (utime + stime from
/proc/PID/stat; redis-server's from INFO cpu) and the published position (serve: GET
/api/sim `last_event_id`; engine: HGET phoenix:meta last) read; resume; `--seconds`
later, pause; wait until the clients hold every event published meanwhile (or nothing has
moved for 3 s: connections lost); read CPU and position again. So every message is
counted once, the CPU covers all the work of delivering them, and the delivered rate is
over the time from the resume to the last frame (longer than the publishing time when a
server falls behind: the "tail").

Phases:

1. base: `--rate` (agents heartbeats per second; firehose adds about 2-7 other events a
   second), the three setups in turn, `--rounds` times, the order rotating each round.
   Server CPU per delivered message: serve's; the gateway's (both gateways' with 2);
   the engine's and redis-server's; their total.
2. high: `--high-rate`, the same three setups (one round of 2 s windows with --quick, two
   of 5 s otherwise): the delivered rate when the machine is short of CPU.
3. events: every client disconnected, the rate at `--events-rate`: CPU per published
   event of serve (no clients), of the engine, of redis-server and of each gateway's
   reader, with two gateways reading, then with gateway B stopped (one reader).

RSS per idle connection: (VmRSS with the clients connected and idle - VmRSS before) / N,
for serve and gateway A.

Everything listens on and connects to 127.0.0.1; every step is bounded in time (and the
whole run by --budget); every process it starts is stopped by its own handle, and the
temporary directory removed, whatever happens.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import sys
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import redis  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402
from _common import SECRET, cpu_model, cpu_seconds, load_average, rss_kib  # noqa: E402
from fanout import Proc, free_port  # noqa: E402

from phoenix.auth import issue  # noqa: E402

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
NAMESPACE = "phoenix"  # broker.namespace's default
SETUPS = ("in-process", "1 gateway", "2 gateways")
GATEWAYS = ("gw0", "gw1")
CLIENT_PROCS = 2  # the clients' halves: with "2 gateways" the second moves to gateway B
CONFIG = "server:\n  access_log: false\n"


# --- the client processes: fanout_client.py, counting every text frame ---------------


def client_main() -> None:
    """`cluster.py --client`: bench/fanout_client.py as it is (its commands, connections
    and upgrade), but its frame loop counts every text frame, not only those that carry
    the fan-out benchmark's `"sent":` (the simulation's events do not), and counts after
    "stop" too, so that "stop" can be sent again to read how many have arrived so far
    ("start" resets the count)."""
    import fanout_client as fc

    class CountingClient(fc.Client):
        def text_frame(self, buf: bytearray, start: int, end: int, now: float) -> int:
            return 1  # every one, counting or not: "stop" reads the count so far

    fc.Client = CountingClient  # type: ignore[misc]  # open_one looks it up per connection
    asyncio.run(fc.main())


# --- the orchestrator -----------------------------------------------------------------


@dataclass
class Window:
    phase: str  # base, high, events
    setup: str
    round: int
    clients: int
    rate: int  # agents heartbeats per second asked for
    seconds: float  # publishing: resume to pause
    span: float  # delivering: resume to the last frame a client counted
    wall: float  # the CPU readings apart: resume to everything delivered
    events: int  # published while resumed
    delivered: int  # frames the clients counted
    closed: int  # connections lost in the window
    slow: int  # 1013s the servers counted in the window
    cpu: dict[str, float] = field(default_factory=dict)  # role -> CPU seconds

    @property
    def expected(self) -> int:
        return self.events * self.clients

    @property
    def tail(self) -> float:
        """How long after the pause the last frame arrived."""
        return self.span - self.seconds

    def us_per_msg(self, *roles: str) -> float:
        cpu = sum(self.cpu.get(r, 0.0) for r in roles)
        return cpu / self.delivered * 1e6 if self.delivered else float("nan")


class Cluster:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.procs: dict[str, Proc] = {}
        self.ports: dict[str, int] = {}
        self.clients: list[Proc] = []
        self.gw_of: list[str | None] = [None] * CLIENT_PROCS  # the gateway each half is on
        self.on_serve = [False] * CLIENT_PROCS
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.redis: Any = None
        self.admin = issue(SECRET, "bench-admin", time.time(), 24 * 3600, role="admin")
        self.windows: list[Window] = []
        self.rss: dict[str, float] = {}
        self.paused = {"serve": False, "engine": False}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        self.env = {**env, "PHOENIX_JWT_SECRET": SECRET}

    # --- processes ------------------------------------------------------------------

    async def spawn(self, name: str, *argv: str) -> Proc:
        with open(self.tmp / f"{name}.log", "wb") as log:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
            )
        self.procs[name] = Proc(proc)
        return self.procs[name]

    async def stop(self, name: str) -> None:
        """SIGTERM, again after 3 s, SIGKILL after 10 more. Twice: on Python 3.11,
        redis-py's asyncio client can swallow a task's cancellation (README), so the
        engine or a gateway sometimes ignores the first SIGTERM."""
        proc = self.procs.pop(name, None)
        if proc is None or proc.proc.returncode is not None:
            return
        for signal_once, wait in ((proc.proc.terminate, 3.0), (proc.proc.terminate, 10.0)):
            signal_once()
            try:
                await asyncio.wait_for(proc.proc.wait(), wait)
                return
            except TimeoutError:
                pass
        proc.proc.kill()
        await proc.proc.wait()

    def log_tail(self, name: str, lines: int = 15) -> str:
        path = self.tmp / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def phoenix(self, *argv: str) -> list[str]:
        return [sys.executable, "-m", "phoenix", *argv]

    async def start(self) -> None:
        a = self.args
        for name in ("redis", "serve", "gw0", "gw1"):
            self.ports[name] = free_port()
        url = f"redis://127.0.0.1:{self.ports['redis']}/0"
        config = self.tmp / "config.yaml"
        config.write_text(CONFIG)
        await self.spawn(
            "redis",
            REDIS_SERVER,
            "--port",
            str(self.ports["redis"]),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.tmp),
        )
        self.redis = aioredis.Redis(port=self.ports["redis"], socket_timeout=10)
        for _ in range(100):
            with contextlib.suppress(redis.RedisError, OSError):
                if await self.redis.ping():
                    break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"redis-server did not start:\n{self.log_tail('redis')}")
        common = ["--config", str(config), "--log-level", "warning"]
        scenario = ["--scenario", "firehose", "--rate", f"agents={a.rate}/s"]
        await self.spawn("engine", *self.phoenix("engine", *common, "--broker", url, *scenario))
        for i in (0, 1):
            port = str(self.ports[f"gw{i}"])
            argv = ("gateway", *common, "--broker", url, "--port", port, "--index", str(i))
            await self.spawn(f"gw{i}", *self.phoenix(*argv))
        port = str(self.ports["serve"])
        await self.spawn("serve", *self.phoenix("serve", *common, "--port", port, *scenario))
        for name in ("serve", "gw0", "gw1"):
            await self.wait_healthy(name)
        # Past firehose's first second (5,000 agent.connected at once), on both sides.
        for _ in range(300):
            if min(await self.position("serve"), await self.position("engine")) > 5_200:
                break
            await asyncio.sleep(0.1)
        else:
            raise RuntimeError("the simulations did not get past their first second")
        await self.pause("serve")
        await self.pause("engine")
        await self.drain(("serve", "gw0", "gw1"))
        self.clients = [
            await Proc.start(str(HERE / "cluster.py"), "--client", stdin=True)
            for _ in range(CLIENT_PROCS)
        ]

    async def wait_healthy(self, name: str) -> None:
        url = f"http://127.0.0.1:{self.ports[name]}/health"
        for _ in range(300):
            if self.procs[name].proc.returncode is not None:
                break
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with self.http.get(url) as r:
                    body = await r.json()
                    broker = body.get("broker")
                    if broker is None or (broker["engine"] == "up" and broker["epoch"]):
                        return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{name} did not become healthy:\n{self.log_tail(name)}")

    # --- HTTP and Redis -------------------------------------------------------------

    def url(self, name: str, path: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}{path}"

    async def command(self, side: str, body: dict[str, Any]) -> None:
        """A control on the in-process server (POST /api/sim), or on the engine as a
        gateway forwards it (phoenix.gateway.RemoteControl): a request in the broker,
        straight from here, so that a gateway busy delivering does not delay it."""
        if side == "serve":
            headers = {"Authorization": f"Bearer {self.admin}"}
            url = self.url("serve", "/api/sim")
            async with self.http.post(url, json=body, headers=headers) as r:
                if r.status != 200:
                    raise RuntimeError(f"{body} on serve: {r.status} {await r.text()}")
            return
        rid = secrets.token_hex(8)
        request = {"id": rid, "op": "command", "body": body, "deadline": time.time() + 4}
        await self.redis.rpush(f"{NAMESPACE}:requests", json.dumps(request))
        reply = await self.redis.blpop([f"{NAMESPACE}:reply:{rid}"], timeout=4)
        if reply is None or "ok" not in json.loads(reply[1]):
            raise RuntimeError(f"{body} on the engine: {reply}")

    async def pause(self, side: str) -> None:
        if not self.paused[side]:
            await self.command(side, {"action": "pause"})
            self.paused[side] = True

    async def resume(self, side: str) -> None:
        if self.paused[side]:
            await self.command(side, {"action": "resume"})
            self.paused[side] = False

    async def set_rate(self, rate: int) -> None:
        for side in ("serve", "engine"):
            body = {"action": "set_rate", "channel": "agents", "per_second": rate}
            await self.command(side, body)

    async def position(self, side: str) -> int:
        """The last event id the side has published."""
        if side == "engine":
            return int(await self.redis.hget(f"{NAMESPACE}:meta", "last") or 0)
        headers = {"Authorization": f"Bearer {self.admin}"}
        async with self.http.get(self.url("serve", "/api/sim"), headers=headers) as r:
            last = (await r.json())["last_event_id"] or "evt-0"
        return int(last.removeprefix("evt-"))

    async def metrics(self, name: str) -> dict[str, float]:
        async with self.http.get(self.url(name, "/metrics")) as r:
            text = await r.text()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                with contextlib.suppress(ValueError):
                    out[key] = float(value)
        return out

    async def connections(self, name: str) -> int:
        async with self.http.get(self.url(name, "/health")) as r:
            return int((await r.json())["connections"])

    async def drain(self, names: tuple[str, ...], timeout: float = 20.0) -> None:
        """Wait until the servers named have nothing left to deliver."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            busy = False
            for name in names:
                if name not in self.procs:
                    continue
                m = await self.metrics(name)
                if m.get('phoenix_outbound_queue{stat="total"}', 0) > 0:
                    busy = True
                if m.get("phoenix_broker_lag_events", 0) > 0:
                    busy = True
            if not busy:
                await asyncio.sleep(0.2)
                return
            await asyncio.sleep(0.1)
        print(f"  (still delivering after {timeout:g} s: {names})", flush=True)

    async def cpu(self) -> dict[str, float]:
        out = {name: cpu_seconds(p.pid) for name, p in self.procs.items() if name != "redis"}
        info = await self.redis.info("cpu")
        out["redis"] = float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        out["clients"] = sum(cpu_seconds(c.pid) for c in self.clients)
        return out

    # --- placing the clients --------------------------------------------------------

    def shares(self) -> list[tuple[int, int]]:
        n, k = self.args.clients, CLIENT_PROCS
        sizes = [n // k + (1 if i < n % k else 0) for i in range(k)]
        return [(sum(sizes[:i]), sizes[i]) for i in range(k)]

    async def place(self, setup: str | None) -> int:
        """Connections as `setup` needs them (None: none on any gateway, none on serve);
        reopens any a server closed. Returns the clients the setup's servers feed."""
        wanted_gw: list[str | None]
        if setup is None:
            wanted_gw = [None] * CLIENT_PROCS
        elif setup == "2 gateways":
            wanted_gw = ["gw0", "gw1"]
        else:
            wanted_gw = ["gw0"] * CLIENT_PROCS
        serve = setup is not None
        for i, (client, (first, n)) in enumerate(zip(self.clients, self.shares(), strict=True)):
            old = self.gw_of[i]
            if old is not None and old != wanted_gw[i]:
                await client.call(op="close", port=self.ports[old])
                self.gw_of[i] = None
            if self.on_serve[i] and not serve:
                await client.call(op="close", port=self.ports["serve"])
                self.on_serve[i] = False
            targets = ([wanted_gw[i]] if wanted_gw[i] else []) + (["serve"] if serve else [])
            for name in targets:
                r = await client.call(
                    timeout=120,
                    op="connect",
                    port=self.ports[name],
                    n=n,
                    first=first,
                    subscribe=True,
                )
                if r["open"] != n:
                    raise RuntimeError(f"{name}: only {r['open']} of {n} connections open")
            self.gw_of[i] = wanted_gw[i]
            self.on_serve[i] = serve
        want = {"serve": 0, "gw0": 0, "gw1": 0}
        for i, (_, n) in enumerate(self.shares()):
            if self.on_serve[i]:
                want["serve"] += n
            if self.gw_of[i] is not None:
                want[self.gw_of[i]] += n  # type: ignore[index]
        for name, count in want.items():
            if name not in self.procs:
                continue
            for _ in range(200):
                have = await self.connections(name)
                if have == count:
                    break
                await asyncio.sleep(0.05)
            else:
                raise RuntimeError(f"{name} counts {have} connections, not {count}")
        if setup is None:
            return 0
        return self.args.clients

    # --- one window -----------------------------------------------------------------

    async def window(self, phase: str, setup: str, rnd: int, rate: int, seconds: float) -> Window:
        """Resume, publish for `seconds`, pause, wait until every event published is
        delivered (or nothing moves any more); CPU and positions read at both ends."""
        clients = await self.place(setup if phase != "events" else None)
        side = "serve" if setup.startswith("in-process") else "engine"
        # The processes whose CPU is the setup's: with "1 gateway", gateway B reads the
        # streams too (its CPU, about 18 us per event, is left out; redis-server's share
        # of its reads is not).
        if side == "serve":
            servers: tuple[str, ...] = ("serve",)
        elif setup == "1 gateway":
            servers = ("gw0",)
        else:
            servers = tuple(g for g in GATEWAYS if g in self.procs)
        slow0 = await self.slow(servers)
        await self.quiesce()
        p0, c0 = await self.position(side), await self.cpu()
        t0 = time.time()
        await self.resume(side)
        await asyncio.sleep(seconds)
        await self.pause(side)
        t1 = time.time()
        counts = await self.settle(side, servers, p0, clients)
        p1, c1, t2 = await self.position(side), await self.cpu(), time.time()
        last = max((c["last"] for c in counts), default=0.0)
        roles = ["serve"] if side == "serve" else ["engine", "redis", *servers]
        w = Window(
            phase=phase,
            setup=setup,
            round=rnd,
            clients=clients,
            rate=rate,
            seconds=t1 - t0,
            span=max(t1, last) - t0,
            wall=t2 - t0,
            events=p1 - p0,
            delivered=sum(c["count"] for c in counts),
            closed=sum(c["closed"] for c in counts),
            slow=await self.slow(servers) - slow0,
            cpu={r: c1[r] - c0[r] for r in [*roles, "clients"]},
        )
        self.windows.append(w)
        cpu = "  ".join(f"{r} {w.cpu[r] / w.wall:4.0%}" for r in [*roles, "clients"])
        per = f"{server_us(w):6.2f} us/msg" if w.delivered else ""
        print(
            f"  {phase:6} {setup:10} r{rnd}  {w.events / w.seconds:6,.0f} events/s  "
            f"{w.delivered / w.span:8,.0f} msg/s ({w.delivered / max(1, w.expected):6.1%})  "
            f"tail {w.tail:5.2f} s  {per}  cpu: {cpu}  lost {w.closed}/{w.slow}",
            flush=True,
        )
        return w

    async def quiesce(self) -> None:
        """Reset the clients' counts once nothing arrives any more (a window cut short by
        --settle may leave frames on the way)."""
        names = tuple(n for n in ("serve", *GATEWAYS) if n in self.procs)
        await self.drain(names, self.args.settle)
        deadline = time.monotonic() + self.args.settle
        while True:
            await asyncio.gather(*(c.call(op="start") for c in self.clients))
            await asyncio.sleep(0.3)
            counts = await asyncio.gather(*(c.call(op="stop") for c in self.clients))
            if sum(c["count"] for c in counts) == 0 or time.monotonic() > deadline:
                break
        await asyncio.gather(*(c.call(op="start") for c in self.clients))

    async def slow(self, servers: tuple[str, ...]) -> int:
        total = 0.0
        for s in servers:
            total += (await self.metrics(s)).get("phoenix_slow_consumer_closes_total", 0)
        return int(total)

    async def settle(
        self, side: str, servers: tuple[str, ...], p0: int, clients: int
    ) -> list[dict[str, Any]]:
        """After the pause: wait until the clients have every event published since `p0`,
        or until nothing has moved for 3 s once the servers are idle (connections lost);
        bounded by --settle seconds. Returns the clients' counts."""
        await asyncio.sleep(0.3)  # the engine's last write after the pause
        await self.drain(servers, self.args.settle)
        deadline = time.monotonic() + self.args.settle
        moved, seen = time.monotonic(), -1
        while True:
            counts = await asyncio.gather(*(c.call(op="stop") for c in self.clients))
            got = sum(c["count"] for c in counts)
            expected = (await self.position(side) - p0) * clients
            now = time.monotonic()
            if got >= expected or now > deadline:
                break
            if got != seen:
                seen, moved = got, now
            elif now - moved > 3.0:
                break  # the servers have nothing queued (drained above): lost on the way
            await asyncio.sleep(0.1)
        return counts

    # --- the run --------------------------------------------------------------------

    async def run(self) -> None:
        a = self.args
        await self.start()
        rss0 = {name: rss_kib(self.procs[name].pid) for name in ("serve", "gw0")}
        await self.place("1 gateway")
        await asyncio.sleep(1.0)
        for name in ("serve", "gw0"):
            self.rss[name] = (rss_kib(self.procs[name].pid) - rss0[name]) / a.clients
        print(
            f"  RSS per idle connection: serve {self.rss['serve']:.1f} KiB, "
            f"gateway {self.rss['gw0']:.1f} KiB",
            flush=True,
        )
        print(f"phase base: agents={a.rate}/s, {a.clients} clients", flush=True)
        for rnd in range(a.rounds):
            k = rnd % len(SETUPS)
            for setup in SETUPS[k:] + SETUPS[:k]:
                await self.window("base", setup, rnd, a.rate, a.seconds)
        print(f"phase high: agents={a.high_rate}/s, {a.clients} clients", flush=True)
        await self.set_rate(a.high_rate)
        for rnd in range(a.high_rounds):
            order = SETUPS if rnd % 2 == 0 else SETUPS[::-1]
            for setup in order:
                await self.window("high", setup, rnd, a.high_rate, a.high_seconds)
        print(f"phase events: agents={a.events_rate}/s, no clients", flush=True)
        await self.set_rate(a.events_rate)
        await self.window("events", "in-process", 0, a.events_rate, a.events_seconds)
        await self.window("events", "2 readers", 0, a.events_rate, a.events_seconds)
        await self.stop("gw1")
        await self.window("events", "1 reader", 0, a.events_rate, a.events_seconds)

    async def close(self) -> None:
        for c in self.clients:
            with contextlib.suppress(Exception):
                await c.stop()
        for name in ("serve", "gw0", "gw1", "engine", "redis"):
            with contextlib.suppress(Exception):
                await self.stop(name)
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        await self.http.close()


# --- the report -----------------------------------------------------------------------


def total(windows: list[Window], phase: str, setup: str) -> Window | None:
    """The windows of one phase and setup, added up."""
    ws = [w for w in windows if w.phase == phase and w.setup == setup]
    if not ws:
        return None
    cpu: dict[str, float] = {}
    for w in ws:
        for role, value in w.cpu.items():
            cpu[role] = cpu.get(role, 0.0) + value
    return Window(
        phase=phase,
        setup=setup,
        round=len(ws),
        clients=ws[0].clients,
        rate=ws[0].rate,
        seconds=sum(w.seconds for w in ws),
        span=sum(w.span for w in ws),
        wall=sum(w.wall for w in ws),
        events=sum(w.events for w in ws),
        delivered=sum(w.delivered for w in ws),
        closed=sum(w.closed for w in ws),
        slow=sum(w.slow for w in ws),
        cpu=cpu,
    )


def gw_roles(w: Window) -> list[str]:
    return [r for r in w.cpu if r.startswith("gw")]


def server_us(w: Window) -> float:
    """CPU per delivered message of what serves the clients: serve, or the gateways."""
    return w.us_per_msg("serve") if "serve" in w.cpu else w.us_per_msg(*gw_roles(w))


def all_us(w: Window) -> float:
    return w.us_per_msg(*[r for r in w.cpu if r != "clients"])


def per_round(windows: list[Window], phase: str, setup: str) -> list[float]:
    """Per round: the setup's server CPU per message over the in-process server's."""
    out = []
    for w in windows:
        if (w.phase, w.setup) != (phase, setup) or not w.delivered:
            continue
        ref = [r for r in windows if (r.phase, r.setup, r.round) == (phase, "in-process", w.round)]
        if ref and ref[0].delivered:
            out.append(server_us(w) / server_us(ref[0]))
    return out


def report(windows: list[Window], rss: dict[str, float]) -> str:
    lines = []
    for phase in ("base", "high"):
        ts = [t for s in SETUPS if (t := total(windows, phase, s)) is not None]
        if not ts:
            continue
        lines += [
            f"{phase}: agents={ts[0].rate}/s, {ts[0].clients:,} clients on every channel, "
            f"{ts[0].round} window(s) of each setup, {ts[0].seconds / ts[0].round:.1f} s each",
            "",
            "| setup | events/s | delivered msg/s | of published | tail | serve or gateways "
            "us/msg | engine us/msg | redis us/msg | all servers us/msg | servers (cores) | "
            "clients (cores) | lost / 1013 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in ts:
            gw = "serve" not in t.cpu
            servers = sum(v for r, v in t.cpu.items() if r != "clients")
            lines.append(
                f"| {t.setup} | {t.events / t.seconds:,.0f} | {t.delivered / t.span:,.0f} | "
                f"{t.delivered / max(1, t.expected):.1%} | {t.tail / t.round:.2f} s | "
                f"{server_us(t):.2f} | "
                + (
                    f"{t.us_per_msg('engine'):.3f} | {t.us_per_msg('redis'):.3f} | "
                    if gw
                    else "- | - | "
                )
                + f"{all_us(t):.2f} | {servers / t.wall:.2f} | {t.cpu['clients'] / t.wall:.2f} | "
                f"{t.closed} / {t.slow} |"
            )
        ref = next((t for t in ts if t.setup == "in-process"), None)
        for t in ts:
            if ref is None or t is ref or not ref.delivered:
                continue
            rounds = per_round(windows, phase, t.setup)
            spread = (
                f" (per round {min(rounds):.2f} to {max(rounds):.2f})" if len(rounds) > 1 else ""
            )
            lines.append(
                f"\n{t.setup} / in-process, CPU per delivered message: gateway(s) "
                f"{server_us(t) / server_us(ref):.2f}{spread}; engine + redis + gateway(s) "
                f"{all_us(t) / server_us(ref):.2f}"
            )
        lines.append("")
    ev = [t for s in ("in-process", "2 readers", "1 reader") if (t := total(windows, "events", s))]
    if ev:
        lines += [
            f"events: agents={ev[0].rate}/s, no clients: CPU per published event (us)",
            "",
            "| setup | events/s | serve | engine | redis-server | each gateway (reader) |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for t in ev:
            n = max(1, t.events)

            def us(role: str, t: Window = t, n: int = n) -> str:
                return f"{t.cpu[role] / n * 1e6:.2f}" if role in t.cpu else "-"

            gws = " / ".join(us(g) for g in gw_roles(t)) or "-"
            lines.append(
                f"| {t.setup} | {t.events / t.seconds:,.0f} | {us('serve')} | {us('engine')} | "
                f"{us('redis')} | {gws} |"
            )
        lines.append("")
    for setup in ("1 gateway", "2 gateways"):
        t = total(windows, "base", setup)
        if t is not None and t.events:
            lines.append(
                f"base rate, {setup}: per published event, redis-server "
                f"{t.cpu['redis'] / t.events * 1e6:.1f} us, engine "
                f"{t.cpu['engine'] / t.events * 1e6:.1f} us"
            )
    lines.append(
        f"RSS per idle connection: serve {rss.get('serve', 0):.1f} KiB, "
        f"gateway {rss.get('gw0', 0):.1f} KiB"
    )
    return "\n".join(lines)


def machine() -> str:
    import redis as redis_py

    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) / 1024 / 1024
    return (
        f"{os.cpu_count()} CPUs ({cpu_model()}), {mem:.1f} GiB, Python "
        f"{platform.python_version()}, aiohttp {aiohttp.__version__}, redis-py "
        f"{redis_py.__version__}, {redis_server_version()}, load average {load_average()}, "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )


def redis_server_version() -> str:
    import subprocess

    out = subprocess.run(
        [REDIS_SERVER, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    return next((w.replace("v=", "redis-server ") for w in out.split() if w.startswith("v=")), "?")


async def main(args: argparse.Namespace) -> int:
    print(f"cluster benchmark on {machine()}")
    print(
        f"clients {args.clients} in {CLIENT_PROCS} processes, {args.seconds:g} s windows, "
        f"{args.rounds} round(s) at agents={args.rate}/s, {args.high_rounds} at "
        f"{args.high_rate}/s, events phase at {args.events_rate}/s",
        flush=True,
    )
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="phoenix-cluster-"))
    cluster = Cluster(args, tmp)
    code = 0
    try:
        async with asyncio.timeout(args.budget):
            await cluster.run()
    except Exception:
        print(f"stopped:\n{traceback.format_exc()}", flush=True)
        for name in ("serve", "engine", "gw0", "gw1", "redis"):
            if tail := cluster.log_tail(name, 5):
                print(f"--- {name} log:\n{tail}")
        code = 1
    finally:
        await cluster.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(report(cluster.windows, cluster.rss))
    print(f"\n(total {time.monotonic() - started:.0f} s; load average now {load_average()})")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "rss_per_connection_kib": cluster.rss,
                    "windows": [asdict(w) for w in cluster.windows],
                },
                indent=1,
            )
        )
    return code


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="about a minute: one round, 3 s windows")
    p.add_argument("--clients", type=int, default=1000, help="connections (default 1000)")
    p.add_argument("--rate", type=int, default=50, help="agents/s in the base phase (50)")
    p.add_argument("--high-rate", type=int, default=150, help="agents/s, high phase (150)")
    p.add_argument("--events-rate", type=int, default=5000, help="agents/s, events phase")
    p.add_argument("--rounds", type=int, help="base-phase rounds (default 3, quick 1)")
    p.add_argument("--seconds", type=float, help="window length (default 8, quick 3)")
    p.add_argument("--settle", type=float, help="the longest wait for delivery (30, quick 15)")
    p.add_argument("--budget", type=float, help="the whole run at most (default 480 s, quick 240)")
    p.add_argument("--json", help="also write every window to this file")
    args = p.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 8.0
    args.high_rounds = 1 if args.quick else 2
    args.high_seconds = 2.0 if args.quick else 5.0
    args.events_seconds = 3.0 if args.quick else 6.0
    if args.settle is None:
        args.settle = 15.0 if args.quick else 30.0
    if args.budget is None:
        args.budget = 240.0 if args.quick else 480.0
    return args


if __name__ == "__main__":
    if sys.argv[1:] == ["--client"]:
        client_main()
    else:
        sys.exit(asyncio.run(main(parse_args())))
