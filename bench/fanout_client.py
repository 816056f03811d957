"""A client process of the fan-out benchmark: many WebSocket connections, driven by JSON
lines on stdin, answering with JSON lines on stdout.

The connections are raw asyncio protocols, not aiohttp clients: an upgrade request, then
a loop that cuts the byte stream into frames. Per frame it only counts and reads
`"sent":` (the publisher's wall time) to file the latency in a histogram of 0.1 ms bins,
so one process reads several hundred thousand frames a second and the server, not the
client, is what the benchmark measures. Server pings are answered.

Commands: {"op": "connect", "port", "n", "first", "subscribe"} (open until `n` are open
to that port, reopening any that closed), {"op": "start"}, {"op": "stop"} (counts and
histogram since start), {"op": "close", "port"}, {"op": "exit"}.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import SECRET, SENT_KEY  # noqa: E402

BIN = 1e-4  # histogram bin: 0.1 ms
BINS = 20_000  # up to 2 s; the last bin holds everything slower
SUBSCRIBE = json.dumps(
    {
        "type": "subscribe",
        "id": "s1",
        "channels": ["experiments", "metrics", "agents", "deployments", "alerts", "cost-flow"],
    }
).encode()


def masked_text(payload: bytes) -> bytes:
    """A client text frame; the all-zero mask leaves the payload as is (RFC 6455 §5.3)."""
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload))) + b"\0\0\0\0" + payload


class Stats:
    def __init__(self) -> None:
        self.counting = False
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.hist = [0] * BINS
        self.first = 0.0
        self.last = 0.0
        self.closed = 0


class Client(asyncio.Protocol):
    def __init__(self, stats: Stats, request: bytes) -> None:
        self.stats = stats
        self.request = request
        self.buf = bytearray()
        self.upgraded = False
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.first_text: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.open and self.stats.counting:
            self.stats.closed += 1
        self.open = False
        for fut in (self.ready, self.first_text):
            if not fut.done():
                fut.set_exception(ConnectionError("closed"))

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(buf[:200]).decode("latin-1")))
                assert self.transport is not None
                self.transport.close()
                return
            del buf[: end + 4]
            self.upgraded = self.open = True
            self.ready.set_result(None)
        stats = self.stats
        now = time.time()
        n = len(buf)
        pos = 0
        frames = 0
        while n - pos >= 2:
            b1 = buf[pos + 1] & 0x7F
            if b1 < 126:
                start = pos + 2
            elif b1 == 126:
                if n - pos < 4:
                    break
                b1 = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            else:
                if n - pos < 10:
                    break
                b1 = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + b1
            if end > n:
                break
            op = buf[pos] & 0x0F
            if op == 1:
                frames += self.text_frame(buf, start, end, now)
                if not self.first_text.done():
                    self.first_text.set_result(None)
            elif op == 9 and self.transport is not None:  # ping: answer with a pong
                body = bytes(buf[start:end])
                self.transport.write(bytes((0x8A, 0x80 | len(body))) + b"\0\0\0\0" + body)
            elif op == 8 and self.transport is not None:
                self.transport.close()
            pos = end
        if pos:
            del buf[:pos]
        if frames:
            stats.count += frames
            if not stats.first:
                stats.first = now
            stats.last = now

    def text_frame(self, buf: bytearray, start: int, end: int, now: float) -> int:
        """One text frame, buf[start:end]: how many it counts (0 or 1). Here: while
        counting, a frame that carries `"sent":` files its latency in the histogram."""
        if not self.stats.counting:
            return 0
        i = buf.find(SENT_KEY, start, end)
        if i < 0:
            return 0
        i += 7
        j = buf.find(b",", i, end)
        k = int((now - float(buf[i:j])) / BIN)
        self.stats.hist[k if 0 <= k < BINS else (0 if k < 0 else BINS - 1)] += 1
        return 1

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(masked_text(payload))

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.write(b"\x88\x82\0\0\0\0\x03\xe8")  # close, 1000
            self.transport.close()


def upgrade_request(port: int, token: str | None) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    path = "/ws" if token is None else f"/ws?token={token}"
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


async def open_one(port: int, index: int, subscribe: bool, stats: Stats) -> Client:
    token = None
    if subscribe:
        from phoenix.auth import issue

        token = issue(SECRET, f"bench-{index}", time.time(), 24 * 3600)
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: Client(stats, upgrade_request(port, token)), "127.0.0.1", port
    )
    await asyncio.wait_for(client.ready, 10)
    if subscribe:
        client.send(SUBSCRIBE)
        await asyncio.wait_for(client.first_text, 10)  # the subscribe response
    return client


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    stats = Stats()
    groups: dict[int, dict[int, Client]] = {}

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "connect":
            port, first = cmd["port"], cmd["first"]
            group = groups.setdefault(port, {})
            missing = [
                first + i
                for i in range(cmd["n"])
                if first + i not in group or not group[first + i].open
            ]
            failed = 0
            for b in range(0, len(missing), 100):  # a hundred handshakes at a time
                batch = missing[b : b + 100]
                results = await asyncio.gather(
                    *(open_one(port, i, cmd["subscribe"], stats) for i in batch),
                    return_exceptions=True,
                )
                for i, r in zip(batch, results, strict=True):
                    if isinstance(r, BaseException):
                        failed += 1
                    else:
                        group[i] = r
            reply({"open": sum(c.open for c in group.values()), "failed": failed})
        elif op == "start":
            stats.reset()
            stats.counting = True
            reply({"ok": True})
        elif op == "stop":
            stats.counting = False
            hist = {i: c for i, c in enumerate(stats.hist) if c}
            reply(
                {
                    "count": stats.count,
                    "hist": hist,
                    "first": stats.first,
                    "last": stats.last,
                    "closed": stats.closed,
                }
            )
        elif op == "close":
            for c in groups.pop(cmd["port"], {}).values():
                c.close()
            reply({"ok": True})
        elif op == "exit":
            break
    for group in groups.values():
        for c in group.values():
            c.close()


if __name__ == "__main__":
    asyncio.run(main())
