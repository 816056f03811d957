"""The Redis broker between one engine and any number of gateways: where each thing lives
in Redis and how it is written, in one place (README "Scaling out", docs/design.md §6).

Keys, all under the configured namespace `ns`:

- `ns:ch:<channel>`: a stream per channel, the history. Entry id `<position>-0`, so
  XRANGE from a client's `since` is the replay and XREAD from a gateway's last id is the
  live feed. Fields: `f` the event's wire bytes, `n` its name, `g` its filter tags
  (JSON), `s` its simulated time, `w` the engine's wall time, `e` the epoch, and `p` the
  position of the channel's event before it, so a gap (an outage the history did not
  cover) is seen, never papered over.
- `ns:ctl`: control events (fault start and end, run reset, epoch start) in order with
  the events: entry id `<last position>-<k>`, k >= 1, sorts after that event (an
  epoch's start is `<position before it>-1000000000`, above what the last epoch left).
  Each carries the run's seed.
- `ns:high-water`: the highest id a gateway has delivered; a new epoch starts above it
  and above `meta.last`, so an id is never reused even if Redis lost the meta.
- `ns:meta`: hash, the current epoch, its first position `base` and the `last` one.
- `ns:engine`: the engine's state (GET /api/sim), renewed every half second with a
  short expiry: no key, no engine. `ns:lock`: which engine owns the namespace; the
  engine writes only in transactions that check it (an engine taken over writes
  nothing more).
- `ns:requests`: a list of control requests; each reply goes to `ns:reply:<id>`.
- `ns:gw:<id>` (a gateway's heartbeat, expiring after `broker.lease`) and
  `ns:users:<sub>` (hash: gateway id -> that gateway's connections of the user): the
  connections-per-user limit, counted over the gateways that are alive.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from phoenix.config import BrokerConfig, ConfigError
from simulator.events import CHANNELS

log = logging.getLogger("phoenix.broker")


class Keys:
    def __init__(self, namespace: str) -> None:
        ns = namespace
        self.streams = {c: f"{ns}:ch:{c}" for c in CHANNELS}
        self.channel_of = {v: c for c, v in self.streams.items()}
        self.ctl = f"{ns}:ctl"
        self.meta = f"{ns}:meta"
        self.engine = f"{ns}:engine"
        self.lock = f"{ns}:lock"
        self.requests = f"{ns}:requests"
        self.high_water = f"{ns}:high-water"  # the highest id a gateway has delivered
        self._ns = ns

    def reply(self, request_id: str) -> str:
        return f"{self._ns}:reply:{request_id}"

    def gateway(self, gateway_id: str) -> str:
        return f"{self._ns}:gw:{gateway_id}"

    def user(self, sub: str) -> str:
        return f"{self._ns}:users:{sub}"

    @property
    def gateway_prefix(self) -> str:
        return f"{self._ns}:gw:"


@dataclass(slots=True)
class Entry:
    """One event as a gateway reads it from a channel's stream."""

    pos: int
    channel: str
    name: str
    tags: dict[str, str]
    frame: bytes
    time: float  # simulated
    wall: float  # when the engine published it
    epoch: str
    prev: int  # position of the channel's event before this one


def entry_fields(
    frame: bytes, name: str, tags: dict[str, str], t: float, wall: float, epoch: str, prev: int
) -> dict[str, Any]:
    return {
        "f": frame,
        "n": name,
        "g": orjson.dumps(tags),
        "s": repr(t),
        "w": repr(wall),
        "e": epoch,
        "p": prev,
    }


def read_entry(channel: str, stream_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(
        pos=int(stream_id.split(b"-", 1)[0]),
        channel=channel,
        name=fields[b"n"].decode(),
        tags=orjson.loads(fields[b"g"]),
        frame=fields[b"f"],
        time=float(fields[b"s"]),
        wall=float(fields[b"w"]),
        epoch=fields[b"e"].decode(),
        prev=int(fields[b"p"]),
    )


def stream_id(pos: int, sub: int = 0) -> str:
    return f"{pos}-{sub}"


def split_id(value: bytes | str) -> tuple[int, int]:
    text = value.decode() if isinstance(value, bytes) else value
    pos, _, sub = text.partition("-")
    return int(pos), int(sub or 0)


MAX_CONNECTIONS = 64  # per client: a thousand clients connecting at once share them


def client(cfg: BrokerConfig) -> aioredis.Redis:
    """A client whose every call gives up after `connect_timeout`: a broker that stops
    answering is a state the caller reports, never a hang."""
    return _client(cfg, cfg.connect_timeout)


def blocking_client(cfg: BrokerConfig, block: float) -> aioredis.Redis:
    """For XREAD BLOCK and BLPOP: a call may wait `block` seconds for data."""
    return _client(cfg, block + cfg.connect_timeout)


def _client(cfg: BrokerConfig, timeout: float) -> aioredis.Redis:
    assert cfg.url is not None
    # Bounded: callers beyond MAX_CONNECTIONS wait for a free connection (at most
    # `timeout`) instead of opening one each.
    pool = aioredis.BlockingConnectionPool.from_url(
        cfg.url,
        max_connections=MAX_CONNECTIONS,
        timeout=timeout,
        socket_connect_timeout=cfg.connect_timeout,
        socket_timeout=timeout,
        health_check_interval=0,
        retry_on_timeout=False,
    )
    return aioredis.Redis.from_pool(pool)  # closing the client closes its pool


async def cancel(tasks: list[asyncio.Task[Any]], within: float = 5.0) -> None:
    """Cancel the tasks and wait until they are done, cancelling again as needed: on
    Python 3.11 a cancel that lands as a redis-py call completes can be lost inside its
    asyncio.wait_for (fixed in 3.12), and a stop must not hang on it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    pending = {t for t in tasks if not t.done()}
    while pending and loop.time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.1)
    if pending:
        log.error("%d tasks did not stop within %g s", len(pending), within)


async def check_reachable(cfg: BrokerConfig) -> None:
    """At start: a broker that cannot be reached is a config error (exit 2, says why)."""
    r = client(cfg)
    try:
        await r.ping()
    except (RedisError, OSError) as exc:
        raise ConfigError(
            f"broker.url: cannot reach Redis at {redact(cfg.url)} ({exc}); start redis-server "
            "there, or fix --broker / broker.url / PHOENIX_BROKER__URL"
        ) from None
    finally:
        await r.aclose()


def redact(url: str | None) -> str:
    """The URL without its password, for logs and messages."""
    if url is None:
        return "-"
    scheme, sep, rest = url.partition("://")
    auth, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{'***@' if at else ''}{host}"
