"""The engine role (`phoenix engine --broker URL`): the simulation (or a replay), paced
against the wall clock, publishing every event to Redis for the gateways.

It is the only process that advances simulated time and numbers events. Each start is
a new epoch: ids go on from the namespace's last position (so an id is never reused),
and one from before the epoch is answered with `recovered: false`. It answers the
controls the gateways forward (phoenix.control, the same code as one process runs) and
publishes its state every half second; no state in Redis means no engine.

While Redis is away the engine goes on simulating and keeps what it could not write in a
bounded outbox, written in order when Redis is back; what the outbox had to drop shows as
a gap in the channels' `prev` chain, so no gateway replays across it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import secrets
import time
from collections import deque
from typing import Any

from redis.exceptions import RedisError, ResponseError, WatchError

from phoenix import broker
from phoenix.broker import Keys, entry_fields, stream_id
from phoenix.config import Config
from phoenix.control import ControlError, LocalControl
from phoenix.feed import Feed, Source, SourceInfo
from phoenix.hub import Hub, Published
from simulator.events import CHANNELS, Event

log = logging.getLogger("phoenix.engine")

STATE_EVERY = 0.5  # seconds between state writes (GET /api/sim on the gateways)
STATE_TTL = 3.0  # seconds without a write after which gateways say "engine: down"
BATCH = 2000  # entries per pipeline
# Entries a stream keeps at least, whatever the history: the gateways read live events
# there, and a gateway that falls behind by less than this (10 s at 5,000 events a second
# on one channel) must find them still there, not a gap.
LIVE_MIN = 50_000
REQUEST_BLOCK = 1.0  # seconds one BLPOP for a control request waits
EPOCH_SUB = 1_000_000_000  # an epoch's first control entry: <position before it>-EPOCH_SUB


class Publisher:
    """Numbered events and control events -> the outbox -> Redis, in order."""

    def __init__(self, keys: Keys, epoch: str, base: int, max_events: int) -> None:
        self.keys = keys
        self.epoch = epoch
        self.base = base
        self.prev = dict.fromkeys(CHANNELS, base - 1)
        self.last = base - 1  # highest position handed to the outbox
        self.written = base - 1  # highest position Redis has
        self._sub = 0  # control events after `last`
        self.maxlen = max(max_events, LIVE_MIN)
        # Bounded by what the history would hold: past it the oldest go (a gap the
        # gateways see, resumes across it are refused), and memory stays flat.
        self.outbox: deque[tuple[str, str, dict[str, Any], int]] = deque(
            maxlen=max(max_events * (len(CHANNELS) + 1), 10_000)
        )
        self.dropped = 0
        self.wake = asyncio.Event()

    def event(self, p: Published) -> None:
        prev, self.prev[p.channel] = self.prev[p.channel], p.seq
        self.last, self._sub = p.seq, 0
        fields = entry_fields(p.frame, p.name, p.tags, p.time, time.time(), self.epoch, prev)
        self._put(self.keys.streams[p.channel], stream_id(p.seq), fields, p.seq)

    def control(self, name: str, data: dict[str, Any], t: float, seed: int | None) -> None:
        if name == "epoch.start":
            # Above any control entry the last epoch may have left at this position, so
            # a gateway whose cursor is there still reads it (and what follows).
            self._sub = EPOCH_SUB - 1
        self._sub += 1
        # The run's seed travels with each entry: a gateway's fault draws never depend
        # on whether it has read the engine's state yet.
        body = {"name": name, "data": data, "time": t, "epoch": self.epoch, "seed": seed}
        self._put(
            self.keys.ctl, stream_id(self.last, self._sub), {"c": json.dumps(body)}, self.last
        )

    def _put(self, key: str, sid: str, fields: dict[str, Any], pos: int) -> None:
        if len(self.outbox) == self.outbox.maxlen:
            self.dropped += 1
        self.outbox.append((key, sid, fields, pos))
        self.wake.set()

    async def flush(self, r: Any, owner: str) -> None:
        """Write the outbox, in transactions that hold only while `owner` still holds
        the namespace's lock (an engine that was taken over while away writes nothing
        into its successor's streams: TakenOver). Raises RedisError/OSError with what is
        unwritten kept."""
        while self.outbox:
            batch = list(itertools.islice(self.outbox, BATCH))
            top = batch[-1][3]
            async with r.pipeline(transaction=True) as pipe:
                await pipe.watch(self.keys.lock)
                holder = await pipe.get(self.keys.lock)
                if holder is not None and holder.decode() != owner:
                    raise TakenOver(holder.decode())
                pipe.multi()
                for key, sid, fields, _ in batch:
                    pipe.xadd(key, fields, id=sid, maxlen=self.maxlen, approximate=True)
                pipe.hset(
                    self.keys.meta,
                    mapping={
                        "last": top,
                        **{f"last:{c}": p for c, p in self.prev.items() if p <= top},
                    },
                )
                try:
                    results = await pipe.execute(raise_on_error=False)
                except WatchError:
                    continue  # the lock changed meanwhile: look again
            for result in results:
                # A transaction cut off after it ran, sent again: written already.
                if isinstance(result, ResponseError) and "equal or smaller" not in str(result):
                    raise result
                if isinstance(result, Exception) and not isinstance(result, ResponseError):
                    raise result
            # By identity: if the outbox overflowed meanwhile, the batch's oldest are
            # gone already, and newer entries must not be taken for them.
            for item in batch:
                if self.outbox and self.outbox[0] is item:
                    self.outbox.popleft()
            self.written = max(self.written, top)


class TakenOver(Exception):
    """Another engine holds the namespace: this one was away longer than its lock."""


class EngineNode:
    def __init__(self, config: Config, source: Source, info: SourceInfo, reload: Any) -> None:
        self.config = config
        self.cfg = config.broker
        self.keys = Keys(self.cfg.namespace)
        self.id = secrets.token_hex(6)
        self.r: Any = broker.client(self.cfg)
        self.rb: Any = broker.blocking_client(self.cfg, REQUEST_BLOCK)
        self.hub = Hub(0)  # numbers only: the gateways keep the history
        self.source, self.info, self.reload = source, info, reload
        self.epoch = secrets.token_hex(4)
        self.broker_up = True
        self.publisher: Publisher | None = None
        self.feed: Feed | None = None
        self._checkpoints: deque[tuple[float, int]] = deque()  # (wall, last) for max_age
        self.stopped = asyncio.Event()
        self.taken_over = False

    # --- start: the lock, the epoch ---------------------------------------------

    async def claim(self) -> bool:
        """Own the namespace (another engine in it is waited for: one at a time), then
        begin an epoch after the namespace's last position."""
        ttl = int(STATE_TTL * 1000)
        waited = False
        while not await self.r.set(self.keys.lock, self.id, nx=True, px=ttl):
            if self.stopped.is_set():
                return False  # stopped while waiting: nothing of ours to give up
            if not waited:
                log.warning(
                    "another engine holds namespace %r; waiting for it to go away",
                    self.cfg.namespace,
                )
                waited = True
            await asyncio.sleep(0.5)
        last = int(await self.r.hget(self.keys.meta, "last") or 0)
        # Never below what a gateway has delivered, even if Redis lost the meta (it
        # restarted empty): an id is never handed out twice while anyone holds it.
        high = int(await self.r.get(self.keys.high_water) or 0)
        base = max(last, high) + 1
        pipe = self.r.pipeline(transaction=True)
        # The old epoch's history is of another run: nobody may resume into it.
        pipe.delete(*self.keys.streams.values(), self.keys.ctl, self.keys.meta)
        pipe.hset(self.keys.meta, mapping={"epoch": self.epoch, "base": base, "last": last})
        await pipe.execute()
        self.publisher = Publisher(self.keys, self.epoch, base, self.config.history.max_events)
        sim = self.config.simulation
        self.feed = Feed(
            self.hub,
            self.source,
            self.info,
            speed=sim.speed,
            lag_warning=sim.lag_warning,
            on_control=self._on_control,
            sink=self.publisher.event,
            reload=self.reload,
            on_reset=self._on_reset,
        )
        self.feed.seq = base - 1
        self.publisher.control(
            "epoch.start", {"epoch": self.epoch, "base": base}, self.source.now, self.info.seed
        )
        log.info(
            "engine %s owns namespace %r at %s: epoch %s, ids from evt-%d",
            self.id,
            self.cfg.namespace,
            broker.redact(self.cfg.url),
            self.epoch,
            base,
        )
        return True

    def _on_control(self, event: Event) -> None:
        assert self.publisher is not None and self.feed is not None
        self.publisher.control(event.name, event.data, event.time, self.feed.info.seed)

    def _on_reset(self) -> None:
        # A run ended or another began: the faults it started end on every gateway.
        assert self.publisher is not None and self.feed is not None
        self.publisher.control("run.reset", {}, self.feed.source.now, self.feed.info.seed)

    # --- the tasks ---------------------------------------------------------------

    async def run(self) -> None:
        try:
            if await self.claim():  # else stopped while waiting: nothing of ours to give up
                await self._serve()
        finally:
            await self.r.aclose()
            await self.rb.aclose()
        if self.taken_over:
            raise SystemExit(1)

    async def _serve(self) -> None:
        assert self.feed is not None
        control = LocalControl(self.feed, self.config.simulation)
        tasks = [
            asyncio.create_task(self.feed.run(), name="feed"),
            asyncio.create_task(self._writer(), name="writer"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(self._requests(control), name="requests"),
        ]
        stop = asyncio.create_task(self.stopped.wait(), name="stop")
        try:
            done, _ = await asyncio.wait([*tasks, stop], return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a task that ended on its own is a bug: say which
        finally:
            # Cancelled tasks, not a cancelled run(): a cancel can be lost inside a
            # redis-py call on Python 3.11, broker.cancel insists until they are done.
            await broker.cancel([*tasks, stop])
            if not self.taken_over:  # else the namespace, its state and lock are another's
                await self._leave()

    def _taken_over(self, by: str) -> None:
        """Another engine owns the namespace now: stop, writing nothing more."""
        if not self.taken_over:
            log.error(
                "engine %s lost namespace %r to %s (unreachable for longer than the lock); "
                "stopping without writing",
                self.id,
                self.cfg.namespace,
                by,
            )
        self.taken_over = True
        self.stopped.set()

    def stop(self) -> None:
        """Stop cleanly (SIGTERM): what is left is written, the namespace given up."""
        self.stopped.set()

    async def _leave(self) -> None:
        """On a clean stop: write what is left (briefly), then give the namespace up at
        once so that gateways say so and a new engine need not wait for the lock."""
        assert self.publisher is not None
        with contextlib.suppress(RedisError, OSError, TimeoutError, TakenOver):
            await asyncio.wait_for(self.publisher.flush(self.r, self.id), 2.0)
            pipe = self.r.pipeline(transaction=False)
            pipe.delete(self.keys.engine)
            pipe.eval(_RELEASE, 1, self.keys.lock, self.id)
            await asyncio.wait_for(pipe.execute(), 2.0)

    async def _writer(self) -> None:
        publisher = self.publisher
        assert publisher is not None
        backoff = 0.1
        while True:
            await publisher.wake.wait()
            publisher.wake.clear()
            try:
                await publisher.flush(self.r, self.id)
            except TakenOver as exc:
                self._taken_over(str(exc))
                return
            except (RedisError, OSError) as exc:
                self._down(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                publisher.wake.set()  # try again
                continue
            backoff = 0.1
            self._up()

    def _down(self, exc: BaseException) -> None:
        if self.broker_up:
            log.error(
                "broker unreachable (%s); simulating on, keeping up to %d entries to write",
                exc,
                self.publisher.outbox.maxlen if self.publisher else 0,
            )
        self.broker_up = False

    def _up(self) -> None:
        if not self.broker_up:
            dropped = self.publisher.dropped if self.publisher else 0
            log.warning(
                "broker reachable again%s",
                f"; {dropped} entries did not fit the outbox (gateways see the gap)"
                if dropped
                else "; nothing lost",
            )
        self.broker_up = True

    def state(self) -> dict[str, Any]:
        assert self.feed is not None and self.publisher is not None
        return {
            **self.feed.state(),
            "engine": self.id,
            "epoch": self.epoch,
            "base": self.publisher.base,
            "position": self.publisher.written,
            # For a gateway's own clock (timestamps of replies): where simulated time
            # stands at wall time `wall`.
            "wall": time.time(),
            "now": self.feed.now(),
        }

    async def _heartbeat(self) -> None:
        max_age = self.config.history.max_age
        while True:
            try:
                await self._beat(max_age)
            except (RedisError, OSError) as exc:
                self._down(exc)
            await asyncio.sleep(STATE_EVERY)

    async def _beat(self, max_age: float) -> None:
        assert self.publisher is not None
        owner = await self.r.eval(_RENEW, 1, self.keys.lock, self.id, int(STATE_TTL * 1000))
        if owner != 1:
            self._taken_over("another engine")
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.set(self.keys.engine, json.dumps(self.state()), px=int(STATE_TTL * 1000))
        # Redis came back empty (restarted without persistence): the epoch is still ours.
        pipe.hsetnx(self.keys.meta, "epoch", self.epoch)
        pipe.hsetnx(self.keys.meta, "base", self.publisher.base)
        if max_age > 0:
            now = time.time()
            self._checkpoints.append((now, self.publisher.written))
            oldest = None
            while self._checkpoints and self._checkpoints[0][0] < now - max_age:
                oldest = self._checkpoints.popleft()[1]
            if oldest is not None:
                for key in self.keys.streams.values():
                    pipe.xtrim(key, minid=stream_id(oldest + 1), approximate=True)
        await pipe.execute()
        self._up()

    async def _requests(self, control: LocalControl) -> None:
        backoff = 0.1
        while True:
            try:
                item = await self.rb.blpop([self.keys.requests], timeout=REQUEST_BLOCK)
            except (RedisError, OSError) as exc:
                self._down(exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            backoff = 0.1
            if item is None:
                continue
            try:
                request = json.loads(item[1])
                rid, op, body = str(request["id"]), request["op"], request.get("body")
                deadline = float(request["deadline"])
            except (ValueError, KeyError, TypeError):
                log.warning("ignored a malformed control request")
                continue
            if time.time() > deadline:
                continue  # its gateway gave up on it: carrying it out now would surprise
            reply = await self._answer(control, op, body)
            try:
                pipe = self.r.pipeline(transaction=False)
                pipe.rpush(self.keys.reply(rid), json.dumps(reply))
                pipe.expire(self.keys.reply(rid), 30)
                if op in ("command", "inject"):  # the others change nothing
                    pipe.set(self.keys.engine, json.dumps(self.state()), px=int(STATE_TTL * 1000))
                await pipe.execute()
            except (RedisError, OSError) as exc:
                self._down(exc)

    async def _answer(self, control: LocalControl, op: str, body: Any) -> dict[str, Any]:
        try:
            if op == "snapshot":
                return {"ok": await control.snapshot()}
            if op == "timeline":
                return {"ok": await control.timeline()}
            if not isinstance(body, dict):
                raise ControlError(None, "the body must be a JSON object")
            if op == "command":
                return {"ok": await control.command(body)}
            if op == "inject":
                return {"ok": await control.inject(body)}
            raise ControlError(None, f"unknown request {op!r}")
        except ControlError as exc:
            return {"error": {"field": exc.field, "problem": exc.problem, "status": exc.status}}
        except Exception as exc:  # a bug: the gateway says 500, the engine goes on
            log.exception("control request %s failed", op)
            return {"error": {"field": None, "problem": f"engine error: {exc}", "status": 500}}


# Renew the lock if it is ours, take it again if Redis lost it; 0 if another has it.
_RENEW = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not owner then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
