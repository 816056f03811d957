"""Delivery faults, carried out on the server side: closing connections, latency, bursts,
duplicates, reordering, a pause then a flood, an expiring-token storm, a rate-limit squeeze
and a server restart. (Faults that change the simulation are the engine's.)

Faults start and end as CONTROL events from the source, in order with the events and at
their simulated time, whether a scenario scheduled them or POST /api/sim/faults injected
them; so a run repeats exactly. Each fault draws from its own RNG seeded by the run's seed
and the fault's id. The parameters and their defaults are part of the scenario schema
(`simulator.scenario.DELIVERY_FAULTS`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from phoenix import keys, protocol
from phoenix.connection import Connection
from phoenix.hub import Published
from phoenix.protocol import Close
from simulator.clock import rfc3339
from simulator.events import Event
from simulator.scenario import DELIVERY_FAULTS

log = logging.getLogger("phoenix.faults")

# Faults that hold events back while they last; their end lets them go.
HOLDING = ("pause_delivery", "burst", "reorder")


@dataclass
class Active:
    id: str
    fault: str
    params: dict[str, Any]
    started: float  # simulated
    duration: float
    rng: random.Random = field(repr=False, default_factory=random.Random)
    wall_started: float = 0.0
    wall_ends: float = 0.0  # server_restart: when its downtime ends, in wall time

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "fault": self.fault,
            "params": self.params,
            "started": rfc3339(self.started),
            "ends": rfc3339(self.started + self.duration) if self.duration else None,
        }


class Faults:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._active: dict[str, Active] = {}
        self._held: list[Published] = []
        self.delay: Callable[[], float] | None = None  # latency: seconds to add per frame
        # Added to each fault's seed: a gateway's index (each draws its own, repeatably).
        self.salt = ""

    # --- what the rest of the server asks -------------------------------------

    def active(self) -> list[dict[str, Any]]:
        return [a.describe() for a in self._active.values()]

    def active_counts(self) -> Counter[str]:
        return Counter(a.fault for a in self._active.values())

    def _first(self, kind: str) -> Active | None:
        return next((a for a in self._active.values() if a.fault == kind), None)

    @property
    def restarting(self) -> bool:
        return self._first("server_restart") is not None

    def retry_after(self) -> int:
        """Wall seconds until a server_restart's downtime ends."""
        fault = self._first("server_restart")
        if fault is None:
            return 0
        return max(1, math.ceil(fault.wall_ends - time.time()))

    def limit(self, name: str, configured: float) -> float:
        """A limit as it stands now: the configured one, or a squeeze's."""
        squeeze = self._first("rate_limit_squeeze")
        value = squeeze.params.get(name) if squeeze is not None else None
        return configured if value is None else min(configured, value)

    def token_expired(self, issued_at: float | None) -> bool:
        """During an expiring-token storm, tokens issued before it count as expired."""
        storm = self._first("token_expiry_storm")
        if storm is None:
            return False
        # Whole seconds, as `iat` is: a token issued in the storm's first second is new.
        return issued_at is None or issued_at < int(storm.wall_started)

    # --- control events --------------------------------------------------------

    def on_control(self, event: Event) -> None:
        data = event.data
        if event.name == "fault.start":
            self.start(
                str(data["id"]),
                str(data["fault"]),
                dict(data.get("params") or {}),
                float(data.get("duration_seconds") or 0.0),
                event.time,
            )
        elif event.name == "fault.end":
            self.end(str(data["id"]))

    def start(self, fid: str, kind: str, params: dict[str, Any], duration: float, t: float) -> None:
        params = {**DELIVERY_FAULTS.get(kind, {}), **params}
        feed = self.app[keys.FEED]
        rng = random.Random(f"{feed.info.seed}:{fid}{self.salt}")
        fault = Active(fid, kind, params, t, duration, rng, time.time())
        log.warning(
            "fault %s started: %s %s%s",
            fid,
            kind,
            params,
            f" for {duration:g} s" if duration else "",
        )
        self.app[keys.METRICS].fault(kind)
        if duration:
            self._active[fid] = fault
        # Faults that act while they last (duplicate, reorder, pause_delivery, burst,
        # rate_limit_squeeze) need nothing at their start but to be active.
        start = {
            "close_connections": self._close_connections,
            "latency": self._start_latency,
            "token_expiry_storm": self._expire_tokens,
            "server_restart": self._restart,
        }.get(kind)
        if kind == "burst":
            self._active.setdefault(fid, fault)  # holds until `count` events, or its end
        if start is not None:
            start(fault)

    def end(self, fid: str) -> None:
        fault = self._active.pop(fid, None)
        if fault is None:
            return
        log.warning("fault %s ended: %s", fid, fault.fault)
        if fault.fault == "latency":
            other = self._first("latency")  # overlapping latency faults: the other goes on
            self.delay = self._sampler(other) if other is not None else None
        if fault.fault in HOLDING:
            self._flush()

    def _end_this(self, fault: Active) -> None:
        if self._active.get(fault.id) is fault:  # not a later fault with the same id
            self.end(fault.id)

    def clear(self) -> None:
        """A restarted simulation starts with no faults (held events are delivered)."""
        self._active.clear()
        self.delay = None
        self._flush()

    # --- the publish gate: hold, burst, reorder, duplicate ---------------------

    def publish(self, event: Published) -> None:
        if self._held or self._holding():
            self._held.append(event)
            # No fault holds more than a client's outbound queue: past it, what is held
            # goes out (a pause floods early and goes on holding), so memory stays
            # bounded and a flood alone never evicts a client that reads.
            cap = self.app[keys.CONFIG].limits.outbound_queue
            burst, reorder = self._first("burst"), self._first("reorder")
            if self._first("pause_delivery") is None:
                if burst is not None and len(self._held) >= min(burst.params["count"], cap):
                    self._end_instant_burst(burst)
                    self._flush()
                elif reorder is not None and len(self._held) >= min(reorder.params["window"], cap):
                    reorder.rng.shuffle(self._held)
                    self._flush()
            if len(self._held) >= cap:
                self._flush()
            return
        self._emit(event)

    def _holding(self) -> bool:
        return any(a.fault in HOLDING for a in self._active.values())

    def _flush(self) -> None:
        held, self._held = self._held, []
        for event in held:
            self._emit(event)

    def _emit(self, event: Published) -> None:
        hub = self.app[keys.HUB]
        hub.publish(event)
        dup = self._first("duplicate")
        if dup is not None and dup.rng.random() < dup.params["probability"]:
            hub.deliver(event)

    def _end_instant_burst(self, burst: Active) -> None:
        if not burst.duration:
            self._active.pop(burst.id, None)

    # --- each fault's start ----------------------------------------------------

    def _pick(self, fault: Active, conns: list[Connection]) -> list[Connection]:
        """A seeded share of the connections, in connection order."""
        conns = sorted(conns, key=lambda c: c.serial)
        k = round(fault.params.get("share", 1.0) * len(conns))
        return sorted(fault.rng.sample(conns, k), key=lambda c: c.serial)

    def _close_connections(self, fault: Active) -> None:
        hub, params = self.app[keys.HUB], fault.params
        conns = [
            c
            for c in self.app[keys.CONNECTIONS].all()
            if (params.get("user") is None or c.claims.sub == params["user"])
            and (params.get("channel") is None or params["channel"] in hub.channels_of(c))
        ]
        chosen = self._pick(fault, conns)
        for conn in chosen:
            if params.get("abrupt"):
                conn.abort()
            else:
                conn.close(params["code"], f"fault {fault.id}: close_connections", why="fault")
        log.warning(
            "fault %s closed %d of %d connections%s",
            fault.id,
            len(chosen),
            len(conns),
            " abruptly" if params.get("abrupt") else f" with {params['code']}",
        )

    def _start_latency(self, fault: Active) -> None:
        self.delay = self._sampler(fault)

    @staticmethod
    def _sampler(fault: Active) -> Callable[[], float]:
        mean = fault.params["delay_ms"] / 1000.0
        spread = fault.params["jitter_ms"] / 1000.0
        dist, rng = fault.params["distribution"], fault.rng
        if dist == "uniform":
            return lambda: max(0.0, rng.uniform(mean - spread, mean + spread))
        if dist == "exponential":
            return lambda: rng.expovariate(1.0 / mean) if mean > 0 else 0.0
        return lambda: max(0.0, rng.gauss(mean, spread))

    def _expire_tokens(self, fault: Active) -> None:
        feed, metrics = self.app[keys.FEED], self.app[keys.METRICS]
        chosen = self._pick(fault, self.app[keys.CONNECTIONS].all())
        err = protocol.unauthorized("expired", "The token has expired")
        frame = protocol.error_frame(err, None, feed.now()).encode()
        for conn in chosen:
            metrics.auth_failure("expired")
            metrics.error(err)
            conn.fail(frame, Close.UNAUTHORIZED, err.message, why="fault")
        log.warning("fault %s expired the tokens of %d connections", fault.id, len(chosen))

    def _restart(self, fault: Active) -> None:
        # An outage of the server, not of the simulation: the downtime is wall time (its
        # duration at the speed in force when it starts), so a pause neither extends it
        # nor locks anyone out for as long as the pause lasts. Its end in simulated time
        # then finds it over already.
        feed = self.app[keys.FEED]
        downtime = fault.duration / feed.speed
        fault.wall_ends = fault.wall_started + downtime
        asyncio.get_running_loop().call_later(downtime, self._end_this, fault)
        conns = self.app[keys.CONNECTIONS].all()
        for conn in conns:
            conn.close(Close.SERVICE_RESTART, "server restart")
        log.warning(
            "fault %s: restarting, %d connections dropped, refusing new ones for %g s",
            fault.id,
            len(conns),
            downtime,
        )
