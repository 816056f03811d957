"""The gateway role (`phoenix gateway --broker URL`): /ws, the HTTP API, the page,
/health and /metrics, with no simulation of its own.

One reader per gateway follows the engine's streams in Redis and hands each event to
this process's hub, through this gateway's fault gate, exactly as the engine's feed does
in one process; so fan-out, filters, limits and delivery faults are the same code. What
the gateway holds that the broker decides: the epoch (a new one closes every client with
1012, to reload), the history (loaded at join, so a client resumes here what it saw
elsewhere) and the gaps (an outage the history did not cover: whoever was subscribed to
that channel is closed with 1012 and gets `recovered: false` on resume). Controls go to
the engine as requests; the connections-per-user limit counts over all gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from phoenix import broker, protocol
from phoenix.broker import Entry, Keys, read_entry, split_id
from phoenix.config import BrokerConfig, Config
from phoenix.control import ControlError
from phoenix.feed import SLICE, SourceInfo  # SLICE: delivering, before others run
from phoenix.hub import Published
from phoenix.keys import CONNECTIONS, FAULTS, HUB
from phoenix.protocol import Close
from simulator.events import CHANNELS, CONTROL, Event

log = logging.getLogger("phoenix.gateway")

BLOCK = 1.0  # seconds one XREAD waits for new events
COUNT = 5000  # entries per XREAD
POLL = 0.5  # seconds between reads of the engine's state
SNAPSHOT_FRESH = 0.25  # seconds a gateway answers snapshots from the engine's last one


class RemoteFeed:
    """The engine's feed as the server sees it (phoenix.feed.FeedView): its state as
    last published, its clock run on from there."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.engine: dict[str, Any] | None = None  # the engine's last state
        self.engine_up = False
        self.broker_up = False
        self.info = SourceInfo("scenario", "-")
        self.speed = 1.0
        self.lag = 0.0

    def update(self, state: dict[str, Any] | None) -> None:
        self.engine_up = state is not None
        if state is None:
            return
        self.engine = state
        self.info = SourceInfo(
            state.get("source", "scenario"), state.get("scenario", "-"), state.get("seed")
        )
        self.speed = float(state.get("speed") or 1.0)
        self.lag = float(state.get("lag_seconds") or 0.0)

    def now(self) -> float:
        st = self.engine
        if st is None:
            return time.time()
        if st.get("paused") or st.get("finished") or not self.engine_up:
            return float(st["now"])
        return float(st["now"]) + (time.time() - float(st["wall"])) * self.speed

    # What the engine's state carries for gateways only, not for GET /api/sim.
    _INTERNAL = frozenset({"engine", "base", "position", "wall", "now"})
    _KEYS = ("source", "scenario", "seed", "speed", "paused", "finished", "simulated_time")

    def state(self) -> dict[str, Any]:
        """GET /api/sim as in one process (the engine's feed state), plus the epoch and
        whether the engine and the broker are up."""
        st = self.engine or {}
        out: dict[str, Any] = dict.fromkeys(self._KEYS)
        out.update({k: v for k, v in st.items() if k not in self._INTERNAL})
        out.update(
            engine="up" if self.engine_up else "down",
            broker="up" if self.broker_up else "down",
        )
        if not self.engine_up:
            out["error"] = f"no engine is running in broker namespace {self.namespace!r}" + (
                "" if self.broker_up else " (the broker is unreachable)"
            )
        return out


