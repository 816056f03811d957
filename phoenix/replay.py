"""A recorded stream as a source: JSON Lines of wire envelopes (what `phoenix simulate
--out` writes, or a capture from a real Phoenix deployment), paced by their timestamps.

Each line is checked; a bad one is reported with its line number and skipped, never
silently. The events get this server's own ids (so resume works on them) and the filter
tags are read from their data. The snapshot the HTTP API serves is folded from the events
played so far. Delivery faults can be injected as on a simulation.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
from pathlib import Path
from typing import Any

from simulator.clock import parse_rfc3339
from simulator.events import CHANNELS, CONTROL, FILTER_KEYS, Event
from simulator.scenario import ScenarioError, check_fault, parse_scenario

log = logging.getLogger("phoenix.replay")

# The channel whose events carry an entity's own id as `id`.
OWN_ID = {"experiments": "experiment_id"}


class ReplayError(Exception):
    pass


def tags_of(channel: str, data: dict[str, Any]) -> dict[str, str]:
    tags = {k: v for k in FILTER_KEYS if isinstance(v := data.get(k), str)}
    own = OWN_ID.get(channel)
    if own is not None and isinstance(data.get("id"), str):
        tags[own] = data["id"]
    return tags


def _not_json(name: str) -> None:
    # Python's json reads NaN and Infinity; JSON has no such thing, nor will we send it.
    raise ValueError(f"{name} is not a JSON number")


def parse_line(text: str) -> Event:
    """One envelope -> Event; raises ValueError saying what is wrong."""
    try:
        obj = json.loads(text, parse_constant=_not_json)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if obj.get("type", "event") != "event":
        raise ValueError(f"a '{obj.get('type')}' frame, not an event")
    channel, name, data, stamp = (obj.get(k) for k in ("channel", "event", "data", "timestamp"))
    if channel not in CHANNELS:
        raise ValueError(f"channel: expected one of {', '.join(CHANNELS)}, got {channel!r}")
    if not isinstance(name, str) or not name:
        raise ValueError("event: expected an event name")
    if not isinstance(data, dict):
        raise ValueError("data: expected an object")
    try:
        if not isinstance(stamp, str):
            raise TypeError
        t = parse_rfc3339(stamp)
    except (TypeError, ValueError):
        raise ValueError(f"timestamp: expected RFC 3339, got {stamp!r}") from None
    # Whole seconds stay whole; a sub-second time (our heartbeats above one per agent per
    # second, or another recorder's) keeps its milliseconds.
    return Event(round(t * 1000) / 1000, channel, name, data, tags_of(channel, data))


def read_recording(path: str | Path) -> tuple[list[Event], list[str]]:
    """Events in file order (times never go backwards) and one message per skipped line."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise ReplayError(f"{p}: cannot read the recording ({exc.strerror})") from None
    events: list[Event] = []
    problems: list[str] = []
    last = -math.inf
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = parse_line(line)
        except ValueError as exc:
            problems.append(f"{p.name}:{number}: skipped: {exc}")
            continue
        if event.time < last:
            problems.append(f"{p.name}:{number}: timestamp goes back in time; played in file order")
            event = Event(last, event.channel, event.name, event.data, event.tags)
        last = event.time
        events.append(event)
    if not events:
        raise ReplayError(f"{p}: no events to replay ({len(problems)} lines skipped)")
    return events, problems


class ReplaySource:
    def __init__(self, path: str | Path, loop: bool = False) -> None:
        self.path = Path(path)
        self.events, self.problems = read_recording(path)
        for problem in self.problems:
            log.warning("%s", problem)
        self.loop = loop
        self._first = self.events[0].time
        self._span = self.events[-1].time - self._first + 1.0  # one cycle, in seconds
        self._now = self._first
        self._cycle = 0
        self._index = 0
        self._order = itertools.count()
        self._control: list[tuple[float, int, Event]] = []  # injected faults, by time
        self._fault_ids = itertools.count(1)
        self._state = _Fold()
        # Only for checking injected faults against the schema (no experiments, no fleet).
        self._schema = parse_scenario("name: replay\n", "replay")

    @property
    def now(self) -> float:
        return self._now

    @property
    def end(self) -> float | None:
        return None if self.loop else self.events[-1].time

    def advance_to(self, t: float) -> list[Event]:
        if self.end is not None:
            t = min(t, self.end)
        out: list[Event] = []
        while True:
            event = self._peek()
            control = self._control[0] if self._control else None
            if (
                control is not None
                and control[0] <= t
                and (event is None or control[0] <= event.time)
            ):
                out.append(heapq.heappop(self._control)[2])
                continue
            if event is None or event.time > t:
                break
            self._index += 1
            if self._index == len(self.events) and self.loop:
                self._index, self._cycle = 0, self._cycle + 1
            self._state.apply(event)
            out.append(event)
        self._now = max(self._now, t)
        return out

    def _peek(self) -> Event | None:
        if self._index >= len(self.events):
            return None
        e = self.events[self._index]
        if self._cycle:
            shift = self._cycle * self._span
            e = Event(e.time + shift, e.channel, e.name, e.data, e.tags)
        return e

    def inject(self, fault: dict[str, Any]) -> None:
        checked = check_fault(fault, self._schema, source="inject")
        if not checked.delivery:
            raise ScenarioError(
                f"inject: type: a replayed stream takes delivery faults only, not '{checked.type}'"
            )
        fid = f"fault-{next(self._fault_ids)}"
        start = math.floor(self._now) + 1.0
        data = {
            "fault": checked.type,
            "id": fid,
            "params": dict(checked.params),
            "duration_seconds": checked.duration,
        }
        heapq.heappush(
            self._control, (start, next(self._order), Event(start, CONTROL, "fault.start", data))
        )
        if checked.duration:
            end = start + checked.duration
            heapq.heappush(
                self._control,
                (
                    end,
                    next(self._order),
                    Event(
                        end,
                        CONTROL,
                        "fault.end",
                        {"fault": checked.type, "id": fid, "params": dict(checked.params)},
                    ),
                ),
            )

    def snapshot(self) -> dict[str, Any]:
        return self._state.snapshot()


class _Fold:
    """The current state, folded from the events played so far."""

    KEYS = {
        "experiments": "id",
        "agents": "agent_id",
        "deployments": "deployment_id",
        "alerts": "alert_id",
    }

    def __init__(self) -> None:
        self.items: dict[str, dict[str, dict[str, Any]]] = {k: {} for k in self.KEYS}

    def apply(self, e: Event) -> None:
        if e.name == "metrics.update":
            for exp_id, m in (e.data.get("experiments") or {}).items():
                if exp_id in self.items["experiments"]:
                    self.items["experiments"][exp_id]["metrics"] = m
            return
        kind = e.channel if e.channel in self.KEYS else None
        if kind is None:
            return
        key = e.data.get(self.KEYS[kind])
        if not isinstance(key, str):
            return
        item = self.items[kind].setdefault(key, {})
        item.update(e.data)
        if e.name == "agent.disconnected":
            item["status"] = "offline"
        elif e.name == "agent.connected":
            item["status"] = "healthy"
        elif e.name == "alert.triggered":
            item["status"] = "active"
        elif e.name == "alert.resolved":
            item["status"] = "resolved"

    def snapshot(self) -> dict[str, Any]:
        return {k: list(v.values()) for k, v in self.items.items()}
