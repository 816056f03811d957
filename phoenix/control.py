"""The simulation's controls (pause, resume, step, speed, restart, set_rate, a fault now)
and what the HTTP API reads of it (state, snapshot), carried out on a Feed.

One home for them, whoever asks: the HTTP API of the one-process server calls
`LocalControl` directly; a gateway sends the same request bodies over the broker to the
engine, which runs them through a `LocalControl` of its own (phoenix.gateway,
phoenix.engine). So every check and every error is the same in both.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from phoenix.config import MAX_STEP, SCHEMA, ConfigError, SimulationConfig
from phoenix.feed import Feed
from phoenix.sources import restartable, scenario_source
from simulator.scenario import ScenarioError

log = logging.getLogger("phoenix.control")

ACTIONS = ("pause", "resume", "step", "speed", "restart", "set_rate")

ACTION_FIELDS: dict[str, tuple[str, ...]] = {
    "pause": ("at",),
    "resume": (),
    "step": ("seconds",),
    "set_rate": ("channel", "per_second"),
    "speed": ("speed",),
    "restart": ("scenario", "seed", "start", "speed"),
}


class ControlError(Exception):
    """A request the controls refuse: a 400 that names the field (None: the whole
    request), or another status (503: no engine answers)."""

    def __init__(self, field: str | None, problem: str, status: int = 400) -> None:
        super().__init__(f"{field}: {problem}" if field else problem)
        self.field = field
        self.problem = problem
        self.status = status


class Control(Protocol):
    """What the HTTP API needs of the simulation, wherever it runs."""

    async def command(self, body: dict[str, Any]) -> dict[str, Any]:
        """Carry out `{"action": ...}`; returns the simulation's state after it."""
        ...

    async def inject(self, body: dict[str, Any]) -> dict[str, Any]: ...

    async def state(self) -> dict[str, Any]:
        """GET /api/sim without the faults (each server adds the faults it applies)."""
        ...

    async def snapshot(self) -> dict[str, Any]:
        """The current state of every collection, with the simulation's state as `sim`."""
        ...

    async def timeline(self) -> dict[str, Any]:
        """What the scenario schedules in this run, done or to come."""
        ...


class LocalControl:
    """The controls carried out on a Feed in this process."""

    def __init__(self, feed: Feed, sim: SimulationConfig) -> None:
        self.feed = feed
        self.sim = sim

    async def state(self) -> dict[str, Any]:
        return self.feed.state()

    async def timeline(self) -> dict[str, Any]:
        """What the scenario schedules (Engine.timeline); a replay schedules nothing."""
        timeline = getattr(self.feed.source, "timeline", None)
        return {
            "scenario": self.feed.info.name,
            "simulated_time": self.feed.state()["simulated_time"],
            "items": timeline() if timeline is not None else [],
        }

    async def snapshot(self) -> dict[str, Any]:
        # The state first: last_event_id is then at most the snapshot's (both are read
        # between two ticks, with no await in between, so they are the same moment).
        return {**self.feed.source.snapshot(), "sim": self.feed.state()}

    async def command(self, body: dict[str, Any]) -> dict[str, Any]:
        feed = self.feed
        action = body.get("action")
        if action not in ACTIONS:
            raise ControlError("action", f"expected one of {', '.join(ACTIONS)}, got {action!r}")
        allowed = {"action", *ACTION_FIELDS[action]}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise ControlError(unknown[0], f"not a field of '{action}' (fields: {sorted(allowed)})")
        if action == "pause":
            if body.get("at") is None:
                feed.pause()
            else:
                feed.pause_when(_time(body, "at"))
        elif action == "resume":
            feed.resume()
        elif action == "speed":
            if body.get("speed") is None:
                raise ControlError("speed", "required: a number > 0")
            feed.set_speed(_as_in_config(body, "speed"))
        elif action == "step":
            await feed.advance(_positive(body, "seconds", MAX_STEP) or 1.0)
        elif action == "set_rate":
            self._set_rate(body)
        else:
            await self._restart(body)
        state = feed.state()
        log.info("simulation %s by admin: %s", action, state)
        return state

    async def _restart(self, body: dict[str, Any]) -> None:
        feed, sim = self.feed, self.sim
        scenario = body.get("scenario", feed.info.ref or feed.info.name)
        if not isinstance(scenario, str) or not scenario:
            raise ControlError("scenario", "expected a scenario name or path")
        seed, start = _as_in_config(body, "seed"), _as_in_config(body, "start")
        speed = _as_in_config(body, "speed") if body.get("speed") is not None else None
        try:
            ref = restartable(scenario, sim.scenario_dirs, feed.info.ref)
            # Off the loop: reading and checking a file and building a fleet take time.
            source, info = await asyncio.to_thread(
                scenario_source, ref, seed, start, sim.max_scenario_bytes
            )
        except ScenarioError as exc:
            raise ControlError("scenario", str(exc)) from None
        except (ValueError, OSError) as exc:
            raise ControlError("start" if start is not None else "scenario", str(exc)) from None
        feed.load(source, info, speed)  # which ends the old run's faults

    def _set_rate(self, body: dict[str, Any]) -> None:
        """The firehose control: a channel's rate, as `serve --rate` sets it at start; it
        holds until the run ends (a restart or the scenario's loop starts at its own rates)."""
        set_rate = getattr(self.feed.source, "set_rate", None)
        if set_rate is None:
            raise ControlError("action", "a replayed stream plays at its recorded rate; use speed")
        for field in ("channel", "per_second"):
            if field not in body:
                raise ControlError(field, "required")
        if not isinstance(body["channel"], str) or len(body["channel"]) > 64:
            raise ControlError("channel", "expected agents, metrics or cost-flow")
        try:
            set_rate(body["channel"], body["per_second"])
        except ScenarioError as exc:
            raise ControlError(exc.field, exc.problem) from None

    async def inject(self, body: dict[str, Any]) -> dict[str, Any]:
        """A fault now (POST /api/sim/faults): the source checks it against the scenario
        schema and starts it at its next tick, like a scheduled one."""
        inject = getattr(self.feed.source, "inject", None)
        try:
            if inject is None:
                raise ScenarioError("this source takes no faults")
            inject(body)
        except ScenarioError as exc:
            raise ControlError(exc.field, exc.problem) from None
        # What and where, not the body: a list of agents may be 100,000 ids long.
        target = body.get("target", "-")
        if isinstance(target, list):
            target = f"{len(target)} agents"
        log.warning("fault injected: %s on %s", body["type"], target)
        return {"status": "accepted", "fault": body, "starts": "at the next simulated tick"}


def _as_in_config(body: dict[str, Any], field: str) -> Any:
    """A restart's seed, start or speed, checked as `simulation.<field>` in config.yaml is."""
    try:
        return SCHEMA["simulation"][field](field, body.get(field))
    except ConfigError as exc:
        raise ControlError(field, str(exc).removeprefix(f"{field}: ")) from None


def _positive(body: dict[str, Any], field: str, maximum: float) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not 0 < value <= maximum:
        raise ControlError(field, f"expected a number > 0 and at most {maximum:g}, got {value!r}")
    return float(value)


def _time(body: dict[str, Any], field: str) -> float:
    """A simulated time in a control: RFC 3339, within the bounds of a start."""
    from simulator.clock import parse_start

    value = body.get(field)
    if not isinstance(value, str) or len(value) > 64:
        raise ControlError(field, "expected an RFC 3339 time such as 2024-01-20T10:05:00Z")
    try:
        return parse_start(value)
    except ValueError as exc:
        raise ControlError(field, str(exc)) from None
