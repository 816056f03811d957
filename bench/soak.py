"""Soak test: many clients for a long while with delivery faults on; memory over time and
events lost.

    .venv/bin/python bench/soak.py                 # 1,000 clients, 10 minutes
    .venv/bin/python bench/soak.py --quick         # 100 clients, 1 minute
    .venv/bin/python bench/soak.py --clients 500 --minutes 5 --speed 2
    .venv/bin/python bench/soak.py --minutes 5 --clients 300 --abusive 20   # issue 8

One run starts `phoenix serve` on a free loopback port (a temporary config; the `demo`
scenario with its `duration` stretched to outlast the run, fixed seed and start), then
connects an oracle client (user `oracle`) and N soak clients (users `soak-<i>`, one
connection each) in this process, every one subscribed to all six channels. While they
run, the script injects delivery faults through `POST /api/sim/faults` on a schedule
(latency with jitter, duplicate, reorder, pause_delivery, burst, close_connections by
share, by user, by channel and abruptly, token_expiry_storm, server_restart), one at a
time, and samples the server's RSS and /metrics every 10 s. Clients reconnect with the
reference's exponential backoff (1 s doubling to 30 s, plus up to 25% jitter so a
thousand clients do not retry in step), fetch a fresh token after a 4001 `expired`, and
resume with `"since": {channel: last id received on it}`.

At the end faults have stopped, the simulation is paused and every client has caught up
(or a deadline passed). Every published event goes to every client (all six channels, no
filters) and event ids are contiguous (control events take none), so each client must
hold every id from its window's start to the last one published. The oracle is a client
like the others (a server_restart or a storm hits every user, so no fault can spare it:
it resumes too); its ids are checked for contiguity and the others against it. A missing
id is "lost by design" when it falls in the gap of a resume the server answered with
`recovered: false` (history no longer reached back), else "lost otherwise": a bug, and
the exit status is 1. Duplicates and out-of-order deliveries are counted and split by
whether a duplicate / reorder fault was on when they arrived.

Beside them run `--abusive` clients (20 by default, 6 with --quick; kinds in turn), each a
loop bounded by a count and a deadline, on raw sockets where it matters: ping flooders (100
pings, then 600 at once: RATE_LIMITED and 4029; then `connections_per_user` connections,
lowered to 10, each sending 1,000 WebSocket pings and going silent without reading for 1.5
heartbeats + 10 s: the server must have dropped every one, and the next cycle finds their
slots free), malformed frames (invalid JSON, non-objects, unknown type, lone surrogates in
an id and a channel, `since` "evt-²" and fullwidth digits, an over-long id, binary, deep
nesting: INVALID_MESSAGE each; exactly 65,536 bytes: a pong; one byte over: 1009), bad
tokens (garbage, expired, wrong key, alg none, hand-signed payloads with exp NaN /
Infinity / 400 digits / 1e400...: UNAUTHORIZED and 4001), a user opening 3 connections
past the limit (RATE_LIMITED `connections` and 4029), admin requests that must be refused
(restart from /dev/zero, /etc/passwd, a FIFO, `../` paths; bodies nested 100,000 deep,
not UTF-8; steps, speeds and faults out of bounds: a 4xx each; nothing that would restart,
step or pause the simulation) and malformed HTTP (a request line over 8 KB with a token in
its query, a header over 8 KB, duplicate Host, a foreign Host on /api/token...: a 4xx).
Any other answer (a 5xx, INTERNAL_ERROR, an undocumented close code, a drop where a close
was due, a silent client not reaped) is listed and makes the exit status 1, as does a
Traceback / "Error handling request" / Exception line in the server's log, a token of an
over-long request line found in it, the server's RSS growing (the mean of the last third of
the samples above the middle third's by more than max(10 MiB, 10%)), or abusive
connections left over at the end.

Traffic goes to 127.0.0.1 only; every loop is bounded by a deadline; the server is
stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import re
import secrets
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import jwt

ROOT = Path(__file__).resolve().parents[1]
CHANNELS = ("experiments", "metrics", "agents", "deployments", "alerts", "cost-flow")
SEED = 7
START = "2024-01-20T10:00:00Z"
EVT = '{"id":"evt-'
AFTER_ID = '","type":"event","channel":"'
BACKOFF_FIRST, BACKOFF_CAP = 1.0, 30.0
GRACE = 5.0  # wall seconds after a fault ends that its effects may still arrive
SAMPLE_EVERY = 10.0
WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0)


# --- the server under test -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Server:
    """`phoenix serve` in a temporary directory, stopped by PID."""

    def __init__(self, args: argparse.Namespace, sim_seconds: float) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="phoenix-soak-"))
        self.port = free_port()
        self.secret = secrets.token_hex(32)
        demo = (ROOT / "simulator" / "scenarios" / "demo.yaml").read_text()
        minutes = int(sim_seconds // 60) + 1
        stretched, n = re.subn(r"(?m)^duration: .*$", f"duration: {max(15, minutes)}m", demo)
        assert n == 1, "demo.yaml has no top-level duration"
        (self.tmp / "soak-demo.yaml").write_text(stretched)
        (self.tmp / "config.yaml").write_text(
            "server: {access_log: false}\n"
            f"limits: {{connections_per_user: {PER_USER if args.abusive else args.clients + 10}}}\n"
            f"websocket: {{heartbeat: {args.heartbeat:g}}}\n"
            f"history: {{max_events: {args.history_events}, max_age: {args.history_age}}}\n"
        )
        cmd = [
            sys.executable,
            "-m",
            "phoenix",
            "serve",
            "--config",
            str(self.tmp / "config.yaml"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--scenario",
            str(self.tmp / "soak-demo.yaml"),
            "--seed",
            str(SEED),
            "--start",
            START,
            "--speed",
            f"{args.speed:g}",
        ]
        if args.agents_rate:
            cmd += ["--rate", f"agents={args.agents_rate:g}/s"]
        self.cmd = cmd
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHOENIX_")}
        env["PHOENIX_JWT_SECRET"] = self.secret
        self.log_path = self.tmp / "server.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.base = f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def token(self, sub: str, ttl: float, role: str = "viewer") -> str:
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + int(ttl), "role": role}
        return jwt.encode(claims, self.secret, algorithm="HS256")

    async def wait_ready(self, session: aiohttp.ClientSession, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited early; see {self.log_path}")
            try:
                async with session.get(self.base + "/health") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit("server not ready in time")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


# --- faults ----------------------------------------------------------------------------


@dataclass
class FaultRun:
    name: str
    body: dict[str, Any]
    wall: float  # wall seconds the fault lasts (0: instant)
    at: float = 0.0  # monotonic time it was injected
    status: int = 0

    def covers(self, t: float, kinds: tuple[str, ...]) -> bool:
        return self.body["type"] in kinds and self.at <= t <= self.at + self.wall + GRACE


def schedule(span: float, speed: float) -> list[tuple[float, FaultRun]]:
    """One fault at a time, evenly over `span` wall seconds; durations are simulated
    seconds on the wire (wall seconds x speed)."""
    plan: list[tuple[str, str, dict[str, Any], float]] = [
        ("latency 200+-80ms", "latency", {"delay_ms": 200, "jitter_ms": 80}, 30),
        ("duplicate p=0.1", "duplicate", {"probability": 0.1}, 30),
        ("close 30% (1001)", "close_connections", {"share": 0.3, "code": 1001}, 0),
        ("reorder window 5", "reorder", {"window": 5}, 30),
        ("pause_delivery", "pause_delivery", {}, 15),
        ("close user soak-7", "close_connections", {"user": "soak-7", "code": 1011}, 0),
        ("burst count 50", "burst", {"count": 50}, 30),
        ("close 20% abrupt", "close_connections", {"share": 0.2, "abrupt": True}, 0),
        ("token storm 30%", "token_expiry_storm", {"share": 0.3}, 20),
        (
            "close alerts subs 25%",
            "close_connections",
            {"channel": "alerts", "share": 0.25, "code": 4000},
            0,
        ),
        ("server_restart", "server_restart", {}, 10),
        ("latency exp 100ms", "latency", {"delay_ms": 100, "distribution": "exponential"}, 20),
    ]
    gap = span / len(plan)
    out = []
    for i, (name, kind, params, wall) in enumerate(plan):
        wall = min(float(wall), 0.6 * gap)
        body: dict[str, Any] = {"type": kind}
        if params:
            body["params"] = params
        if wall:
            body["duration"] = f"{max(1, round(wall * speed))}s"
        out.append((i * gap, FaultRun(name, body, wall)))
    return out


# --- clients ---------------------------------------------------------------------------


@dataclass
class Shared:
    server: Server
    session: aiohttp.ClientSession
    start_id: int  # every client's window starts after this id
    deadline: float  # monotonic: nothing runs past it
    ttl: float
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    faults: list[FaultRun] = field(default_factory=list)
    t0: float = 0.0
    heartbeat: float = 30.0

    def fault_on(self, kinds: tuple[str, ...]) -> bool:
        now = time.monotonic()
        return any(f.covers(now, kinds) for f in self.faults)


class Client:
    def __init__(self, sub: str, shared: Shared) -> None:
        self.sub = sub
        self.sh = shared
        self.base = shared.start_id + 1
        self.got = bytearray()  # got[id - base]: times received (capped at 255)
        self.top = shared.start_id  # highest id received
        self.last: dict[str, int] = {}  # channel -> last id received on it
        self.token = shared.server.token(sub, shared.ttl)
        self.connected = False
        self.subscribed_once = False
        self.gaps: list[list[int]] = []  # [after, upto]: non-recovered resumes
        self.open_gap: list[int] | None = None
        self.counts: dict[str, int] = {}
        self.closes: dict[str, int] = {}
        self.dup_live = self.dup_fault = self.dup_resume = 0
        self.ooo_fault = self.ooo_other = 0
        self.oddities: list[str] = []  # the first few unexplained duplicates / reorderings
        self.before_window = 0

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def odd(self, what: str) -> None:
        if len(self.oddities) < 3:
            self.oddities.append(f"{time.monotonic() - self.sh.t0:.1f}s {what}")

    def since(self) -> dict[str, str]:
        # Per channel the last id received on it; a channel with nothing yet resumes from
        # the highest id received (nothing on it came before that, ids being in order).
        return {ch: f"evt-{self.last.get(ch, self.top)}" for ch in CHANNELS}

    async def run(self) -> None:
        backoff = BACKOFF_FIRST
        attempts = 0
        while not self.sh.stop.is_set() and time.monotonic() < self.sh.deadline:
            attempts += 1
            if attempts > 10_000:
                self.count("gave up")
                return
            subscribed, expired = await self._session()
            if subscribed:
                backoff = BACKOFF_FIRST  # it connected and subscribed: start over
            if self.sh.stop.is_set():
                return
            if expired:
                self.token = self.sh.server.token(self.sub, self.sh.ttl)
                self.count("token refreshed")
            delay = backoff * (1 + 0.25 * random.random())
            backoff = min(backoff * 2, BACKOFF_CAP)
            try:
                await asyncio.wait_for(self.sh.stop.wait(), delay)
            except TimeoutError:
                pass

    async def _session(self) -> tuple[bool, bool]:
        """One connection: (whether it subscribed, whether its token was refused as expired)."""
        sh = self.sh
        url = f"{sh.server.base}/ws?token={self.token}"
        try:
            ws = await sh.session.ws_connect(url, autoping=True, heartbeat=None, timeout=WS_TIMEOUT)
        except aiohttp.WSServerHandshakeError as exc:
            self.count(f"connect refused {exc.status}")
            return False, False
        except (aiohttp.ClientError, OSError, TimeoutError):
            self.count("connect failed")
            return False, False
        subscribed = expired = False
        top_at_connect = self.top
        conn_max = 0
        try:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "subscribe",
                        "id": "soak",
                        "channels": list(CHANNELS),
                        "since": self.since(),
                    }
                )
            )
            got, base = self.got, self.base
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                s = msg.data
                if s.startswith(EVT):
                    j = s.index('"', 11)
                    n = int(s[11:j])
                    k = j + len(AFTER_ID)
                    ch = s[k : s.index('"', k)]
                    i = n - base
                    if i < 0:
                        self.before_window += 1
                        continue
                    if i >= len(got):
                        got.extend(bytes(max(i + 1 - len(got), 4096)))
                    if got[i]:
                        if n <= top_at_connect:
                            self.dup_resume += 1
                        elif sh.fault_on(("duplicate",)):
                            self.dup_fault += 1
                        else:
                            self.dup_live += 1
                            self.odd(f"duplicate evt-{n} on {ch}")
                        if got[i] < 255:
                            got[i] += 1
                        continue
                    got[i] = 1
                    if n < conn_max:
                        if sh.fault_on(("reorder",)):
                            self.ooo_fault += 1
                        else:
                            self.ooo_other += 1
                            self.odd(f"evt-{n} on {ch} after evt-{conn_max}")
                    else:
                        conn_max = n
                    self.last[ch] = n
                    if n > self.top:
                        self.top = n
                    if self.open_gap is not None:
                        self.open_gap[1] = n
                        self.gaps.append(self.open_gap)
                        self.open_gap = None
                    continue
                frame = json.loads(s)
                if frame.get("type") == "response":
                    self.connected = True
                    self.subscribed_once = True
                    subscribed = True
                    if frame.get("recovered") is False:
                        self.count("resume not recovered")
                        if self.open_gap is None:
                            self.open_gap = [self.top, 0]
                    elif frame.get("recovered"):
                        self.count("resume recovered")
                elif frame.get("type") == "error":
                    err = frame.get("error") or {}
                    reason = (err.get("details") or {}).get("reason")
                    self.count(f"error {err.get('code')}{'/' + reason if reason else ''}")
                    if reason == "expired":
                        expired = True
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            self.count(f"session error {type(exc).__name__}")
        finally:
            self.connected = False
            if not ws.closed:
                await ws.close()
            code = ws.close_code
            self.closes[str(code)] = self.closes.get(str(code), 0) + 1
            if code == 4001:
                expired = True
        return subscribed, expired

    # --- after the run ---

    def have(self, n: int) -> bool:
        i = n - self.base
        return 0 <= i < len(self.got) and self.got[i] > 0

    def in_gap(self, n: int) -> bool:
        for after, upto in self.gaps:
            if after < n < upto:
                return True
        gap = self.open_gap
        return gap is not None and n > gap[0]


# --- abusive clients -------------------------------------------------------------------

# Close codes the server documents (README, "Close codes"); 1000 only answers our own close.
DOCUMENTED_CLOSES = {1000, 1001, 1009, 1012, 1013, 4001, 4029}
ABUSE_KINDS = ("flood", "malformed", "badtoken", "conns", "admin", "http")
MAX_BYTES = 65536  # limits.max_message_bytes (the default; the soak's config keeps it)
PER_USER = 10  # limits.connections_per_user while abusive clients run
SOAK_CODES = {1011, 4000}  # codes this soak's own close_connections faults use
CLOSING_FAULTS = ("close_connections", "token_expiry_storm", "server_restart")


class Drop(Exception):
    """The server ended the TCP connection (EOF or reset) without a close frame."""


class RawWS:
    """A minimal WebSocket client over a raw socket: frames exactly as written, and no
    reading behind our back (so a client can really go silent)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str) -> tuple[int, RawWS | None]:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            status = int(head.split(b" ", 2)[1])
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            status = 0
        if status != 101:
            writer.close()
            return status, None
        return status, cls(reader, writer)

    def send(self, payload: bytes | str, opcode: int = 1) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        if n:
            key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
            data = (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")
        self.writer.write(head + mask + data)

    async def frame(self, timeout: float) -> tuple[int, bytes]:
        """The next frame (opcode, payload); Drop at EOF or reset, TimeoutError."""

        async def read() -> tuple[int, bytes]:
            h = await self.reader.readexactly(2)
            n = h[1] & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            if h[1] & 0x80:
                await self.reader.readexactly(4)  # a masked server frame: read past it
            return h[0] & 0x0F, await self.reader.readexactly(n)

        try:
            return await asyncio.wait_for(read(), timeout)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Drop() from exc

    async def reply(self, timeout: float = 10.0) -> dict[str, Any] | int:
        """The next text frame as JSON, or the close code (answering pings on the way)."""
        deadline = time.monotonic() + timeout
        while True:
            op, data = await self.frame(max(0.01, deadline - time.monotonic()))
            if op == 1:
                return json.loads(data)
            if op == 8:
                code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                self.close_quietly()
                return code
            if op == 9:
                self.send(data, 10)

    async def close(self) -> None:
        """Our close handshake (1000), bounded."""
        try:
            self.send(struct.pack("!H", 1000), 8)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                op, _ = await self.frame(deadline - time.monotonic())
                if op == 8:
                    break
        except (Drop, TimeoutError, OSError):
            pass
        self.close_quietly()

    def close_quietly(self) -> None:
        try:
            self.writer.close()
        except OSError:
            pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_token(secret: str, payload: str, header: str = '{"alg":"HS256","typ":"JWT"}') -> str:
    """A JWT around a payload written by hand (NaN, 400-digit numbers...), HS256-signed."""
    signing = f"{b64url(header.encode())}.{b64url(payload.encode())}"
    sig = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{b64url(sig)}"


class Abuse:
    """What the abusive clients did and got: counts per action, and the unexpected."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.unexpected: dict[str, int] = {}
        self.examples: list[str] = []
        self.tokens_in_urls: list[str] = []  # must never show in the server's log

    def count(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def bad(self, key: str, detail: str) -> None:
        self.unexpected[key] = self.unexpected.get(key, 0) + 1
        if len(self.examples) < 20:
            self.examples.append(f"{key}: {detail}"[:300])

    def check(self, key: str, ok: bool, detail: Any) -> bool:
        self.count(key)
        if not ok:
            self.bad(key, str(detail))
        return ok


def error_code(r: dict[str, Any] | int) -> str | None:
    return (r.get("error") or {}).get("code") if isinstance(r, dict) else None


class Abuser:
    def __init__(self, i: int, kind: str, sh: Shared, abuse: Abuse, until: float) -> None:
        self.i, self.kind, self.sh, self.ab, self.until = i, kind, sh, abuse, until
        self.port = sh.server.port
        self.heartbeat = sh.heartbeat

    def live(self) -> bool:
        return not self.sh.stop.is_set() and time.monotonic() < self.until

    async def run(self) -> None:
        await asyncio.sleep(random.random() * 3)  # not all at once
        step = getattr(self, self.kind)
        for cycle in range(10_000):
            if not self.live():
                return
            started = time.monotonic()
            try:
                await step(cycle)
            except (OSError, TimeoutError, Drop, asyncio.IncompleteReadError) as exc:
                if not self.faulted(f"{type(exc).__name__}", started):
                    self.ab.bad(f"{self.kind}: cycle failed", f"{type(exc).__name__} {exc}")
            await asyncio.sleep(0.2 + 0.3 * random.random())

    def faulted(self, what: Any, since: float | None = None) -> bool:
        """Whether one of the soak's closing faults is on (plus GRACE), or was at any time
        after `since`: then a close or a drop is the fault's doing, counted but not held
        against the server."""
        now = time.monotonic()
        since = now if since is None else since
        if any(
            f.body["type"] in CLOSING_FAULTS and f.at <= now and f.at + f.wall + GRACE >= since
            for f in self.sh.faults
        ):
            self.ab.count(f"{self.kind}: closed by a soak fault ({what})")
            return True
        return False

    def opened(self, key: str, status: int) -> bool:
        """Whether the upgrade went through; a 503 (the server_restart fault) is fine."""
        if status == 503:
            self.ab.count(f"{self.kind}: refused 503 (server_restart fault)")
        elif status != 101:
            self.ab.bad(key, f"HTTP {status}")
        return status == 101

    async def ws(self, sub: str) -> tuple[int, RawWS | None]:
        token = self.sh.server.token(sub, 3600)
        return await RawWS.connect(self.port, f"/ws?token={token}")

    async def expect_close(self, ws: RawWS, key: str, codes: set[int], timeout: float) -> None:
        """Read (and count the RATE_LIMITED / errors) until a close with one of `codes`."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                r = await ws.reply(max(0.01, deadline - time.monotonic()))
                if isinstance(r, int):
                    if r in codes or not self.faulted(r):
                        self.ab.check(f"{key} -> close {r}", r in codes, f"close {r}")
                    return
                code = error_code(r)
                if code:
                    self.ab.count(f"{key}: {code}")
                    if code == "INTERNAL_ERROR":
                        self.ab.bad(key, json.dumps(r))
        except Drop:
            if not self.faulted("drop"):
                self.ab.bad(key, "connection dropped without a close frame")
        except TimeoutError:
            self.ab.bad(key, f"no close within {timeout:g} s")
        ws.close_quietly()

    # Ping flooders: app pings at the limit, then past it (4029); WebSocket pings by the
    # thousand, then silence without reading on PER_USER connections, which the heartbeat
    # must reap (and the next cycle finds their slots free).
    async def flood(self, cycle: int) -> None:
        sub = f"abuse-flood-{self.i}"
        status, ws = await self.ws(sub)
        if not self.opened("flood: connect", status):
            return
        assert ws is not None
        for k in range(100):  # one second's worth: the bucket's burst
            ws.send(f'{{"type":"ping","id":"p{k}"}}')
        pongs = limited = 0
        for _ in range(100):
            r = await ws.reply()
            if isinstance(r, int):
                if not self.faulted(r):
                    self.ab.bad("flood: pings at the limit", f"closed {r}")
                return
            pongs += r.get("type") == "pong"
            limited += error_code(r) == "RATE_LIMITED"
        self.ab.count("flood: pings answered", pongs)
        self.ab.count("flood: pings at the limit RATE_LIMITED", limited)
        for k in range(600):  # past the limit: RATE_LIMITED, then 4029
            ws.send(f'{{"type":"ping","id":"q{k}"}}')
        await self.expect_close(ws, "flood: past the limit", {4029}, 20)
        # Silent ones.
        silent: list[RawWS] = []
        for k in range(PER_USER):
            status, ws = await self.ws(sub)
            if not self.opened("flood: silent connect", status):
                continue
            assert ws is not None
            try:  # a refusal (no free slot) comes at once
                r = await ws.reply(0.3)
                self.ab.bad("flood: slot not freed", json.dumps(r) if isinstance(r, dict) else r)
                ws.close_quietly()
                continue
            except TimeoutError:
                pass
            if k % 2:
                ws.send(json.dumps({"type": "subscribe", "id": "s", "channels": list(CHANNELS)}))
            for _ in range(1000):
                ws.send(b"flood", 9)  # WebSocket pings; we never read the pongs
            silent.append(ws)
        self.ab.count("flood: went silent", len(silent))
        quiet = 1.5 * self.heartbeat + 10
        t = time.monotonic()
        while time.monotonic() < t + quiet and not self.sh.stop.is_set():
            await asyncio.sleep(1)
        if time.monotonic() < t + quiet:
            for ws in silent:
                ws.close_quietly()
            return
        for ws in silent:  # by now the server must have dropped each one
            how = await self.drain(ws, 20)
            self.ab.check(f"flood: silent -> {how}", how != "still open", "not reaped")
            ws.close_quietly()

    async def drain(self, ws: RawWS, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        try:
            while True:
                op, data = await ws.frame(max(0.01, deadline - time.monotonic()))
                if op == 8:
                    code = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 1005
                    if code not in DOCUMENTED_CLOSES | SOAK_CODES:
                        self.ab.bad("flood: silent", f"close {code}")
                    return f"close {code}"
        except Drop:
            return "dropped (reaped)"
        except TimeoutError:
            return "still open"

    # Malformed frames: each gets one INVALID_MESSAGE (or the pong), then 1009 for a frame
    # one byte over the limit.
    async def malformed(self, cycle: int) -> None:
        status, ws = await self.ws(f"abuse-bad-{self.i}")
        if not self.opened("malformed: connect", status):
            return
        assert ws is not None
        exact = '{"type":"ping","id":"exact"}'
        exact += " " * (MAX_BYTES - len(exact))
        deep = "[" * 20_000 + "]" * 20_000
        frames: list[tuple[str, bytes | str, int, str]] = [
            ("invalid JSON", "{not json", 1, "INVALID_MESSAGE"),
            ("non-object", "[1, 2, 3]", 1, "INVALID_MESSAGE"),
            ("non-object", '"ping"', 1, "INVALID_MESSAGE"),
            ("non-object", "null", 1, "INVALID_MESSAGE"),
            ("unknown type", '{"type":"nope","id":"u"}', 1, "INVALID_MESSAGE"),
            ("surrogate id", '{"type":"ping","id":"\\ud800"}', 1, "INVALID_MESSAGE"),
            (
                "surrogate channel",
                '{"type":"subscribe","id":"c","channels":["\\udfff"]}',
                1,
                "INVALID_MESSAGE",
            ),
            (
                "since evt-²",
                '{"type":"subscribe","id":"s","channels":["alerts"],'
                '"since":{"alerts":"evt-\u00b2"}}',
                1,
                "INVALID_MESSAGE",
            ),
            (
                "since fullwidth",
                '{"type":"subscribe","id":"f","channels":["alerts"],'
                '"since":{"alerts":"evt-\uff11\uff12"}}',
                1,
                "INVALID_MESSAGE",
            ),
            ("id too long", json.dumps({"type": "ping", "id": "x" * 200}), 1, "INVALID_MESSAGE"),
            ("binary frame", b"\x00\xff\xfe", 2, "INVALID_MESSAGE"),
            ("deep nesting", deep, 1, "INVALID_MESSAGE"),
            ("exactly max bytes", exact, 1, "pong"),
        ]
        for name, payload, opcode, want in frames:
            ws.send(payload, opcode)
            r = await ws.reply()
            if isinstance(r, int):
                if not self.faulted(r):
                    self.ab.bad(f"malformed: {name}", f"closed {r}")
                return
            got = "pong" if r.get("type") == "pong" else error_code(r)
            detail = json.dumps(r)[:200]
            self.ab.check(f"malformed: {name} -> {want}", got == want, detail)
            if name.startswith("surrogate") and "id" in r and r["id"] != "c":
                self.ab.bad(f"malformed: {name}", f"echoed id {detail}")
        ws.send(exact + " ")  # one byte over
        await self.expect_close(ws, "malformed: max bytes + 1", {1009}, 10)

    # Bad tokens: each completes the upgrade, gets UNAUTHORIZED and close 4001.
    async def badtoken(self, cycle: int) -> None:
        secret = self.sh.server.secret
        now = int(time.time())
        sub = f"abuse-tok-{self.i}"
        big = "9" * 400
        tokens = {
            "garbage": "garbage",
            "three dots": "a.b.c",
            "empty": "",
            "expired": self.sh.server.token(sub, -60),
            "wrong secret": jwt.encode({"sub": sub, "exp": now + 60}, "x" * 32, "HS256"),
            "alg none": hand_token("", f'{{"sub":"{sub}","exp":{now + 60}}}', '{"alg":"none"}'),
            "exp NaN": hand_token(secret, f'{{"sub":"{sub}","exp":NaN}}'),
            "exp Infinity": hand_token(secret, f'{{"sub":"{sub}","exp":Infinity}}'),
            "exp -Infinity": hand_token(secret, f'{{"sub":"{sub}","exp":-Infinity}}'),
            "exp 400 digits": hand_token(secret, f'{{"sub":"{sub}","exp":{big}}}'),
            "exp 1e400": hand_token(secret, f'{{"sub":"{sub}","exp":1e400}}'),
            "iat 400 digits": hand_token(secret, f'{{"sub":"{sub}","exp":{now + 60},"iat":{big}}}'),
            "exp string": hand_token(secret, f'{{"sub":"{sub}","exp":"{now + 60}"}}'),
            "no sub": hand_token(secret, f'{{"exp":{now + 60}}}'),
            "sub 300 chars": hand_token(secret, f'{{"sub":"{"s" * 300}","exp":{now + 60}}}'),
            "payload not JSON": hand_token(secret, "{sub"),
        }
        for name, token in tokens.items():
            if not self.live():
                return
            status, ws = await RawWS.connect(self.port, f"/ws?token={token}")
            if ws is None:
                self.opened(f"badtoken: {name}", status)
                continue
            r = await ws.reply()
            ok = error_code(r) == "UNAUTHORIZED"
            if self.ab.check(f"badtoken: {name} -> UNAUTHORIZED", ok, r):
                reason = ((r.get("error") or {}).get("details") or {}).get("reason")
                self.ab.count(f"badtoken: reason {reason}")
                await self.expect_close(ws, "badtoken", {4001}, 10)
            else:
                ws.close_quietly()
            await asyncio.sleep(0.05 + 0.1 * random.random())

    # One user, more connections than allowed: the extra ones get RATE_LIMITED and 4029.
    async def conns(self, cycle: int) -> None:
        sub = f"abuse-conns-{self.i}"
        held: list[RawWS] = []
        try:
            for _ in range(PER_USER):
                status, ws = await self.ws(sub)
                if not self.opened("conns: within the limit", status):
                    continue
                assert ws is not None
                held.append(ws)
                ws.send('{"type":"ping","id":"in"}')
                r = await ws.reply()
                if isinstance(r, int) and self.faulted(r):
                    continue
                self.ab.check(
                    "conns: within the limit -> pong",
                    isinstance(r, dict) and r.get("type") == "pong",
                    r,
                )
            for _ in range(3):
                status, ws = await self.ws(sub)
                if ws is None:
                    self.opened("conns: over the limit", status)
                    continue
                r = await ws.reply()
                details = (r.get("error") or {}).get("details") if isinstance(r, dict) else None
                ok = (
                    error_code(r) == "RATE_LIMITED"
                    and (details or {}).get("limit") == "connections"
                )
                if self.ab.check("conns: over the limit -> RATE_LIMITED", ok, r):
                    await self.expect_close(ws, "conns: over the limit", {4029}, 10)
                else:
                    ws.close_quietly()
        finally:
            for ws in held:
                await ws.close()
        await asyncio.sleep(0.5)

    # Admin abuse over HTTP: every request must be refused with a 4xx.
    async def admin(self, cycle: int) -> None:
        sv = self.sh.server
        admin = {"Authorization": f"Bearer {sv.token('abuse-admin', 3600, 'admin')}"}
        viewer = {"Authorization": f"Bearer {sv.token('abuse-viewer', 3600)}"}
        fifo = sv.tmp / "fifo.yaml"
        if not fifo.exists():
            os.mkfifo(fifo)
        big = "9" * 400

        def restart(path: str) -> bytes:
            return json.dumps({"action": "restart", "scenario": path}).encode()

        reqs: list[tuple[str, str, bytes, dict[str, str], set[int]]] = [
            ("restart /dev/zero", "/api/sim", restart("/dev/zero"), admin, {400}),
            ("restart /etc/passwd", "/api/sim", restart("/etc/passwd"), admin, {400}),
            ("restart FIFO", "/api/sim", restart(str(fifo)), admin, {400}),
            ("restart ../", "/api/sim", restart("../../../../etc/passwd"), admin, {400}),
            ("restart ../yaml", "/api/sim", restart("../../../../dev/zero.yaml"), admin, {400}),
            ("restart /proc", "/api/sim", restart("/proc/self/environ"), admin, {400}),
            ("restart long name", "/api/sim", restart("a" * 5000), admin, {400}),
            ("step 1e9", "/api/sim", b'{"action":"step","seconds":1000000000}', admin, {400}),
            ("step NaN", "/api/sim", b'{"action":"step","seconds":NaN}', admin, {400}),
            (
                "step 400 digits",
                "/api/sim",
                f'{{"action":"step","seconds":{big}}}'.encode(),
                admin,
                {400},
            ),
            ("speed 0", "/api/sim", b'{"action":"speed","speed":0}', admin, {400}),
            ("speed Infinity", "/api/sim", b'{"action":"speed","speed":Infinity}', admin, {400}),
            ("unknown action", "/api/sim", b'{"action":"explode"}', admin, {400}),
            ("nested 100k", "/api/sim", b"[" * 100_000 + b"]" * 100_000, admin, {400}),
            ("nested objects", "/api/sim", b'{"a":' * 50_000 + b"1" + b"}" * 50_000, admin, {400}),
            ("non-UTF-8", "/api/sim", b'{"action":"\xff\xfe"}', admin, {400}),
            ("not an object", "/api/sim", b'"pause"', admin, {400}),
            ("viewer pause", "/api/sim", b'{"action":"pause"}', viewer, {403}),
            ("no token pause", "/api/sim", b'{"action":"pause"}', {}, {401}),
            (
                "fault burst 1e12",
                "/api/sim/faults",
                b'{"type":"burst","params":{"count":1000000000000}}',
                admin,
                {400},
            ),
            (
                "fault reorder window",
                "/api/sim/faults",
                b'{"type":"reorder","params":{"window":100001},"duration":"10s"}',
                admin,
                {400},
            ),
            (
                "fault latency 99999h",
                "/api/sim/faults",
                b'{"type":"latency","duration":"99999h"}',
                admin,
                {400},
            ),
            (
                "fault pause 400 digits",
                "/api/sim/faults",
                f'{{"type":"pause_delivery","duration":"{big}s"}}'.encode(),
                admin,
                {400},
            ),
            (
                "fault delay 1e400",
                "/api/sim/faults",
                b'{"type":"latency","params":{"delay_ms":1e400},"duration":"5s"}',
                admin,
                {400},
            ),
            ("fault unknown type", "/api/sim/faults", b'{"type":"meteor"}', admin, {400}),
            ("fault as viewer", "/api/sim/faults", b'{"type":"burst"}', viewer, {403}),
        ]
        for name, path, body, headers, want in reqs:
            if not self.live():
                return
            hdrs = {"Content-Type": "application/json", **headers}
            try:
                async with self.sh.session.post(sv.base + path, data=body, headers=hdrs) as r:
                    status = r.status
                    text = await r.text(errors="replace")
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.ab.bad(f"admin: {name}", f"{type(exc).__name__} {exc}")
                continue
            ok = 400 <= status < 500 and "INTERNAL" not in text
            note = "" if status in want or status == 401 else f" (documented: {min(want)})"
            self.ab.check(f"admin: {name} -> {status}{note}", ok, f"{status} {text[:150]}")
            await asyncio.sleep(0.05 + 0.1 * random.random())

    # Malformed HTTP over raw sockets: a 4xx (or a closed connection), never a 5xx or a
    # token in the log.
    async def http(self, cycle: int) -> None:
        token = self.sh.server.token(f"abuse-http-{self.i}-{cycle}", 3600)
        self.ab.tokens_in_urls.append(token)
        long_line = f"GET /ws?token={token}&pad={'A' * 9000} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        reqs = [
            ("request line > 8 KB with token", long_line),
            (
                "header > 8 KB",
                f"GET /health?token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"X-Pad: {'B' * 9000}\r\n\r\n",
            ),
            (
                "duplicate Host /health",
                "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
            ),
            (
                "duplicate Host /api/token",
                "POST /api/token HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n"
                "Content-Length: 0\r\n\r\n",
            ),
            (
                "foreign Host /api/token",
                "POST /api/token HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 0\r\n\r\n",
            ),
            ("garbage request line", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"),
            (
                "bad Content-Length",
                "POST /api/sim HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: -1\r\n\r\n",
            ),
        ]
        for name, raw in reqs:
            if not self.live():
                return
            status = await self.raw_http(raw.encode("latin-1"))
            if status == 0:
                self.ab.count(f"http: {name} -> closed without a response")
            else:
                ok = 400 <= status < 500 or (status == 200 and name.endswith("/health"))
                self.ab.check(f"http: {name} -> {status}", ok, f"HTTP {status}")
            await asyncio.sleep(0.05 + 0.1 * random.random())

    async def raw_http(self, raw: bytes) -> int:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 10)
        try:
            writer.write(raw)
            line = await asyncio.wait_for(reader.readline(), 10)
            parts = line.split(b" ", 2)
            return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        except (ConnectionError, asyncio.IncompleteReadError):
            return 0
        finally:
            writer.close()


def scan_log(path: Path, tokens: list[str]) -> tuple[int, list[str], int, int]:
    """Lines that look like a traceback or an unhandled error (how many, the first few),
    tokens leaked, ERROR / CRITICAL lines."""
    bad = []
    text = path.read_text(errors="replace")
    for line in text.splitlines():
        if "Traceback" in line or "Error handling request" in line or "Exception" in line:
            bad.append(line)
    leaked = sum(1 for t in tokens if t.split(".")[-1] in text)
    errors = sum(1 for line in text.splitlines() if " ERROR " in line or " CRITICAL " in line)
    return len(bad), bad[:5], leaked, errors


# --- monitoring ------------------------------------------------------------------------


METRIC_RE = re.compile(r"^(phoenix_[a-z_]+)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$", re.M)


async def scrape(sh: Shared) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        async with sh.session.get(sh.server.base + "/metrics") as r:
            text = await r.text()
    except (aiohttp.ClientError, OSError, TimeoutError):
        return out
    for name, labels, value in METRIC_RE.findall(text):
        key = name + (labels or "")
        out[key] = float(value)
        if labels:  # also the sum over labels
            out[name] = out.get(name, 0.0) + float(value)
    return out


@dataclass
class Sample:
    t: float
    rss: int
    client_rss: int
    conns: float
    clients_up: int
    queue_total: float
    queue_max: float
    slow: float
    faults_active: float
    published: float
    lag: float
    server_cpu: float
    client_cpu: float
    loop_lag_ms: float


HEADER = (
    f"{'t(s)':>6} {'RSS MiB':>8} {'cli MiB':>8} {'conns':>6} {'up':>5} {'queue':>7} "
    f"{'qmax':>5} {'1013s':>5} {'faults':>6} {'events':>8} {'lag s':>6} "
    f"{'srv cpu':>7} {'cli cpu':>7} {'loop ms':>7}"
)


def row(s: Sample) -> str:
    return (
        f"{s.t:6.0f} {s.rss / 1024:8.1f} {s.client_rss / 1024:8.1f} {s.conns:6.0f} "
        f"{s.clients_up:5d} {s.queue_total:7.0f} {s.queue_max:5.0f} {s.slow:5.0f} "
        f"{s.faults_active:6.0f} {s.published:8.0f} {s.lag:6.2f} {s.server_cpu:6.0f}% "
        f"{s.client_cpu:6.0f}% {s.loop_lag_ms:7.1f}"
    )


class Monitor:
    def __init__(self, sh: Shared, clients: list[Client], t0: float) -> None:
        self.sh, self.clients, self.t0 = sh, clients, t0
        self.samples: list[Sample] = []
        self.loop_lag = 0.0
        self._cpu = (time.monotonic(), cpu_seconds(sh.server.pid), cpu_seconds(os.getpid()))

    async def watch_loop(self) -> None:
        """How late this process's event loop wakes up: the clients' own headroom."""
        while not self.sh.stop.is_set() and time.monotonic() < self.sh.deadline:
            t = time.monotonic()
            await asyncio.sleep(0.2)
            self.loop_lag = max(self.loop_lag, time.monotonic() - t - 0.2)

    async def sample(self) -> Sample:
        m = await scrape(self.sh)
        now = time.monotonic()
        srv, cli = cpu_seconds(self.sh.server.pid), cpu_seconds(os.getpid())
        t_prev, srv_prev, cli_prev = self._cpu
        self._cpu = (now, srv, cli)
        dt = max(1e-6, now - t_prev)
        s = Sample(
            t=now - self.t0,
            rss=rss_kib(self.sh.server.pid),
            client_rss=rss_kib(os.getpid()),
            conns=m.get("phoenix_connections", float("nan")),
            clients_up=sum(c.connected for c in self.clients),
            queue_total=m.get('phoenix_outbound_queue{stat="total"}', float("nan")),
            queue_max=m.get('phoenix_outbound_queue{stat="max"}', float("nan")),
            slow=m.get("phoenix_slow_consumer_closes_total", 0.0),
            faults_active=m.get("phoenix_faults_active", 0.0),
            published=m.get("phoenix_events_published_total", 0.0),
            lag=m.get("phoenix_sim_lag_seconds", 0.0),
            server_cpu=100 * (srv - srv_prev) / dt,
            client_cpu=100 * (cli - cli_prev) / dt,
            loop_lag_ms=1000 * self.loop_lag,
        )
        self.loop_lag = 0.0
        self.samples.append(s)
        print(row(s), flush=True)
        return s

    async def run(self, until: float) -> None:
        print(HEADER, flush=True)
        await self.sample()
        while time.monotonic() < min(until, self.sh.deadline):
            await asyncio.sleep(min(SAMPLE_EVERY, max(0.0, until - time.monotonic())))
            await self.sample()


# --- the run ---------------------------------------------------------------------------


async def api(sh: Shared, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {sh.server.token('soak-admin', 3600, 'admin')}"}
    try:
        async with sh.session.request(
            method, sh.server.base + path, json=body, headers=headers
        ) as r:
            return r.status, await r.json(content_type=None)
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
        return 0, str(exc)


async def inject(sh: Shared, plan: list[tuple[float, FaultRun]], t0: float) -> None:
    for offset, fault in plan:
        wait = t0 + offset - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        if sh.stop.is_set() or time.monotonic() > sh.deadline:
            return
        fault.at = time.monotonic()
        sh.faults.append(fault)  # before the POST: its effects may arrive before its reply
        fault.status, _ = await api(sh, "POST", "/api/sim/faults", fault.body)
        print(
            f"  [{fault.at - t0:6.1f}s] fault {fault.name}: {json.dumps(fault.body)} "
            f"-> {fault.status}",
            flush=True,
        )


def last_id(state: Any) -> int:
    value = state.get("last_event_id") if isinstance(state, dict) else None
    return int(value[4:]) if value else 0


async def soak(args: argparse.Namespace) -> int:
    run_s = args.minutes * 60.0
    tail = min(90.0, max(20.0, run_s * 0.15))  # no faults: everyone reconnects, catches up
    lead = min(30.0, max(5.0, run_s * 0.05))
    sim_seconds = (run_s + 600) * args.speed
    server = Server(args, sim_seconds)
    print(f"server: {' '.join(server.cmd[2:])}  (pid {server.pid}, dir {server.tmp})")
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10)
    hard_deadline = time.monotonic() + run_s + 240
    code = 2
    abuse = Abuse()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        try:
            await server.wait_ready(session)
            sh = Shared(server, session, 0, hard_deadline, ttl=run_s + 3600)
            sh.heartbeat = args.heartbeat
            # Wait for the first events, then fix the window: every client subscribes
            # with since = this id, so it must get everything after it.
            for _ in range(100):
                status, state = await api(sh, "GET", "/api/sim")
                if last_id(state):
                    break
                await asyncio.sleep(0.1)
            sh.start_id = last_id(state)
            oracle = Client("oracle", sh)
            clients = [Client(f"soak-{i}", sh) for i in range(args.clients)]
            everyone = [oracle, *clients]
            t0 = sh.t0 = time.monotonic()
            monitor = Monitor(sh, everyone, t0)
            tasks = []
            for i, c in enumerate(everyone):  # ramp up, 50 at a time
                tasks.append(asyncio.create_task(c.run()))
                if i % 50 == 49:
                    await asyncio.sleep(0.2)
            loop_task = asyncio.create_task(monitor.watch_loop())
            for _ in range(600):
                if all(c.subscribed_once for c in everyone):
                    break
                await asyncio.sleep(0.1)
            print(
                f"{sum(c.subscribed_once for c in everyone)} of {len(everyone)} clients "
                f"subscribed after {time.monotonic() - t0:.1f} s; window starts after "
                f"evt-{sh.start_id}"
            )
            plan = schedule(run_s - lead - tail, args.speed)
            fault_task = asyncio.create_task(inject(sh, plan, t0 + lead))
            abusers = []
            for i in range(args.abusive):  # beside the normal clients, from the start
                kind = ABUSE_KINDS[i % len(ABUSE_KINDS)]
                # A flood cycle ends its silence 1.5 heartbeats + 30 s after it starts.
                end = run_s - (1.5 * args.heartbeat + 40 if kind == "flood" else 5)
                abuser = Abuser(i, kind, sh, abuse, t0 + max(5.0, end))
                abusers.append(asyncio.create_task(abuser.run()))
            await monitor.run(t0 + run_s)
            await fault_task
            if abusers:
                _, pending = await asyncio.wait(abusers, timeout=120)
                for task in pending:
                    abuse.bad("abusive client", "still running 120 s after the run")
                    task.cancel()
            code = await finish(args, sh, everyone, oracle, monitor, plan, t0)
            sh.stop.set()
            for task in (*tasks, loop_task):
                task.cancel()
            await asyncio.wait([*tasks, loop_task], timeout=30)
        finally:
            rc = server.stop()
            print(f"server stopped (exit {rc}); log: {server.log_path}")
    n_bad, bad_lines, leaked, errors = scan_log(server.log_path, abuse.tokens_in_urls)
    print(
        f"server log: {n_bad} Traceback / 'Error handling request' / Exception lines; "
        f"{errors} ERROR / CRITICAL lines"
    )
    for line in bad_lines:
        print("  " + line[:200])
    if abuse.tokens_in_urls:
        print(f"tokens from over-long request lines found in the log: {leaked}")
    if args.abusive:
        print(f"abusive clients: {args.abusive} ({', '.join(ABUSE_KINDS)} in turn)")
        for key, n in sorted(abuse.counts.items()):
            print(f"  {n:7d}  {key}")
        total = sum(abuse.unexpected.values())
        print(f"abusive clients' UNEXPECTED answers: {total}")
        for key, n in sorted(abuse.unexpected.items()):
            print(f"  {n:7d}  {key}")
        for line in abuse.examples:
            print("    e.g. " + line)
    if n_bad or leaked or abuse.unexpected or rc not in (0, -signal.SIGTERM):
        code = 1
    print("OVERALL: " + ("PASS" if code == 0 else "FAIL"))
    return code


async def finish(
    args: argparse.Namespace,
    sh: Shared,
    everyone: list[Client],
    oracle: Client,
    monitor: Monitor,
    plan: list[tuple[float, FaultRun]],
    t0: float,
) -> int:
    # Let every fault end, pause the simulation, let every client catch up.
    for _ in range(60):
        status, state = await api(sh, "GET", "/api/sim")
        if status == 200 and not state.get("faults"):
            break
        await asyncio.sleep(0.5)
    await api(sh, "POST", "/api/sim", {"action": "pause"})
    await asyncio.sleep(1.0)
    _, state = await api(sh, "GET", "/api/sim")
    end = last_id(state)
    caught_up_at = None
    for _ in range(600):
        if all(c.connected and c.top >= end for c in everyone):
            caught_up_at = time.monotonic() - t0
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)  # anything still in flight
    for _ in range(20):  # abusive clients are done: only ours may be left
        conns = (await scrape(sh)).get("phoenix_connections", -1)
        if conns <= len(everyone):
            break
        await asyncio.sleep(0.5)
    await monitor.sample()
    _, metrics_state = await api(sh, "GET", "/api/sim")
    m = await scrape(sh)

    expected = list(range(sh.start_id + 1, end + 1))
    oracle_holes = [n for n in expected if not oracle.have(n) and not oracle.in_gap(n)]
    oracle_set = [n for n in expected if oracle.have(n)]
    by_design = otherwise = 0
    clients_losing = 0
    examples: list[str] = []
    totals: dict[str, int] = {}
    closes: dict[str, int] = {}
    dup = dict(fault=0, resume=0, other=0)
    ooo = dict(fault=0, other=0)
    before = 0
    for c in everyone:
        missing = [n for n in (expected if c is oracle else oracle_set) if not c.have(n)]
        lost_design = sum(1 for n in missing if c.in_gap(n))
        lost_other = len(missing) - lost_design
        by_design += lost_design
        otherwise += lost_other
        if lost_other:
            clients_losing += 1
            if len(examples) < 5:
                bad = [n for n in missing if not c.in_gap(n)]
                examples.append(
                    f"{c.sub}: {lost_other} lost, e.g. evt-{bad[0]}..evt-{bad[-1]}; "
                    f"closes {c.closes}; counts {c.counts}"
                )
        for k, v in c.counts.items():
            totals[k] = totals.get(k, 0) + v
        for k, v in c.closes.items():
            closes[k] = closes.get(k, 0) + v
        dup["fault"] += c.dup_fault
        dup["resume"] += c.dup_resume
        dup["other"] += c.dup_live
        ooo["fault"] += c.ooo_fault
        ooo["other"] += c.ooo_other
        before += c.before_window

    samples = monitor.samples
    rss = [s.rss / 1024 for s in samples]
    third = max(1, len(rss) // 3)
    middle = rss[third : 2 * third] or rss
    last = rss[-third:]
    mid_mean, last_mean = sum(middle) / len(middle), sum(last) / len(last)
    growth = last_mean - mid_mean
    growing = growth > max(10.0, 0.10 * mid_mean)
    events = len(expected)
    deliveries = events * len(everyone)

    print()
    print("=== soak summary ===")
    print(
        f"clients {len(everyone) - 1} + oracle, {args.minutes:g} min, speed {args.speed:g}"
        + (f", agents {args.agents_rate:g}/s simulated" if args.agents_rate else "")
    )
    print(
        f"events in window: {events} (evt-{sh.start_id + 1}..evt-{end}), "
        f"{events / (args.minutes * 60):.1f}/s; deliveries expected {deliveries:,}"
    )
    print(f"faults injected: {', '.join(f'{f.name} ({f.status})' for _, f in plan)}")
    caught = f"{caught_up_at:.1f} s" if caught_up_at is not None else "NOT all caught up"
    print(f"all clients connected and caught up at the end: {caught}")
    print(f"close codes seen by clients: {dict(sorted(closes.items()))}")
    print(f"client events: {dict(sorted(totals.items()))}")
    rec_true = m.get('phoenix_resumes_total{recovered="true"}', 0)
    rec_false = m.get('phoenix_resumes_total{recovered="false"}', 0)
    lag = metrics_state.get("lag_seconds") if isinstance(metrics_state, dict) else "?"
    print(
        f"server: resumes {rec_true:.0f} recovered / {rec_false:.0f} not; "
        f"slow-consumer closes {m.get('phoenix_slow_consumer_closes_total', 0):.0f}; "
        f"auth failures {m.get('phoenix_auth_failures_total', 0):.0f}; final lag {lag} s"
    )
    closed = {
        k.split('"')[1]: int(v)
        for k, v in m.items()
        if k.startswith("phoenix_connections_closed_total{")
    }
    print(f"server: connections closed by reason {closed}")
    leftover = conns > len(everyone)
    print(
        f"server: connections at the end {conns:.0f} (clients + oracle {len(everyone)})"
        + (": ABUSIVE ONES LEFT OVER" if leftover else "")
    )
    minute1 = [s.rss / 1024 for s in samples if s.t >= 60]
    if minute1:
        print(f"RSS MiB at 1 min {minute1[0]:.1f}, at the end {rss[-1]:.1f}")
    print(
        f"RSS MiB: start {rss[0]:.1f}, peak {max(rss):.1f}, end {rss[-1]:.1f}; "
        f"middle third mean {mid_mean:.1f}, last third {last_mean:.1f} "
        f"({growth:+.1f}): {'GROWING' if growing else 'flat (bounded)'}"
    )
    print(
        f"CPU (mean of samples): server {sum(s.server_cpu for s in samples) / len(samples):.0f}%, "
        f"clients {sum(s.client_cpu for s in samples) / len(samples):.0f}%; client loop lag "
        f"max {max(s.loop_lag_ms for s in samples):.0f} ms; sim lag max "
        f"{max(s.lag for s in samples):.2f} s"
    )
    print(f"oracle holes (ids it never got, outside a non-recovered gap): {len(oracle_holes)}")
    print(
        f"duplicates: {dup['fault']} under the duplicate fault, {dup['resume']} replayed on "
        f"resume, {dup['other']} other"
    )
    print(f"out of order: {ooo['fault']} under the reorder fault, {ooo['other']} other")
    odd = [f"{c.sub} {o}" for c in everyone for o in c.oddities]
    for line in odd[:8]:
        print("  unexplained: " + line)
    if before:
        print(f"events before the window (ignored): {before}")
    print(f"lost by design (in a non-recovered resume's gap): {by_design}")
    print(f"LOST OTHERWISE: {otherwise} (clients affected: {clients_losing})")
    for line in examples:
        print("  " + line)
    ok = otherwise == 0 and caught_up_at is not None and not growing and not leftover
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--quick", action="store_true", help="1 minute, 100 clients")
    p.add_argument("--speed", type=float, default=None, help="simulation speed (default 4)")
    p.add_argument(
        "--agents-rate",
        type=float,
        default=0.0,
        help="simulated heartbeats per second for the whole fleet (phoenix --rate agents=)",
    )
    p.add_argument(
        "--abusive",
        type=int,
        default=None,
        help="abusive clients beside the normal ones (default 20; 6 with --quick)",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        help="the server's websocket.heartbeat in s (default 30; 10 with --quick)",
    )
    p.add_argument("--history-events", type=int, default=10000)
    p.add_argument("--history-age", type=float, default=300)
    args = p.parse_args(argv)
    if args.quick:
        args.minutes, args.clients = 1.0, 100
    if args.abusive is None:
        args.abusive = 6 if args.quick else 20
    if args.heartbeat is None:
        args.heartbeat = 10.0 if args.quick else 30.0
    if not 0 <= args.abusive <= 200 or not 1 <= args.heartbeat <= 120:
        p.error("--abusive must be in [0, 200] and --heartbeat in [1, 120]")
    if args.speed is None:
        args.speed = 4.0
    if not 0 < args.minutes <= 120 or not 1 <= args.clients <= 5000:
        p.error("--minutes must be in (0, 120] and --clients in [1, 5000]")
    return asyncio.run(soak(args))


if __name__ == "__main__":
    sys.exit(main())
