"""The engine: advances a scenario in fixed one-second ticks and returns its events.

Everything random comes from one `SeedSequence(seed)` split into named sub-streams (fleet,
drift, churn, health, experiments, faults), and every tick does the same work in the
same order whatever the size of the `advance_to` steps, so the same scenario, seed and
start give the same events byte for byte. Within a tick the order is: faults, fleet
membership, experiments and deployments, heartbeats, metrics (with anomalies and
alerts), cost.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from simulator.clock import Periodic, format_duration, rfc3339
from simulator.cost import Prices, cost_update
from simulator.detector import Detector, Finding
from simulator.events import CONTROL, Event
from simulator.experiments import ExperimentRun, Lab, Promotion
from simulator.faults import ActiveFault, GlobalEffects, effects_at
from simulator.fleet import FleetState
from simulator.rules import Alert, RuleBook
from simulator.scenario import (
    GROUP_PREFIX,
    MAX_AGENTS,
    Fault,
    Scenario,
    ScenarioError,
    check_fault,
    excerpt,
)

MIN_DOWNTIME = 10.0  # seconds: a churned agent is away at least this long
RATE_CHANNELS = ("agents", "metrics", "cost-flow")


@dataclass(frozen=True)
class Continuation:
    """What a scenario's next run (simulation.loop) takes over from the one that ended,
    so that a client sees one fleet going on, not a replay: ids of new entities are
    new, and agents still online are not announced again."""

    run: int  # this run's number: 2 for the first repeat
    deployments: int  # deployment ids handed out so far
    alerts: int  # alert ids handed out so far
    faults: int  # fault ids handed out so far
    online: frozenset[str]  # agent ids online when the last run ended
    # Candidates promoted so far and still deployed, each with its agents' ids: they go
    # on saving (cost.update lists them) until the same experiment of a later run is
    # promoted in their place. By id, as `online`: the next run's fleet is built anew,
    # from a scenario file that may have changed in between.
    promotions: tuple[tuple[Promotion, tuple[str, ...]], ...] = ()


class Engine:
    """One deterministic run of a scenario. Not thread-safe; the server owns it."""

    def __init__(
        self,
        scenario: Scenario,
        seed: int | None = None,
        start: float | None = None,
        after: Continuation | None = None,
    ):
        if start is None:
            start = scenario.start
        if start is None:
            raise ValueError(f"scenario '{scenario.name}' has no start time: pass start=")
        self.scenario = scenario
        self.seed = seed if seed is not None else (scenario.seed or 0)
        # Ticks and event times are whole seconds.
        self.start = float(math.floor(start))
        self.end: float | None = (
            None if scenario.duration is None else self.start + math.ceil(scenario.duration)
        )
        self._now = self.start
        self._tick = 0  # index of the next tick to run

        # A seventh stream (the traffic's shape) leaves the first six as they were.
        streams = np.random.SeedSequence(self.seed).spawn(7)
        fleet_ss, drift_ss, churn_ss, health_ss, exp_ss, fault_ss, traffic_ss = streams
        self._drift_rng = np.random.default_rng(drift_ss)
        self._churn_rng = np.random.default_rng(churn_ss)
        self._health_rng = np.random.default_rng(health_ss)
        self._fault_rng = np.random.default_rng(fault_ss)

        self.after = after
        self.fleet = FleetState(
            scenario.fleet,
            np.random.default_rng(fleet_ss),
            scenario.traffic,
            self.start,
            np.random.default_rng(traffic_ss),
        )
        self.lab = Lab(
            self.fleet,
            scenario.intervals.progress,
            after.deployments if after else 0,
            self._adopt(after.promotions) if after else (),
        )
        # One child stream per experiment, by position: adding agents or other streams
        # never shifts an experiment's randomness.
        for spec, ss in zip(
            scenario.experiments, exp_ss.spawn(len(scenario.experiments)), strict=True
        ):
            model_ss, deploy_ss = ss.spawn(2)
            self.lab.runs.append(
                ExperimentRun(
                    spec=spec,
                    baseline=scenario.pipeline(spec.baseline),
                    candidate=scenario.pipeline(spec.candidate),
                    model_rng=np.random.default_rng(model_ss),
                    deploy_rng=np.random.default_rng(deploy_ss),
                    suffix=f"-run{after.run}" if after else "",
                )
            )
        self._heartbeat = scenario.intervals.heartbeat
        self._metrics_clock = Periodic(scenario.intervals.metrics)
        self._cost_clock = Periodic(scenario.intervals.cost)
        self._prices = Prices(scenario.price_per_million_points, scenario.price_per_thousand_series)
        self._detector = Detector()
        self._rules = RuleBook(scenario.alerts, after.alerts if after else 0)
        # Scheduled faults by tick, then scenario order: (tick, order, occurrence, fault).
        # A repeating one is pushed again when it fires; one that follows an
        # experiment's moment waits in _waiting until that moment.
        self._schedule: list[tuple[int, int, int, Fault]] = []
        self._waiting: dict[tuple[str, str], list[tuple[int, Fault]]] = {}
        self._fired: list[tuple[int, Fault]] = []  # for the timeline
        for order, f in enumerate(scenario.faults):
            if f.after is None:
                heapq.heappush(self._schedule, (math.ceil(f.at), order, 1, f))
            else:
                self._waiting.setdefault(f.after, []).append((order, f))
        self._injected: list[Fault] = []
        self._active: list[ActiveFault] = []
        self._faults_started = after.faults if after else 0
        self._returns: list[tuple[int, int, int]] = []  # (tick, order, agent) heap
        self._return_order = 0
        self._effects = effects_at(0, [], [])
        self._mps_int = self.fleet.mps_int(1.0)

    # ------------------------------------------------------------------ public API

    @property
    def now(self) -> float:
        return self._now

    def advance_to(self, t: float) -> list[Event]:
        """Run every tick with tick time <= t (never past `end`); return their events."""
        limit = t if self.end is None else min(t, self.end)
        events: list[Event] = []
        last = math.floor(limit - self.start)
        while self._tick <= last:
            events += self._run_tick(self._tick)
            self._tick += 1
        self._now = max(self._now, limit)
        return events

    def step(self, seconds: float) -> list[Event]:
        return self.advance_to(self._now + seconds)

    def inject(self, fault: dict[str, Any]) -> None:
        """Apply a fault at the next tick (the scenario fault schema minus `at`)."""
        if isinstance(fault, dict) and self.after is not None:
            # A client names an experiment as the stream does ("exp-789-run2"); the
            # scenario's faults name it by its spec id.
            ids = {r.id: r.spec.id for r in self.lab.runs}
            if isinstance(fault.get("target"), str) and fault["target"] in ids:
                fault = {**fault, "target": ids[fault["target"]]}
        self._injected.append(check_fault(fault, self.scenario, source="inject"))

    def set_rate(self, channel: str, per_second: float) -> None:
        """Firehose control: target simulated events per second on a channel."""
        if channel not in RATE_CHANNELS:
            problem = f"expected one of {', '.join(RATE_CHANNELS)}, got {excerpt(repr(channel))}"
            raise ScenarioError(f"set_rate: channel: {problem}", "channel", problem)
        ok = isinstance(per_second, int | float) and not isinstance(per_second, bool)
        # An int is compared as it is (a 400-digit one does not fit a float).
        ok = ok and (isinstance(per_second, int) or math.isfinite(per_second))
        # At least one event a million seconds: 1/rate must stay a finite interval.
        if not ok or not 1e-6 <= per_second <= 1_000_000:
            problem = f"expected a number from 0.000001 to 1000000, got {excerpt(repr(per_second))}"
            raise ScenarioError(f"set_rate: per_second: {problem}", "per_second", problem)
        if channel != "agents" and per_second > 1:
            problem = (
                f"{channel}: at most 1/s, got {per_second:g}/s: an update is a snapshot of one "
                "tick (one simulated second); only heartbeats (agents) go faster, spread "
                "within the second"
            )
            raise ScenarioError(f"set_rate: {problem}", "per_second", problem)
        if channel == "agents":
            # Before the first tick no agent is online yet: size the interval for the
            # fleet the scenario starts with.
            online = int(self.fleet.online.sum()) or self.scenario.fleet.agents
            self._heartbeat = max(1, online) / per_second
            # Count the new schedule from the last tick run, for every agent.
            self.fleet.hb_anchor[:] = self._tick - 1
        elif channel == "metrics":
            self._metrics_clock.set_interval(1.0 / per_second, self._tick)
        else:
            self._cost_clock.set_interval(1.0 / per_second, self._tick)

    def snapshot(self) -> dict[str, Any]:
        t = self._now
        return {
            "time": rfc3339(t),
            "experiments": [r.to_dict(t) for r in self.lab.runs if r.status != "pending"],
            "agents": self.fleet.snapshot(self._mps_int),
            "deployments": [d.to_dict() for r in self.lab.runs for d in r.deployments],
            "alerts": [a.to_dict() for a in self._rules.all_alerts()],
        }

    def continuation(self) -> Continuation:
        """What the next run of this scenario takes over (see Continuation)."""
        return Continuation(
            run=(self.after.run if self.after else 1) + 1,
            deployments=self.lab.deployments_issued,
            alerts=self._rules.issued,
            faults=self._faults_started,
            online=frozenset(
                i for i, on in zip(self.fleet.ids, self.fleet.online, strict=True) if on
            ),
            promotions=tuple(
                (p, tuple(self.fleet.ids[a] for a in p.agents.tolist()))
                for p in self.lab.promotions()
            ),
        )

    def _adopt(
        self, carried: tuple[tuple[Promotion, tuple[str, ...]], ...]
    ) -> tuple[Promotion, ...]:
        """The last run's promotions that still fit this run: the same experiment with
        the same pipelines, on those of its agents this fleet has (hosts that joined
        are not in it). Any other is dropped, not guessed at."""
        index = {agent: i for i, agent in enumerate(self.fleet.ids)}
        out = []
        for p, agent_ids in carried:
            spec = next((e for e in self.scenario.experiments if e.id == p.spec_id), None)
            if spec is None or (
                self.scenario.pipeline(spec.baseline),
                self.scenario.pipeline(spec.candidate),
            ) != (p.baseline, p.candidate):
                continue
            agents = np.array([index[a] for a in agent_ids if a in index], dtype=np.int64)
            if agents.size:
                out.append(replace(p, agents=agents))
        return tuple(out)

    def timeline(self) -> list[dict[str, Any]]:
        """What the scenario schedules in this run, in time order, each with whether it
        has happened: experiments created and started, faults. For a presenter (the
        page's timeline) and a client developer (GET /api/sim/timeline); a fault
        injected by hand is not scheduled, so it is not here."""
        items: list[tuple[float, int, dict[str, Any]]] = []
        for i, spec in enumerate(self.scenario.experiments):
            for what, offset in (
                ("experiment.created", spec.create_at),
                ("experiment.started", spec.start_at),
            ):
                at = self.start + math.ceil(offset)
                items.append(
                    (at, i, {"kind": "experiment", "what": what, "id": spec.id, "name": spec.name})
                )

        def fault_item(fault: Fault) -> dict[str, Any]:
            return {
                "kind": "fault",
                "what": fault.type,
                "target": fault.target,
                "duration_seconds": fault.duration or None,
            }

        # Faults that happened, then the next time of each one still to come; one that
        # waits for an experiment's moment has no time yet, and says what it waits for.
        for i, (tick, fault) in enumerate(self._fired):
            items.append((self.start + tick, 1000 + i, fault_item(fault)))
        for tick, order, _, fault in self._schedule:
            items.append((self.start + tick, 100_000 + order, fault_item(fault)))
        out: list[dict[str, Any]] = [
            {"at": rfc3339(at), "done": self.start + self._tick - 1 >= at, **item}
            for at, _, item in sorted(items, key=lambda x: (x[0], x[1]))
        ]
        for (exp, moment), waiting in self._waiting.items():
            for _, fault in waiting:
                after = f"{format_duration(fault.at)} after {exp} {moment}"
                out.append({"at": None, "done": False, **fault_item(fault), "after": after})
        return out

    def active_faults(self) -> list[dict[str, Any]]:
        return [a.to_dict(self.start) for a in self._active if not a.fault.delivery]

    # ------------------------------------------------------------------ one tick

    def _run_tick(self, k: int) -> list[Event]:
        t = self.start + k
        events = self._faults(k, t)
        # Faults name experiments as the scenario does (their spec ids), whatever run.
        glob, per = self._effects = effects_at(k, self._active, [r.spec.id for r in self.lab.runs])
        self.fleet.drift_step(self._drift_rng, k, t)
        self.fleet.set_effects(glob.cardinality, glob.set_mps, glob.set_cardinality)
        events += self._membership(k, t, glob)
        mps_int = self._mps_int = self.fleet.mps_int(glob.mps_factor)
        online = self.fleet.online
        for run in self.lab.runs:
            happened = run.tick(
                k, t, self.start, self.lab, mps_int, online, per[run.spec.id], self._prices
            )
            if self._waiting:
                self._follow(run.spec.id, happened, k)
            events += happened
            if run.status != "running":
                self._detector.reset(run.id)
        beats = self._heartbeats(k, t, mps_int)
        if beats and beats[0].time < t:
            # Spread over the second before the tick (a rate above one per agent per
            # second): they go before the tick's other events, so time never goes back.
            events = beats + events
        else:
            events += beats
        n = self._metrics_clock.due(k)
        if n:
            events += self._metrics(t, n, mps_int, glob)
        n = self._cost_clock.due(k)
        if n:
            events += self._cost(t, n, mps_int)
        return events

    def _faults(self, k: int, t: float) -> list[Event]:
        events: list[Event] = []
        for item in [a for a in self._active if a.end_tick == k]:
            self._active.remove(item)
            if item.fault.delivery:
                events.append(
                    Event(
                        t,
                        CONTROL,
                        "fault.end",
                        {
                            "fault": item.fault.type,
                            "id": item.id,
                            "params": dict(item.fault.params),
                        },
                    )
                )
        starting: list[Fault] = []
        while self._schedule and self._schedule[0][0] <= k:
            at, order, n, fault = heapq.heappop(self._schedule)
            starting.append(fault)
            self._fired.append((k, fault))
            if fault.every is not None and (fault.times is None or n < fault.times):
                nxt = at + max(1, math.ceil(fault.every))
                if self.end is None or self.start + nxt <= self.end:
                    heapq.heappush(self._schedule, (nxt, order, n + 1, fault))
        starting += self._injected
        self._injected = []
        for fault in starting:
            events += self._start_fault(fault, k, t)
        return events

    # An experiment's event -> the moments of it that faults may follow.
    _MOMENTS = {
        "experiment.created": ("created",),
        "experiment.started": ("started",),
        "experiment.completed": ("completed", "ended"),
        "experiment.failed": ("failed", "ended"),
    }

    def _follow(self, spec_id: str, happened: list[Event], k: int) -> None:
        """Schedule the faults that wait for a moment of this experiment that just came."""
        for event in happened:
            for moment in self._MOMENTS.get(event.name, ()):
                for order, fault in self._waiting.pop((spec_id, moment), []):
                    # This tick's faults ran already: at the earliest, the next tick.
                    at = k + max(1, math.ceil(fault.at))
                    heapq.heappush(self._schedule, (at, order, 1, fault))

    def _start_fault(self, fault: Fault, k: int, t: float) -> list[Event]:
        self._faults_started += 1
        fid = f"fault-{self._faults_started}"
        ticks = math.ceil(fault.duration)
        end = k + ticks if ticks > 0 else None
        item = ActiveFault(fid, fault, k, end)
        if fault.delivery:
            if end is not None:
                self._active.append(item)
            return [
                Event(
                    t,
                    CONTROL,
                    "fault.start",
                    {
                        "fault": fault.type,
                        "id": fid,
                        "params": dict(fault.params),
                        "duration_seconds": ticks,
                    },
                )
            ]
        events: list[Event] = []
        p = fault.params
        if fault.type == "agents_leave":
            target = fault.target
            if isinstance(target, str) and (target == "global" or target.startswith(GROUP_PREFIX)):
                pool = np.flatnonzero(self.fleet.online)
                if target != "global":  # from that group, of its online
                    pool = np.flatnonzero(self.fleet.online & self.fleet.mask(target))
                count = int(p["count"])
                if p["fraction"] > 0:
                    count = int(round(p["fraction"] * pool.size))
                count = min(count, pool.size)
                chosen = sorted(self._fault_rng.choice(pool, size=count, replace=False).tolist())
            else:  # agents by id (one, or a list): those of them online, all of them
                listed = self.fleet.members(target if isinstance(target, tuple) else (target,))
                chosen = sorted(listed[self.fleet.online[listed]].tolist())
            for agent in chosen:
                events += self._disconnect(agent, t, None if end is None else end)
            item.extra["agents"] = [self.fleet.ids[a] for a in chosen]
        elif fault.type == "agents_join":
            count = min(int(p["count"]), max(0, MAX_AGENTS - self.fleet.size))
            for agent in self.fleet.join(count, self._fault_rng).tolist():
                events.append(self._connect(agent, k, t))
            return events  # instantaneous
        elif fault.type == "cancel":
            run = next(r for r in self.lab.runs if r.spec.id == fault.target)
            return run.cancel(t)
        self._active.append(item)
        return events

    # ------------------------------------------------------------------ fleet

    def _connect(self, agent: int, k: int, t: float) -> Event:
        data = self.fleet.connect(agent, k, t)
        return Event(t, "agents", "agent.connected", data, {"agent_id": data["agent_id"]})

    def _source(self, run: ExperimentRun) -> int:
        """The experiment's input: its online agents' rates (as `run.tick` sums them)."""
        agents = run.agents
        return int(self._mps_int[agents][self.fleet.online[agents]].sum())

    def _carry_level(self, runs: list[ExperimentRun], before: dict[str, int]) -> None:
        """The experiments' input moved by a known ratio when an agent was swapped, left
        or came back: carry the detector's baseline along rather than flag the step."""
        for run in runs:
            old = before.get(run.id, 0)
            if old:
                new = self._source(run)
                self._detector.rescale(run.id, ("baseline_mps", "candidate_mps"), new / old)
            elif run.id in before:
                # Its input was nothing: there is no level to carry; learn it anew.
                self._detector.reset(run.id, ("baseline_mps", "candidate_mps"))

    def _disconnect(self, agent: int, t: float, back_tick: int | None) -> list[Event]:
        # Online agents only, as after the change: an agent already away counts in neither.
        before = {r.id: self._source(r) for r in self.lab.runs if r.status == "running"}
        tasks, touched = self.lab.reassign(agent)
        last_seen = self.fleet.disconnect(agent)
        self._carry_level(touched, before)
        if back_tick is not None:
            self._return_order += 1
            heapq.heappush(self._returns, (back_tick, self._return_order, agent))
        agent_id = self.fleet.ids[agent]
        return [
            Event(
                t,
                "agents",
                "agent.disconnected",
                {"agent_id": agent_id, "last_seen": last_seen, "tasks_reassigned": tasks},
                {"agent_id": agent_id},
            )
        ]

    def _membership(self, k: int, t: float, glob: GlobalEffects) -> list[Event]:
        events: list[Event] = []
        if k == 0:
            online = self.after.online if self.after else frozenset()
            for agent in range(self.fleet.size):
                event = self._connect(agent, k, t)
                if self.fleet.ids[agent] not in online:  # still connected: said before
                    events.append(event)
            # Agents that joined during the last run are not in this one's fleet: gone.
            for agent_id in sorted(online - set(self.fleet.ids)):
                data = {"agent_id": agent_id, "last_seen": rfc3339(t - 1), "tasks_reassigned": 0}
                events.append(
                    Event(t, "agents", "agent.disconnected", data, {"agent_id": agent_id})
                )
        while self._returns and self._returns[0][0] <= k:
            _, _, agent = heapq.heappop(self._returns)
            if not self.fleet.online[agent]:
                # An agent coming back to a running experiment's slots (no spare agent
                # took its place) raises that experiment's input by a known ratio.
                back_to = [r for r in self.lab.runs if r.status == "running" and agent in r.agents]
                before = {r.id: self._source(r) for r in back_to}
                events.append(self._connect(agent, k, t))
                self._carry_level(back_to, before)
        churn = self.scenario.fleet.churn
        rate = churn.rate_per_hour + glob.churn_per_hour
        # Drawn every tick, even at rate 0, so that a rate change elsewhere in the
        # scenario never shifts the churn stream.
        leaving = int(self._churn_rng.poisson(rate / 3600.0))
        downtime_mean = glob.churn_downtime or churn.downtime
        if leaving:
            pool = np.flatnonzero(self.fleet.online)
            leaving = min(leaving, pool.size)
            chosen = self._churn_rng.choice(pool, size=leaving, replace=False)
            downtime = self._churn_rng.exponential(downtime_mean, size=leaving)
            for agent, away in zip(chosen.tolist(), downtime.tolist(), strict=True):
                back = k + math.ceil(max(MIN_DOWNTIME, away))
                events += self._disconnect(agent, t, back)
        return events

    def _heartbeats(self, k: int, t: float, mps_int: np.ndarray) -> list[Event]:
        counts = self.fleet.heartbeat_counts(k, self._heartbeat)
        idx = np.flatnonzero(counts)
        if idx.size == 0:
            return []
        tags = self.fleet.tags
        per = counts[idx]
        if per.max() == 1:
            raws = self.fleet.heartbeat_raw(t, idx, mps_int, self._health_rng)
            return [
                Event(t, "agents", "agent.heartbeat", None, tags[i], raw)
                for i, raw in zip(idx.tolist(), raws, strict=True)
            ]
        # An agent that beats n times in this tick beats at t - 1 + j/n, j = 1..n: spread
        # over the second, with sub-second timestamps, never n copies at one instant.
        # In time order, then agent order.
        agents = np.repeat(idx, per)
        nth = np.arange(agents.size) - np.repeat(np.cumsum(per) - per, per) + 1
        times = (t - 1.0) + nth / np.repeat(per, per)
        order = np.lexsort((agents, times))
        agents, times = agents[order], times[order]
        raws = self.fleet.heartbeat_raw(t, agents, mps_int, self._health_rng)
        return [
            Event(when, "agents", "agent.heartbeat", None, tags[i], raw)
            for i, when, raw in zip(agents.tolist(), times.tolist(), raws, strict=True)
        ]

    # ------------------------------------------------------------------ metrics

    def _metrics(self, t: float, n: int, mps_int: np.ndarray, glob: GlobalEffects) -> list[Event]:
        online = self.fleet.online
        total_mps = int(mps_int[online].sum())
        active = int(online.sum())
        total_series = int(round(float(self.fleet.series(mps_int)[online].sum())))
        global_values = {
            "total_mps": total_mps,
            "total_series": total_series,
            "active_agents": active,
        }
        running = {r.id: r.metrics for r in self.lab.runs if r.status == "running" and r.metrics}
        spp = {r.id: r.series_per_point for r in self.lab.runs if r.id in running}
        data = {
            "timestamp": rfc3339(t),
            "global": dict(global_values),
            "experiments": {
                eid: {
                    "baseline_mps": m["baseline_mps"],
                    "candidate_mps": m["candidate_mps"],
                    "reduction_rate": m["reduction_rate"],
                    "error_rate": m["error_rate"],
                    "baseline_error_rate": m["baseline_error_rate"],
                    "baseline_series": m["baseline_series"],
                    "candidate_series": m["candidate_series"],
                }
                for eid, m in running.items()
            },
        }
        events = [Event(t, "metrics", "metrics.update", data) for _ in range(n)]
        findings: list[tuple[str | None, Finding]] = []
        d = self._detector
        if active and total_mps:
            # Per agent and per point, so churn alone never looks like an anomaly.
            # Series against what these agents usually have (their own series per
            # point): agents coming and going with other ratios is not an anomaly; a
            # cardinality explosion is.
            usual = float(self.fleet.usual_series(mps_int)[online].sum())
            for f in (
                d.observe(t, "global", "total_mps", total_mps / active, active),
                d.observe(t, "global", "total_series", total_series / usual, usual),
            ):
                if f:
                    findings.append((None, f))
        for eid, m in running.items():
            base, cand = m["baseline_mps"], m["candidate_mps"]
            checks = [
                d.observe(t, eid, "baseline_mps", base),
                d.observe(t, eid, "candidate_mps", cand),
                d.observe(t, eid, "error_rate", m["error_rate"]),
                d.observe(t, eid, "baseline_error_rate", m["baseline_error_rate"]),
            ]
            run_spp = spp.get(eid, (0.0, 0.0))
            if base and cand and run_spp[0] and run_spp[1]:
                usual_b, usual_c = base * run_spp[0], cand * run_spp[1]
                checks.append(
                    d.observe(t, eid, "baseline_series", m["baseline_series"] / usual_b, usual_b)
                )
                checks.append(
                    d.observe(t, eid, "candidate_series", m["candidate_series"] / usual_c, usual_c)
                )
            findings += [(eid, f) for f in checks if f]
        events += [self._anomaly(t, eid, f) for eid, f in findings]
        triggered, resolved = self._rules.evaluate(t, global_values, running)
        events += [self._alert_triggered(t, a) for a in triggered]
        events += [self._alert_resolved(t, a) for a in resolved]
        return events

    def _anomaly(self, t: float, eid: str | None, f: Finding) -> Event:
        if f.metric.endswith("error_rate"):
            lo, hi = (float(f"{max(0.0, v):.3g}") for v in f.expected_range)
            actual: float | int = float(f"{f.actual_value:.3g}")
        else:
            lo, hi = (int(round(max(0.0, v))) for v in f.expected_range)
            actual = int(round(f.actual_value))
        # experiment_id is always there, null for a fleet-wide series, as on alerts.
        data: dict[str, Any] = {"experiment_id": eid}
        tags = {"severity": f.severity}
        if eid is not None:
            tags = {"experiment_id": eid, **tags}
        data.update(
            type=f.type,
            severity=f.severity,
            details={"metric": f.metric, "expected_range": [lo, hi], "actual_value": actual},
        )
        return Event(t, "metrics", "metrics.anomaly", data, tags)

    @staticmethod
    def _alert_tags(a: Alert) -> dict[str, str]:
        tags = {"severity": a.severity}
        if a.experiment_id is not None:
            tags = {"experiment_id": a.experiment_id, **tags}
        return tags

    def _alert_triggered(self, t: float, a: Alert) -> Event:
        # Every field of the reference's example, experiment_id null for a fleet-wide alert.
        data: dict[str, Any] = {
            "alert_id": a.alert_id,
            "name": a.name,
            "severity": a.severity,
            "experiment_id": a.experiment_id,
            "condition": a.condition,
            "current_value": a.current_value,
        }
        return Event(t, "alerts", "alert.triggered", data, self._alert_tags(a))

    def _alert_resolved(self, t: float, a: Alert) -> Event:
        seconds = t - a.triggered_at
        data: dict[str, Any] = {
            "alert_id": a.alert_id,
            "resolved_at": rfc3339(t),
            # Whole minutes as in the reference; seconds too, for short alerts.
            "duration_minutes": math.floor(seconds / 60 + 0.5),
            "duration_seconds": int(seconds),
            "name": a.name,
            "severity": a.severity,
            "experiment_id": a.experiment_id,  # null for a fleet-wide alert
            "reason": a.reason,  # condition_cleared | experiment_ended
        }
        return Event(t, "alerts", "alert.resolved", data, self._alert_tags(a))

    # ------------------------------------------------------------------ cost

    def _cost(self, t: float, n: int, mps_int: np.ndarray) -> list[Event]:
        online = self.fleet.online
        # (experiment id, its agents, the agents it claims savings on, (mps, series)
        # saved): promoted candidates (an earlier run's first), then live experiments.
        active: list[tuple[str, np.ndarray, np.ndarray, tuple[float, float]]] = []
        for p in self.lab.standing():
            active.append((p.id, p.agents, p.agents, p.saving(mps_int, online, self.fleet)))
        for run in self.lab.runs:
            promoted = run.promotion()
            if promoted is not None:
                pair = promoted.saving(mps_int, online, self.fleet)
                active.append((run.id, promoted.agents, promoted.agents, pair))
                continue
            # Analyzing: the candidate still runs on its agents while the results are
            # read, so it still saves (its last measured rate); savings must not dip to
            # zero for those seconds, as if a cost incident, before the winner is promoted.
            if run.status in ("running", "analyzing") and run.metrics:
                m = run.metrics
                pair = (
                    float(m["baseline_mps"] - m["candidate_mps"]),
                    m["baseline_series"] - m["candidate_series"],
                )
            elif run.status == "deploying":
                pair = run.rollout_saving(self._tick, mps_int, online, self.fleet)
            else:
                continue
            agents = claimed = run.agents
            prior = self.lab.predecessor(run)
            if prior is not None:
                # Re-testing its earlier promotion's agents: what they save is still
                # that promotion's until this run is promoted in its place.
                claimed = agents[~np.isin(agents, prior.agents)]
            active.append((run.id, agents, claimed, pair))
        # An agent shared by several optimizations (too few free agents when one was
        # placed) has its traffic reduced once, not once per optimization: each of them
        # claims its share of that agent's points.
        users = np.zeros(self.fleet.size, dtype=np.int64)
        for _, _, claimed, _ in active:
            users[claimed[online[claimed]]] += 1
        contributions: list[tuple[str, float, float]] = []
        for exp_id, agents, claimed, (saved, saved_series) in active:
            agents, claimed = agents[online[agents]], claimed[online[claimed]]
            if agents.size and (claimed.size < agents.size or users[claimed].max() > 1):
                total = float(mps_int[agents].sum())
                if total > 0:
                    share = float((mps_int[claimed] / users[claimed]).sum()) / total
                    saved, saved_series = saved * share, saved_series * share
            contributions.append((exp_id, saved, saved_series))
        # Series cost money only at a price (0 by default): then the fleet's series
        # are counted, as metrics.update's total_series counts them.
        series = 0.0
        if self._prices.per_thousand_series:
            series = float(self.fleet.series(mps_int)[online].sum())
        data = {
            "timestamp": rfc3339(t),
            **cost_update(int(mps_int[online].sum()), series, contributions, self._prices),
        }
        return [Event(t, "cost-flow", "cost.update", data) for _ in range(n)]
