"""The one bridge from the simulation to the hub: pace a source against the wall clock,
number its events, serialise each once and publish it.

Simulated time runs at `speed` times the wall clock from an anchor; pausing freezes it,
`step` moves it by hand. The source is stepped in whole ticks whatever the pacing, so a
served stream equals the headless one for the same scenario, seed and start. When the
source cannot keep up, the feed says so in the log and on /metrics instead of drifting
silently.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from phoenix import protocol
from phoenix.hub import Hub, Published
from simulator.events import CONTROL, Event

log = logging.getLogger("phoenix.feed")

TICK = 0.05  # wall seconds between pacing steps
# At most this much wall time of simulated work before yielding the loop, so writers
# drain between slices and a burst never piles a whole catch-up onto every queue.
SLICE = 0.02


class Source(Protocol):
    """What the feed needs of a simulation (the Engine) or a recorded stream."""

    @property
    def now(self) -> float: ...

    @property
    def end(self) -> float | None: ...

    def advance_to(self, t: float) -> list[Event]: ...

    def snapshot(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class SourceInfo:
    kind: str  # "scenario" | "replay"
    name: str
    seed: int | None = None
    ref: str | None = None  # what loads it again: a bundled name or a file path


class FeedView(Protocol):
    """What the server reads of the feed: the Feed in one process, or on a gateway the
    engine's as last published (phoenix.gateway.RemoteFeed)."""

    info: SourceInfo
    speed: float
    lag: float

    def now(self) -> float: ...

    def state(self) -> dict[str, Any]: ...


# Builds the source `info` describes again, starting at the given simulated time, as
# the next run after the given (ended) source.
Reload = Callable[[SourceInfo, float, Source], tuple[Source, SourceInfo]]


def published(seq: int, event: Event) -> Published:
    frame = protocol.event_frame(seq, event)
    narrow = None
    if event.name in protocol.NARROWED_EVENTS:

        def narrow(exp: str, seq: int = seq, event: Event = event) -> bytes:
            return protocol.event_frame(seq, event, protocol.narrow(event, exp))

    return Published(seq, event.channel, event.name, event.tags, frame, narrow, time=event.time)


