"""What the fan-out benchmark's processes share: the JWT secret, the event they publish,
the pacing loop and the bits of /proc they read.

The event is an `agent.heartbeat` as the simulation makes it, with the publisher's wall
time in `data.sent` (first, so a client finds it fast) and padding to about 400 bytes on
the wire. Both servers send the same bytes: ours serialises it with the protocol module,
the bare server splices the time into a template cut from the same JSON.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from typing import Any

SECRET = "bench-secret-that-is-long-enough-for-every-hmac-algorithm-0123456789"
FRAME_BYTES = 400  # target size of one event's JSON text
SENT_KEY = b'"sent":'
CLK_TCK = os.sysconf("SC_CLK_TCK")


def event_data(sent: float, pad: int) -> dict[str, Any]:
    return {
        "sent": sent,
        "agent_id": "agent-prod-app-042",
        "status": "healthy",
        "metrics": {"cpu_percent": 41.7, "memory_percent": 63.2, "metrics_per_second": 18342},
        "pad": "x" * pad,
    }


def envelope(seq: int, data: dict[str, Any]) -> dict[str, Any]:
    """The protocol's event envelope (phoenix.protocol.event_payload), field for field."""
    return {
        "id": f"evt-{seq}",
        "type": "event",
        "channel": "agents",
        "event": "agent.heartbeat",
        "data": data,
        "timestamp": "2024-01-20T10:00:00Z",
    }


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def pad_for(size: int = FRAME_BYTES) -> int:
    """Padding that brings a frame with a typical seq and time to `size` bytes."""
    bare = len(dumps(envelope(123456, event_data(time.time(), 0))))
    return max(0, size - bare)


def template(pad: int) -> tuple[bytes, bytes]:
    """The frame's bytes before and after the value of `sent` (the bare server's template)."""
    text = dumps(envelope(123456, event_data(0.5, pad))).encode()
    cut = text.index(SENT_KEY + b"0.5") + len(SENT_KEY)
    return text[:cut], text[cut + 3 :]


async def pace(publish_one: Callable[[], int], events_per_second: float, seconds: float) -> dict:
    """Call `publish_one` `events_per_second` times a second for `seconds`.

    When it falls behind it catches up in bursts of at most ~2,000 messages before
    yielding, so sockets keep being served; what it cannot publish in time is counted
    as `behind`, never published late.
    """
    loop = asyncio.get_running_loop()
    period = 1.0 / events_per_second
    t0 = loop.time()
    wall0 = time.time()
    end = t0 + seconds
    events = messages = 0
    cap = 1
    while True:
        now = loop.time()
        if now >= end:
            break
        due = int((now - t0) / period) + 1 - events
        if due <= 0:
            await asyncio.sleep(min(end - now, (events * period) - (now - t0)))
            continue
        for _ in range(min(due, cap)):
            n = publish_one()
            messages += n
            events += 1
            cap = max(1, 2000 // max(1, n))
        await asyncio.sleep(0)
    target = int(seconds / period)
    return {
        "events": events,
        "messages": messages,
        "behind": max(0, target - events),
        "wall_start": wall0,
        "wall_end": time.time(),
    }


def cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "?"


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, as /proc/loadavg writes them."""
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
