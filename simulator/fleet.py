"""The agent fleet as a struct of numpy arrays: thousands of agents cost a few vector ops.

Per tick the fleet drifts every agent's load (one vector draw) and works out which agents
heartbeat now from a per-agent phase; Python objects are built only for the events that
are actually emitted.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from simulator.clock import rfc3339
from simulator.scenario import GROUP_PREFIX, Traffic
from simulator.scenario import Fleet as FleetSpec

# Agents a fault or an experiment names: "group:<name>", or a tuple of agent ids.
AgentSet = str | tuple[str, ...]

# Load drift per agent: an AR(1) around 1 with a slow memory, so sums over agents move
# smoothly and the detector sees noise, not jumps. Shocks are clipped so tails stay
# bounded (see detector.MIN_REL_SD).
DRIFT_PHI = 0.98
DRIFT_SD = 0.03
# CPU and memory follow the load against each agent's capacity (its usual rate times
# the scenario's headroom, which varies by agent): an agent at its usual rate with the
# default headroom runs at about 45% CPU, as the reference's example heartbeat does.
CPU_AT_CAPACITY = 75.0  # % CPU added at full capacity, over the agent's idle CPU
MEMORY_AT_CAPACITY = 40.0  # % memory added at full capacity (of series), over idle
MEMORY_TAU = 600.0  # seconds: memory follows load slowly (caches, buffers)
SERIES_MEMORY_EXPONENT = 0.6  # 4x the series takes 2.3x the memory
HEADROOM_SPREAD = 0.25  # sigma of the log-normal around the scenario's headroom
MEMBER_SETS_KEPT = 64  # groups and agent lists resolved to indices, kept for reuse
DEGRADED_CPU = 85.0
DEGRADED_MEMORY = 90.0
UNHEALTHY = 97.0  # % CPU or memory


def daily_level(t: float, start: float, traffic: Traffic) -> float:
    """The fleet's traffic level at simulated time `t`: a daily cycle peaking at
    `peak_hour` (UTC) around a trend counted from the start."""
    hour = (t % 86400.0) / 3600.0
    cycle = 1.0 + traffic.daily_amplitude * math.cos(2 * math.pi * (hour - traffic.peak_hour) / 24)
    return cycle * max(0.05, 1.0 + traffic.trend_per_day * (t - start) / 86400.0)


class FleetState:
    """Every agent's identity, load, health and heartbeat phase, one array per field."""

    def __init__(
        self,
        spec: FleetSpec,
        rng: np.random.Generator,
        traffic: Traffic | None = None,
        start: float = 0.0,
        traffic_rng: np.random.Generator | None = None,
    ) -> None:
        self.spec = spec
        self.traffic = traffic or Traffic()
        self.start = start
        # Its own stream: the shape's draws never move the fleet's or the drift's.
        self._traffic_rng = traffic_rng or np.random.default_rng(0)
        self.level = 1.0  # the daily cycle and trend, this tick
        self.cardinality: float | np.ndarray = 1.0  # series per point over the usual (faults)
        self.factor: float | np.ndarray = 1.0  # per agent, faults on sets of agents
        self.bursting: np.ndarray | None = None  # per agent, this tick (None before one)
        self._members: dict[AgentSet, np.ndarray] = {}  # see `members`
        # Which group of spec.groups each agent is in (-1: none); joiners are in none.
        self.group = np.full(spec.agents, -1, dtype=np.int64)
        first = 0
        for i, g in enumerate(spec.groups):
            self.group[first : first + g.agents] = i
            first += g.agents
        self.versions = [v for v, _ in spec.versions]
        self.capability_names = [c for c, _ in spec.capabilities]
        self.hostnames: list[str] = []
        self.ids: list[str] = []
        # Each agent's heartbeat JSON up to its status, made once: a heartbeat is then
        # one string format, not a dict to build and serialise (see `heartbeat_raw`).
        self._hb_head: list[str] = []
        self.tags: list[dict[str, str]] = []  # each agent's event tags, shared (read-only)
        self.version = np.zeros(0, dtype=np.int64)
        self.caps = np.zeros(0, dtype=np.int64)  # bit i = capability_names[i]
        self.base_mps = np.zeros(0)
        self.drift = np.zeros(0)
        self.cpu_base = np.zeros(0)
        self.mem_base = np.zeros(0)
        self.cpu = np.zeros(0)
        self.mem = np.zeros(0)
        self.series_ratio = np.zeros(0)  # series per point, per agent
        self.capacity = np.zeros(0)  # mps an agent can take before it saturates
        self.load = np.zeros(0)  # smoothed load against capacity (for memory)
        self.burst_until = np.zeros(0, dtype=np.int64)  # tick a burst ends (exclusive)
        self.online = np.zeros(0, dtype=bool)
        self.last_seen = np.zeros(0)
        self.hb_anchor = np.zeros(0)  # tick the current heartbeat schedule counts from
        self.hb_frac = np.zeros(0)  # phase within the interval, in (0, 1]
        self._width = max(2, len(str(spec.agents)))
        self._add(spec.agents, rng, spread=True)

    @property
    def size(self) -> int:
        return len(self.ids)

    def _add(self, count: int, rng: np.random.Generator, spread: bool = False) -> np.ndarray:
        first = self.size
        names = [
            f"{self.spec.hostname_prefix}-{i + 1:0{self._width}d}"
            for i in range(first, first + count)
        ]
        self.hostnames += names
        ids = [f"agent-{h}" for h in names]
        self.ids += ids
        self.tags += [{"agent_id": i} for i in ids]
        self._hb_head += [
            '{"agent_id":' + json.dumps(i, ensure_ascii=False) + ',"status":"' for i in ids
        ]
        weights = np.array([w for _, w in self.spec.versions], dtype=float)
        p = weights / weights.sum() if weights.sum() > 0 else None
        version = rng.choice(len(self.versions), size=count, p=p)
        probs = np.array([p for _, p in self.spec.capabilities])
        has = rng.random((count, len(probs))) < probs
        caps = (has * (1 << np.arange(len(probs)))).sum(axis=1).astype(np.int64)
        base = self.spec.mps_median * np.exp(self.spec.mps_sigma * rng.standard_normal(count))
        cpu_base = rng.uniform(3.0, 12.0, count)  # idle
        mem_base = rng.uniform(25.0, 45.0, count)  # idle
        traffic, trng = self.traffic, self._traffic_rng
        ratio = traffic.series_per_mps * np.exp(
            traffic.series_spread * trng.standard_normal(count) - traffic.series_spread**2 / 2
        )
        capacity = base * traffic.headroom * np.exp(HEADROOM_SPREAD * trng.standard_normal(count))
        capacity = np.maximum(capacity, base * 1.05)
        if spread:
            # Even phases, shuffled: the initial fleet's heartbeats are a flat stream.
            frac = (rng.permutation(count) + 1.0) / count
        else:
            frac = 1.0 - rng.random(count)
        self.version = np.concatenate([self.version, version])
        self.caps = np.concatenate([self.caps, caps])
        self.base_mps = np.concatenate([self.base_mps, base])
        self.drift = np.concatenate([self.drift, np.zeros(count)])
        self.cpu_base = np.concatenate([self.cpu_base, cpu_base])
        self.mem_base = np.concatenate([self.mem_base, mem_base])
        self.cpu = np.concatenate([self.cpu, cpu_base])
        self.mem = np.concatenate([self.mem, mem_base])
        self.series_ratio = np.concatenate([self.series_ratio, ratio])
        self.capacity = np.concatenate([self.capacity, capacity])
        self.load = np.concatenate([self.load, base / capacity])
        self.burst_until = np.concatenate([self.burst_until, np.zeros(count, dtype=np.int64)])
        if self.group.size < first + count:  # joiners: in no group
            self.group = np.concatenate([self.group, np.full(count, -1, dtype=np.int64)])
        self.online = np.concatenate([self.online, np.zeros(count, dtype=bool)])
        self.last_seen = np.concatenate([self.last_seen, np.zeros(count)])
        self.hb_anchor = np.concatenate([self.hb_anchor, np.zeros(count)])
        self.hb_frac = np.concatenate([self.hb_frac, frac])
        return np.arange(first, first + count)

    def join(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return self._add(count, rng)

    # -- per tick

    def drift_step(self, rng: np.random.Generator, tick: int = 0, t: float | None = None) -> None:
        shock = np.clip(rng.standard_normal(self.size), -2.5, 2.5)
        self.drift = DRIFT_PHI * self.drift + DRIFT_SD * np.sqrt(1 - DRIFT_PHI**2) * shock
        traffic = self.traffic
        self.level = daily_level(self.start + tick if t is None else t, self.start, traffic)
        if traffic.bursts_per_agent_hour > 0:
            # Each agent's bursts are a Poisson process: a batch job, a retry storm.
            starts = self._traffic_rng.random(self.size) < traffic.bursts_per_agent_hour / 3600
            starts &= self.burst_until <= tick
            self.burst_until[starts] = tick + math.ceil(traffic.burst_duration)
        self.bursting = self.burst_until > tick

    def mps(self, factor: float) -> np.ndarray:
        """Current rate per agent (offline agents included; mask with `online`)."""
        rate = self.base_mps * (1.0 + self.drift) * (factor * self.level) * self.factor
        bursting = self.bursting
        if bursting is not None and bursting.any():
            rate = np.where(bursting, rate * self.traffic.burst_factor, rate)
        return rate

    def set_effects(
        self,
        cardinality: float,
        set_mps: dict[AgentSet, float],
        set_cardinality: dict[AgentSet, float],
    ) -> None:
        """This tick's faults: the fleet-wide series factor, and a rate and a series
        factor per agent for faults on sets of agents (a float while none is hit)."""
        self.factor = self._per_agent(set_mps)
        self.cardinality = cardinality * self._per_agent(set_cardinality)

    def _per_agent(self, by_set: dict[AgentSet, float]) -> float | np.ndarray:
        if not by_set:
            return 1.0
        out = np.ones(self.size)
        for agents, factor in by_set.items():
            out[self.members(agents)] *= factor
        return out

    def members(self, agents: AgentSet) -> np.ndarray:
        """Indices of the agents a fault or an experiment names: `group:<name>` (a group
        of fleet.groups) or a list of the starting agents' ids (the scenario checked
        them). Fixed once the fleet exists (joiners are in no group), so kept."""
        out = self._members.get(agents)
        if out is None:
            if isinstance(agents, tuple):
                # agent-<prefix>-<number>, the number counting from 1
                out = np.array([int(a.rsplit("-", 1)[1]) - 1 for a in agents], dtype=np.int64)
            else:
                name = agents.removeprefix(GROUP_PREFIX)
                index = next((i for i, g in enumerate(self.spec.groups) if g.name == name), -1)
                out = np.flatnonzero(self.group == index) if index >= 0 else np.zeros(0, np.int64)
            if len(self._members) >= MEMBER_SETS_KEPT:
                self._members.clear()  # injected faults may name ever new lists
            self._members[agents] = out
        return out

    def mask(self, agents: AgentSet) -> np.ndarray:
        """The same as a mask over the fleet."""
        out = np.zeros(self.size, dtype=bool)
        out[self.members(agents)] = True
        return out

    def series(self, mps_int: np.ndarray) -> np.ndarray:
        """Active series per agent at these rates: its own series per point."""
        return mps_int * self.series_ratio * self.cardinality

    def usual_series(self, mps_int: np.ndarray) -> np.ndarray:
        """The same without any cardinality explosion: what the detector expects."""
        return mps_int * self.series_ratio

    def mps_int(self, factor: float) -> np.ndarray:
        return np.rint(self.mps(factor)).astype(np.int64)

    def heartbeat_counts(self, tick: int, interval: float) -> np.ndarray:
        """How many heartbeats each agent sends at this tick (0 for most of them).

        Agent i beats at anchor_i + interval * (frac_i + m), m = 0, 1, ...; counting the
        beats in (tick - 1, tick] works for any interval, even under a second.
        """
        rel = tick - self.hb_anchor
        now = np.floor(rel / interval - self.hb_frac)
        before = np.floor((rel - 1.0) / interval - self.hb_frac)
        counts = (now - before).astype(np.int64)
        counts[~self.online | (rel <= 0)] = 0
        return counts

    def heartbeat_raw(
        self, t: float, idx: np.ndarray, mps_int: np.ndarray, rng: np.random.Generator
    ) -> list[bytes]:
        """Refresh the health of the agents in `idx` and return their heartbeats' data as
        compact JSON, in `idx` order: {"agent_id", "status", "metrics": {"cpu_percent",
        "memory_percent", "metrics_per_second"}} (floats as Python writes them)."""
        if idx.size == 0:
            return []
        mps = mps_int[idx]
        load = mps / self.capacity[idx]
        cpu = self.cpu_base[idx] + CPU_AT_CAPACITY * load + rng.normal(0.0, 2.0, idx.size)
        # Memory holds series (so a cardinality explosion fills it) and follows load
        # slowly, over MEMORY_TAU since the agent's last heartbeat.
        since = np.maximum(t - self.last_seen[idx], 1.0)
        alpha = 1.0 - np.exp(-since / MEMORY_TAU)
        # Series weigh on memory less than in proportion (shared labels, compression).
        card = self.cardinality if isinstance(self.cardinality, float) else self.cardinality[idx]
        held = load * card**SERIES_MEMORY_EXPONENT
        self.load[idx] += alpha * (held - self.load[idx])
        mem = (
            self.mem_base[idx]
            + MEMORY_AT_CAPACITY * self.load[idx]
            + rng.normal(0.0, 1.0, idx.size)
        )
        cpu = np.clip(cpu, 0.5, 100.0)
        mem = np.clip(mem, 1.0, 100.0)
        self.cpu[idx] = cpu
        self.mem[idx] = mem
        self.last_seen[idx] = t
        status = _statuses(cpu, mem)
        head = self._hb_head
        return [
            f'{head[i]}{d}","metrics":{{"cpu_percent":{c!r},'
            f'"memory_percent":{m!r},"metrics_per_second":{r}}}}}'.encode()
            for i, d, c, m, r in zip(
                idx.tolist(),
                status,
                np.round(cpu, 1).tolist(),
                np.round(mem, 1).tolist(),
                mps.tolist(),
                strict=True,
            )
        ]

    # -- membership

    def connect(self, idx: int, tick: int, t: float) -> dict[str, Any]:
        self.online[idx] = True
        self.last_seen[idx] = t
        self.hb_anchor[idx] = tick
        return self.connected_data(idx)

    def connected_data(self, idx: int) -> dict[str, Any]:
        return {
            "agent_id": self.ids[idx],
            "hostname": self.hostnames[idx],
            "version": self.versions[int(self.version[idx])],
            "capabilities": self.capabilities(idx),
        }

    def disconnect(self, idx: int) -> str:
        """Take an agent offline; returns its last_seen time (RFC 3339)."""
        self.online[idx] = False
        return rfc3339(float(self.last_seen[idx]))

    def capabilities(self, idx: int) -> list[str]:
        mask = int(self.caps[idx])
        return [c for bit, c in enumerate(self.capability_names) if mask >> bit & 1]

    def capable(self, template: str) -> np.ndarray:
        """Online agents able to run a pipeline template (`baseline` runs anywhere)."""
        if template == "baseline":
            return self.online.copy()
        if template not in self.capability_names:
            return np.zeros(self.size, dtype=bool)
        bit = self.capability_names.index(template)
        return self.online & ((self.caps >> bit) & 1).astype(bool)

    def status(self, idx: int) -> str:
        if not self.online[idx]:
            return "offline"
        return _statuses(self.cpu[idx : idx + 1], self.mem[idx : idx + 1])[0]

    def snapshot(self, mps_int: np.ndarray) -> list[dict[str, Any]]:
        out = []
        for i in range(self.size):
            item = self.connected_data(i)
            item["status"] = self.status(i)
            item["metrics"] = {
                "cpu_percent": round(float(self.cpu[i]), 1),
                "memory_percent": round(float(self.mem[i]), 1),
                "metrics_per_second": int(mps_int[i]) if self.online[i] else 0,
            }
            item["last_seen"] = rfc3339(float(self.last_seen[i]))
            g = int(self.group[i])
            group = self.spec.groups[g] if g >= 0 else None
            item["group"] = group.name if group else None
            item["labels"] = dict(group.labels) if group else {}
            out.append(item)
        return out


STATUSES = ("healthy", "degraded", "unhealthy")


def _statuses(cpu: np.ndarray, mem: np.ndarray) -> list[str]:
    """healthy, degraded (CPU over 85% or memory over 90%) or unhealthy (either over 97%)."""
    level = ((cpu > DEGRADED_CPU) | (mem > DEGRADED_MEMORY)).astype(np.int64)
    level[(cpu > UNHEALTHY) | (mem > UNHEALTHY)] = 2
    return [STATUSES[x] for x in level.tolist()]