class Feed:
    def __init__(
        self,
        hub: Hub,
        source: Source,
        info: SourceInfo,
        speed: float = 1.0,
        lag_warning: float = 2.0,
        on_control: Callable[[Event], None] | None = None,
        sink: Callable[[Published], object] | None = None,
        reload: Reload | None = None,
        on_reset: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hub = hub
        # Where numbered events go: the hub, or the fault gate in front of it.
        self.sink = sink or hub.publish
        # With `reload`, a finished scenario starts over where it ended: the same story
        # again, with time still moving forward (and ids still increasing).
        self.reload = reload
        # Called when a run ends or another begins: what it started (faults) ends with it.
        self.on_reset = on_reset
        self.error: str | None = None  # why the feed stopped, if a bug stopped it
        self._unreloadable: Source | None = None  # a run that failed to start over
        self._ended = False
        self.on_control = on_control
        self.lag_warning = lag_warning
        self._clock = clock
        self.seq = 0
        self.lag = 0.0  # wall seconds the simulation is behind its schedule
        self._warned_at = -1e9
        self._wake = asyncio.Event()
        self.speed = speed
        self._start(source, info, speed)

    # --- the simulated clock ---------------------------------------------------

    def load(self, source: Source, info: SourceInfo, speed: float | None = None) -> None:
        """Restart on `source`, ending the run before; event ids keep increasing."""
        if self.on_reset is not None:
            self.on_reset()
        self._start(source, info, speed)

    def _start(self, source: Source, info: SourceInfo, speed: float | None) -> None:
        self._ended = False
        self.error = None
        self.pause_at: float | None = None  # a pause asked for at a simulated time
        self.source = source
        self.info = info
        self.speed = speed if speed is not None else self.speed
        self.paused = False
        self._anchor(source.now)
        self._wake.set()

    def _anchor(self, sim: float) -> None:
        self._sim0 = sim
        self._wall0 = self._clock()

    def now(self) -> float:
        """Simulated time now (what the schedule says, not where the source is)."""
        if self.paused:
            return self._sim0
        t = self._sim0 + (self._clock() - self._wall0) * self.speed
        end = self.source.end
        return t if end is None else min(t, end)

    @property
    def finished(self) -> bool:
        end = self.source.end
        return end is not None and self.source.now >= end

    def pause(self) -> None:
        self.pause_at = None
        if not self.paused:
            self._anchor(self.now())
            self.paused = True

    def pause_when(self, t: float) -> None:
        """Pause when simulated time reaches `t` (at once if it has): a presenter's
        "stop just before the next scheduled thing". The run goes on to exactly `t`."""
        if t <= self.source.now:
            self.pause()
        else:
            self.pause_at = t
            self._wake.set()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._anchor(self._sim0)
            self._wake.set()

    def set_speed(self, speed: float) -> None:
        self._anchor(self.now())
        self.speed = speed
        self._wake.set()

    def step(self, seconds: float) -> int:
        """Advance by hand, at once (scripted sources in tests); returns events published.
        The HTTP API uses `advance`, which never holds the event loop for long."""
        target = self.source.now + seconds
        count = self._publish(self.source.advance_to(target))
        self._anchor(max(self.now(), self.source.now))
        return count

    async def advance(self, seconds: float) -> int:
        """Advance by hand (meant for a paused simulation) in slices of at most SLICE of
        wall time, yielding the loop between them; returns events published."""
        count = await self._run_to(self.source.now + seconds)
        self._anchor(max(self.now(), self.source.now))
        return count

    def state(self) -> dict[str, Any]:
        from simulator.clock import rfc3339

        return {
            "source": self.info.kind,
            "scenario": self.info.name,
            "seed": self.info.seed,
            "speed": self.speed,
            "paused": self.paused,
            "finished": self.finished,
            "simulated_time": rfc3339(self.source.now),
            "last_event_id": f"evt-{self.seq}" if self.seq else None,
            "pause_at": rfc3339(self.pause_at) if self.pause_at is not None else None,
            "lag_seconds": round(self.lag, 3),
            "error": self.error,
            # The simulation's own faults in force (spike, error_surge, ...); the server
            # adds the delivery faults it carries out (GET /api/sim's `faults`).
            "faults": self._sim_faults(),
        }

    def _sim_faults(self) -> list[dict[str, Any]]:
        active = getattr(self.source, "active_faults", None)
        if active is None:
            return []
        return [
            {
                "id": f["id"],
                "fault": f["type"],
                "target": f["target"],
                "params": f["params"],
                "started": f["started_at"],
                "ends": f["ends_at"],
            }
            for f in active()
        ]

    # --- publishing ------------------------------------------------------------

    def _publish(self, events: list[Event]) -> int:
        count = 0
        for event in events:
            if event.channel == CONTROL:
                if self.on_control is not None:
                    self.on_control(event)
                continue
            try:
                frame = published(self.seq + 1, event)
            except (TypeError, ValueError) as exc:  # not JSON (NaN, say): never send it
                log.error(
                    "dropped %s at %s: cannot be serialised (%s)", event.name, event.time, exc
                )
                continue
            self.seq += 1
            self.hub.issued = self.seq
            self.sink(frame)
            count += 1
        return count

    async def run(self) -> None:
        """Pace the source forever (cancel to stop)."""
        while True:
            if self.finished and not self._ended:
                self._ended = True
                if self.on_reset is not None:
                    self.on_reset()  # faults of a finished run end with it
            if (
                self.finished
                and self.reload
                and self.info.ref
                and not self.paused
                and self.source is not self._unreloadable
            ):
                # The last tick ran at `end`; the next run's first tick is one later.
                again = self.source.now + 1.0
                # Off the loop: loading a scenario file and building a fleet take time.
                ended = self.source
                try:
                    source, info = await asyncio.to_thread(self.reload, self.info, again, ended)
                except Exception as exc:  # the file changed under us, say: stop looping
                    log.error("cannot start scenario %s over: %s", self.info.name, exc)
                    self.error = f"cannot start the scenario over: {exc}"
                    self._unreloadable = ended  # this run ends here; a restart loops again
                    continue
                if self.source is ended:  # not replaced by a restart meanwhile
                    log.info("scenario %s finished; starting it over", info.name)
                    paused = self.paused  # an admin's pause while it loaded still holds
                    self.load(source, info)
                    if paused:
                        self.pause()
                continue
            if self.paused or self.finished:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._catch_up()
            except Exception as exc:
                # A bug in a source must not take the server down with it, nor be
                # silent: pause, say why in the log and in GET /api/sim.
                log.exception("the simulation stopped on an internal error; paused")
                self.pause()
                self.error = f"{type(exc).__name__}: {exc}"
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), TICK)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _catch_up(self) -> None:
        await self._run_to(self.now(), until_paused=True)
        if self.pause_at is not None and self.source.now >= self.pause_at:
            # Paused at exactly the time asked for, not where the wall clock is now.
            self._anchor(self.pause_at)
            self.paused, self.pause_at = True, None
            log.info("paused at %s, as asked", self.state()["simulated_time"])
        self._measure_lag()

    async def _run_to(self, target: float, until_paused: bool = False) -> int:
        """Run the source up to `target` one tick at a time, yielding the loop whenever a
        slice has taken SLICE of wall time: however far the target (a high speed, a long
        step, a slow source), sockets keep being served meanwhile, and a source that
        cannot keep up shows as lag. Stops early if the run is replaced (a restart)."""
        source = self.source
        end = source.end
        limit = target if end is None else min(target, end)
        if until_paused and self.pause_at is not None:
            limit = min(limit, self.pause_at)  # a step by hand may pass it
        started = self._clock()
        count = 0
        while source.now < limit and source is self.source:
            if until_paused and self.paused:
                break
            before = source.now
            count += self._publish(source.advance_to(min(limit, math.floor(before) + 1.0)))
            if source.now <= before:
                break  # a source that does not move (at its end) must not spin here
            if self._clock() - started > SLICE:
                await asyncio.sleep(0)
                started = self._clock()
        return count

    def _measure_lag(self) -> None:
        behind = self.now() - self.source.now
        # One tick of granularity is not lag; more than that is.
        self.lag = max(0.0, behind - 1.0) / self.speed
        if self.lag > self.lag_warning and self._clock() - self._warned_at > 10.0:
            self._warned_at = self._clock()
            log.warning(
                "simulation is %.1f s behind the wall clock at speed %g: the source cannot "
                "keep up; lower --speed or the event rate",
                self.lag,
                self.speed,
            )