class RemoteControl:
    """The controls, carried out by the engine: one request, one reply, over Redis."""

    def __init__(self, link: Link) -> None:
        self.link = link
        # One snapshot request in flight per gateway, its answer kept for a moment: a
        # page reload on every gateway after an epoch change (five collections each)
        # must not queue hundreds of full snapshots at the engine.
        self._snapshot: asyncio.Task[dict[str, Any]] | None = None
        self._snapshot_at = -1e9

    async def state(self) -> dict[str, Any]:
        return self.link.feed.state()

    async def snapshot(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        task = self._snapshot
        if task is None or (task.done() and loop.time() - self._snapshot_at > SNAPSHOT_FRESH):
            task = self._snapshot = loop.create_task(self._fetch_snapshot())
            self._snapshot_at = loop.time()
        try:
            return await asyncio.shield(task)
        except ControlError:
            if self._snapshot is task:
                self._snapshot = None  # a failure is not kept: the next asks again
            raise

    async def _fetch_snapshot(self) -> dict[str, Any]:
        snap = await self._request("snapshot", None)
        # A client that resumes from this snapshot's last_event_id here may be ahead of
        # what this gateway has delivered: the id is the engine's, so it is not foreign.
        last = protocol.parse_event_id(snap["sim"].get("last_event_id") or "")
        if last is not None:
            self.link.app[HUB].expect(last)
        return snap

    async def timeline(self) -> dict[str, Any]:
        return await self._request("timeline", None)

    async def command(self, body: dict[str, Any]) -> dict[str, Any]:
        state = await self._request("command", body)
        self.link.feed.update({**(self.link.feed.engine or {}), **state})
        return self.link.feed.state()

    async def inject(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("inject", body)

    async def _request(self, op: str, body: Any) -> dict[str, Any]:
        link = self.link
        timeout = link.cfg.request_timeout
        rid = secrets.token_hex(8)
        request = {"id": rid, "op": op, "body": body, "deadline": time.time() + timeout}
        if not link.feed.engine_up:
            raise ControlError(None, link.feed.state()["error"], status=503)
        try:
            await link.r.rpush(link.keys.requests, json.dumps(request))
            reply = await link.rwait.blpop([link.keys.reply(rid)], timeout=timeout)
        except (RedisError, OSError) as exc:
            raise ControlError(None, f"the broker is unreachable ({exc})", status=503) from None
        if reply is None:
            raise ControlError(None, f"the engine did not answer within {timeout:g} s", 503)
        answer = json.loads(reply[1])
        if "error" in answer:
            err = answer["error"]
            raise ControlError(err.get("field"), err["problem"], int(err.get("status", 400)))
        result: dict[str, Any] = answer["ok"]
        return result


class Leases:
    """connections_per_user over every gateway: per user, a hash of gateway -> count in
    Redis, counted only for gateways whose heartbeat key lives; a dead gateway's slots
    free themselves within `broker.lease`. While Redis is away, each gateway counts its
    own connections alone (and says so), and puts its counts back when Redis returns."""

    def __init__(self, link: Link) -> None:
        self.link = link
        # Users whose count in Redis may be wrong: a call failed (or timed out after it
        # ran). reassert() writes them as they are here.
        self.dirty: set[str] = set()
        self._warned = False

    async def acquire(self, sub: str, limit: int) -> bool:
        link = self.link
        try:
            ok = await link.r.eval(
                _ACQUIRE,
                1,
                link.keys.user(sub),
                link.id,
                limit,
                link.keys.gateway_prefix,
            )
        except (RedisError, OSError):
            if not self._warned:
                log.warning("broker unreachable: connections per user counted here only")
                self._warned = True
            self.dirty.add(sub)
            # Here alone, as in one process: the registry's count (a connection is
            # registered as soon as this returns, before any await).
            ok = self.link.app[CONNECTIONS].count(sub) < limit
        return bool(ok)

    async def release(self, sub: str) -> None:
        try:
            await self.link.r.eval(_RELEASE, 1, self.link.keys.user(sub), self.link.id)
        except (RedisError, OSError):
            self.dirty.add(sub)

    async def reassert(self) -> None:
        """After an outage: Redis may have lost the counts (a restart without
        persistence); this gateway's are put back as they are now."""
        self._warned = False
        registry = self.link.app[CONNECTIONS]
        users = set(registry.users()) | self.dirty
        if not users:
            return
        pipe = self.link.r.pipeline(transaction=False)
        for sub in users:
            n = registry.count(sub)
            if n:
                pipe.hset(self.link.keys.user(sub), self.link.id, n)
            else:
                pipe.hdel(self.link.keys.user(sub), self.link.id)
        await pipe.execute()
        self.dirty -= users


class Link:
    """This gateway's link to the broker: the reader, the engine's state, the leases."""

    def __init__(self, app: web.Application, config: Config, index: int) -> None:
        self.app = app
        self.config = config
        self.cfg: BrokerConfig = config.broker
        self.index = index
        self.keys = Keys(self.cfg.namespace)
        self.id = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        # Any: redis-py's types do not follow decode_responses (bytes here, always).
        self.r: Any = broker.client(self.cfg)
        self.rread: Any = broker.blocking_client(self.cfg, BLOCK)
        self.rwait: Any = broker.blocking_client(self.cfg, self.cfg.request_timeout)
        self.feed = RemoteFeed(self.cfg.namespace)
        self.control = RemoteControl(self)
        self.leases = Leases(self)
        self.epoch: str | None = None
        self.last_ids: dict[str, str] = {}
        self.last_on: dict[str, int] = {}
        self.lag_seconds = 0.0
        self.gaps = 0
        self.rejoin = False  # the epoch changed under us: read meta and history again

    @property
    def delivered(self) -> int:
        return self.app[HUB].last_seq

    @property
    def lag_events(self) -> int:
        engine = self.feed.engine or {}
        return max(0, int(engine.get("position") or 0) - self.delivered)

    # --- lifecycle -----------------------------------------------------------------

    async def run(self, app: web.Application) -> AsyncIterator[None]:
        tasks = [
            asyncio.create_task(self._reader(), name="broker-reader"),
            asyncio.create_task(self._poller(), name="broker-poller"),
        ]
        yield
        await broker.cancel(tasks)  # insists: a cancel can be lost in a redis-py call
        with contextlib.suppress(RedisError, OSError):
            pipe = self.r.pipeline(transaction=False)
            pipe.delete(self.keys.gateway(self.id))  # our slots free at once
            for sub in self.app[CONNECTIONS].users():
                pipe.hdel(self.keys.user(sub), self.id)
            await asyncio.wait_for(pipe.execute(), self.cfg.connect_timeout)
        for r in (self.r, self.rread, self.rwait):
            await r.aclose()

    def _set_broker(self, up: bool, why: object = None) -> None:
        if up != self.feed.broker_up:
            if up:
                log.warning("broker %s reachable", broker.redact(self.cfg.url))
            else:
                log.error("broker %s unreachable (%s); retrying", broker.redact(self.cfg.url), why)
        self.feed.broker_up = up

    async def _poller(self) -> None:
        """The engine's state, and this gateway's heartbeat (its lease), twice a second."""
        was_down = False
        beat_every = max(0.2, self.cfg.lease / 3)
        beat_at = 0.0
        while True:
            try:
                if time.monotonic() >= beat_at:
                    before = await self.r.set(
                        self.keys.gateway(self.id),
                        self.index,
                        px=int(self.cfg.lease * 1000),
                        get=True,
                    )
                    beat_at = time.monotonic() + beat_every
                    # Our key had expired (an outage, a stall, Redis emptied): the other
                    # gateways may have dropped our counts; put them back as they are.
                    if was_down or before is None:
                        await self.leases.reassert()
                        was_down = False
                    await self.r.eval(_HIGH_WATER, 1, self.keys.high_water, self.delivered)
                raw = await self.r.get(self.keys.engine)
                state = json.loads(raw) if raw else None
                was_up = self.feed.engine_up
                self.feed.update(state)
                if state is not None:
                    hub = self.app[HUB]
                    hub.expect(int(state.get("position") or 0))
                    if self.epoch is not None and state.get("epoch") not in (None, self.epoch):
                        self.rejoin = True  # another run, maybe missed in the streams
                if was_up and state is None:
                    log.error("the engine of namespace %r is gone", self.cfg.namespace)
                elif state is not None and not was_up:
                    log.info("engine %s of namespace %r is up", state["engine"], self.cfg.namespace)
                self._set_broker(True)
            except (RedisError, OSError) as exc:
                self._set_broker(False, exc)
                self.feed.update(None)
                was_down = True
                beat_at = 0.0
            except Exception:
                log.exception("reading the engine's state failed")
                self.feed.update(None)
            await asyncio.sleep(min(POLL, beat_every))

    async def _reader(self) -> None:
        backoff = 0.1
        while True:
            try:
                if self.epoch is None or self.rejoin:
                    await self._join()
                if self.epoch is None:  # no engine has written here yet
                    await asyncio.sleep(POLL)
                    continue
                streams = dict(self.last_ids)  # every channel's stream, then ctl
                # A read without BLOCK sees every stream as of one moment. A blocked
                # XREAD is only the wait: Redis answers it with the one stream that woke
                # it (after the engine's transaction, that stream may hold events that
                # come after others' not in its answer), so its answer is not used.
                got = await self.r.xread(streams, count=COUNT)
                if not got:
                    woke = await self.rread.xread(streams, count=1, block=int(BLOCK * 1000))
                    if woke:
                        got = await self.r.xread(streams, count=COUNT)
                self._set_broker(True)
                backoff = 0.1
                if got:
                    await self._handle(got)
            except (RedisError, OSError) as exc:
                self._set_broker(False, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:
                # A bug or a malformed entry must not end the reader for good (the
                # gateway would go on saying all is well): said, then it reads on (the
                # cursors are past that batch already).
                log.exception("broker reader failed on a batch; reading on")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    # --- joining: the epoch and the history ----------------------------------------

    async def _join(self) -> None:
        size = max(1, self.config.history.max_events)
        # One transaction: the streams, the control events and the meta as of one moment
        # (read one by one, a channel read earlier would miss what another read later has).
        pipe = self.r.pipeline(transaction=True)
        pipe.hgetall(self.keys.meta)
        for key in self.keys.streams.values():
            pipe.xrevrange(key, count=size)
        pipe.xrange(self.keys.ctl)
        meta, *streams, ctl = await pipe.execute()
        if b"epoch" not in meta:
            return
        epoch, base = meta[b"epoch"].decode(), int(meta[b"base"])
        hub = self.app[HUB]
        if self.epoch is not None and epoch != self.epoch:
            self._new_epoch(epoch, base)  # clients reload: another run (and hub.new_epoch)
        else:
            hub.new_epoch(base)
        self.rejoin = False
        self.last_ids = {}
        now_wall, now_mono = time.time(), time.monotonic()
        for (channel, key), items in zip(self.keys.streams.items(), streams, strict=True):
            entries = [read_entry(channel, sid, f) for sid, f in reversed(items)]
            entries = [e for e in entries if e.epoch == epoch]
            if entries:
                hub.forget(channel, entries[0].prev)
                for e in entries:
                    hub.restore(self._published(e), now_mono - (now_wall - e.wall))
                self.last_on[channel] = entries[-1].pos
                self.last_ids[key] = items[0][0].decode()
            else:
                last = int(meta.get(f"last:{channel}".encode(), base - 1))
                hub.forget(channel, last)
                self.last_on[channel] = last
                # Past anything of another epoch left there: not this run's to deliver.
                self.last_ids[key] = items[0][0].decode() if items else "0-0"
        hub.expect(int(meta.get(b"last", 0)))
        # Faults in force: the control events of this epoch, replayed to the gate before
        # any client is here (what they do to connections touches nobody).
        for _sid, fields in ctl:
            self._control(fields)
        self.last_ids[self.keys.ctl] = ctl[-1][0].decode() if ctl else "0-0"
        self.epoch = epoch
        log.info(
            "joined epoch %s of namespace %r: %d events of history, up to evt-%d",
            epoch,
            self.cfg.namespace,
            sum(hub.history_length(c) for c in CHANNELS),
            hub.last_seq,
        )

    # --- live ----------------------------------------------------------------------

    async def _handle(self, got: list[Any]) -> None:
        items: list[tuple[tuple[int, int], str, bytes, dict[bytes, bytes]]] = []
        # COUNT caps each stream alone: a stream that filled it may have more before
        # what a quieter stream returned. Only what comes before the first such stream's
        # last entry is in order now; the rest is read again next time.
        cut: tuple[int, int] | None = None
        for key, entries in got:
            key = key.decode()
            for sid, fields in entries:
                items.append((split_id(sid), key, sid, fields))
            if len(entries) >= COUNT:
                last = split_id(entries[-1][0])
                cut = last if cut is None else min(cut, last)
        if cut is not None:
            items = [item for item in items if item[0] <= cut]
        items.sort(key=lambda item: item[0])  # one order across channels: the engine's
        for _, key, sid, _ in items:
            self.last_ids[key] = sid.decode()
        hub = self.app[HUB]
        top = max((pos for (pos, _), key, _, _ in items if key != self.keys.ctl), default=0)
        # Known to be coming: a client resuming from one of these ids waits, not refused.
        hub.expect(top)
        faults = self.app[FAULTS]
        newest_wall = 0.0
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _, key, sid, fields in items:
            if loop.time() - started > SLICE:
                # A backlog (a gateway behind, many clients) is delivered in slices:
                # /health, the API and the clients' own frames are answered meanwhile.
                await asyncio.sleep(0)
                started = loop.time()
            if key == self.keys.ctl:
                self._control(fields)
                continue
            entry = read_entry(self.keys.channel_of[key], sid, fields)
            if entry.epoch != self.epoch:
                self._new_epoch(entry.epoch, entry.pos)
            if entry.prev > self.last_on.get(entry.channel, entry.prev):
                self._gap(entry)
            self.last_on[entry.channel] = entry.pos
            newest_wall = entry.wall
            faults.publish(self._published(entry))
        if newest_wall:
            self.lag_seconds = max(0.0, time.time() - newest_wall)

    def _control(self, fields: dict[bytes, bytes]) -> None:
        try:
            body = json.loads(fields[b"c"])
            name, data, t = body["name"], body["data"], float(body["time"])
            seed = body.get("seed")
            if name == "epoch.start":
                epoch, base = str(data["epoch"]), int(data["base"])
        except (KeyError, ValueError, TypeError):
            log.warning("ignored a malformed control entry")
            return
        if seed != self.feed.info.seed:
            # The run's seed, in the entry itself: each fault's draws never depend on
            # whether the engine's state was read yet (faults use feed.info.seed).
            self.feed.info = SourceInfo(self.feed.info.kind, self.feed.info.name, seed)
        if name == "epoch.start":
            if self.epoch is not None and epoch != self.epoch:
                self._new_epoch(epoch, base)
        elif name == "run.reset":
            self.app[FAULTS].clear()
        else:
            self.app[FAULTS].on_control(Event(t, CONTROL, name, data))

    def _new_epoch(self, epoch: str, base: int) -> None:
        """The engine started again: another run. Clients reload (1012), the history of
        the old run is no good to anyone, its faults end."""
        log.warning("engine restarted: epoch %s, ids from evt-%d; closing clients", epoch, base)
        self.epoch = epoch
        self.app[FAULTS].clear()
        self.app[HUB].new_epoch(base)
        for channel in CHANNELS:
            self.last_on[channel] = base - 1
        for conn in self.app[CONNECTIONS].all():
            conn.close(Close.SERVICE_RESTART, "the simulation engine restarted")

    def _gap(self, entry: Entry) -> None:
        """Events of the channel were lost between what we delivered and this one (an
        outage longer than the history): nobody may resume across it, and those who
        were subscribed missed events, so they reconnect and are told."""
        self.gaps += 1
        hub = self.app[HUB]
        hub.forget(entry.channel, entry.prev)
        subscribed = [c for c in self.app[CONNECTIONS].all() if entry.channel in hub.channels_of(c)]
        log.error(
            "missed events of %s up to evt-%d (the broker's history did not cover the "
            "outage); closing %d subscribers with 1012",
            entry.channel,
            entry.prev,
            len(subscribed),
        )
        for conn in subscribed:
            conn.close(Close.SERVICE_RESTART, f"missed events of {entry.channel}; resume")

    @staticmethod
    def _published(e: Entry) -> Published:
        narrow = None
        if e.name in protocol.NARROWED_EVENTS:

            def narrow(exp: str, e: Entry = e) -> bytes:
                event = Event(e.time, e.channel, e.name, orjson.loads(e.frame)["data"], e.tags)
                return protocol.event_frame(e.pos, event, protocol.narrow(event, exp))

        return Published(e.pos, e.channel, e.name, e.tags, e.frame, narrow, time=e.time)

    # --- for /health and /metrics ----------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "broker": "up" if self.feed.broker_up else "down",
            "engine": "up" if self.feed.engine_up else "down",
            "namespace": self.cfg.namespace,
            "gateway": self.id,
            "index": self.index,
            "epoch": self.epoch,
            "delivered_event_id": f"evt-{self.delivered}" if self.delivered else None,
            "lag_events": self.lag_events,
            "lag_seconds": round(self.lag_seconds, 3),
        }


# Count a user's connections over the gateways that are alive (their heartbeat key
# lives), forgetting dead ones; take a slot if there is one. Standalone Redis only: the
# gateways' keys are read by name inside the script.
_ACQUIRE = """
local counts = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #counts, 2 do
  local gw = counts[i]
  if gw == ARGV[1] or redis.call('EXISTS', ARGV[3] .. gw) == 1 then
    total = total + tonumber(counts[i + 1])
  else
    redis.call('HDEL', KEYS[1], gw)
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
"""
# The highest id any gateway has delivered, kept even if the engine's meta is lost: a
# new engine's ids never fall back below it.
_HIGH_WATER = """
local known = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > known then redis.call('SET', KEYS[1], ARGV[1]) end
return known
"""
_RELEASE = """
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], -1)
if n <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return n
"""
