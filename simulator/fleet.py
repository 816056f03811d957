"""The agent fleet as a struct of numpy arrays: thousands of agents cost a few vector ops.

Per tick the fleet drifts every agent's load (one vector draw) and works out which agents
heartbeat now from a per-agent phase; Python objects are built only for the events that
are actually emitted.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from simulator.clock import rfc3339
from simulator.scenario import Fleet as FleetSpec

# Load drift per agent: an AR(1) around 1 with a slow memory, so sums over agents move
# smoothly and the detector sees noise, not jumps. Shocks are clipped so tails stay
# bounded (see detector.MIN_REL_SD).
DRIFT_PHI = 0.98
DRIFT_SD = 0.03
CPU_PER_KMPS = 0.3  # % CPU per 1,000 mps (the reference: 125k mps at about 45 %)
DEGRADED_CPU = 85.0
DEGRADED_MEMORY = 90.0


class FleetState:
    """Every agent's identity, load, health and heartbeat phase, one array per field."""

    def __init__(self, spec: FleetSpec, rng: np.random.Generator) -> None:
        self.spec = spec
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
        cpu_base = rng.uniform(5.0, 30.0, count)
        mem_base = rng.uniform(30.0, 70.0, count)
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
        self.online = np.concatenate([self.online, np.zeros(count, dtype=bool)])
        self.last_seen = np.concatenate([self.last_seen, np.zeros(count)])
        self.hb_anchor = np.concatenate([self.hb_anchor, np.zeros(count)])
        self.hb_frac = np.concatenate([self.hb_frac, frac])
        return np.arange(first, first + count)

    def join(self, count: int, rng: np.random.Generator) -> np.ndarray:
        return self._add(count, rng)

    # -- per tick

    def drift_step(self, rng: np.random.Generator) -> None:
        shock = np.clip(rng.standard_normal(self.size), -2.5, 2.5)
        self.drift = DRIFT_PHI * self.drift + DRIFT_SD * np.sqrt(1 - DRIFT_PHI**2) * shock

    def mps(self, factor: float) -> np.ndarray:
        """Current rate per agent (offline agents included; mask with `online`)."""
        return self.base_mps * (1.0 + self.drift) * factor

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
        cpu = self.cpu_base[idx] + CPU_PER_KMPS * mps / 1000.0 + rng.normal(0.0, 2.0, idx.size)
        mem = self.mem_base[idx] + rng.normal(0.0, 1.5, idx.size)
        cpu = np.clip(cpu, 0.5, 100.0)
        mem = np.clip(mem, 1.0, 100.0)
        self.cpu[idx] = cpu
        self.mem[idx] = mem
        self.last_seen[idx] = t
        degraded = (cpu > DEGRADED_CPU) | (mem > DEGRADED_MEMORY)
        head = self._hb_head
        return [
            f'{head[i]}{"degraded" if d else "healthy"}","metrics":{{"cpu_percent":{c!r},'
            f'"memory_percent":{m!r},"metrics_per_second":{r}}}}}'.encode()
            for i, d, c, m, r in zip(
                idx.tolist(),
                degraded.tolist(),
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
        degraded = self.cpu[idx] > DEGRADED_CPU or self.mem[idx] > DEGRADED_MEMORY
        return "degraded" if degraded else "healthy"

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
            out.append(item)
        return out
