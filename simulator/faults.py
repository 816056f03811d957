"""Faults in force and what they do to the model at a given tick.

Simulation faults change numbers (a drop or spike in a rate, a cardinality explosion, an
error surge, agents leaving); delivery faults are only scheduled here and announced to
the server as control events. This module turns the active list into multipliers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator.clock import rfc3339
from simulator.experiments import Effects
from simulator.fleet import AgentSet
from simulator.scenario import GROUP_PREFIX, Fault


@dataclass
class ActiveFault:
    id: str
    fault: Fault
    start_tick: int
    end_tick: int | None  # None: lasts until something else ends it (or for good)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self, start: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.fault.type,
            "target": self.fault.target,
            "params": dict(self.fault.params),
            "started_at": rfc3339(start + self.start_tick),
            "ends_at": None if self.end_tick is None else rfc3339(start + self.end_tick),
            **self.extra,
        }


@dataclass
class GlobalEffects:
    mps_factor: float = 1.0
    cardinality: float = 1.0
    # Per set of agents a fault names (`group:<name>`, or a list of agent ids): their
    # rate and their series.
    set_mps: dict[AgentSet, float] = field(default_factory=dict)
    set_cardinality: dict[AgentSet, float] = field(default_factory=dict)
    error_rate: float | None = None
    baseline_error_rate: float | None = None
    churn_per_hour: float = 0.0
    churn_downtime: float | None = None


def effects_at(
    tick: int, active: list[ActiveFault], experiment_ids: list[str]
) -> tuple[GlobalEffects, dict[str, Effects]]:
    """Combine every fault in force into global and per-experiment effects."""
    glob = GlobalEffects()
    per = {eid: Effects() for eid in experiment_ids}
    for item in active:
        f = item.fault
        p = f.params
        if f.type == "agent_churn":
            glob.churn_per_hour += float(p["rate_per_hour"])
            glob.churn_downtime = float(p["downtime"])
            continue
        if f.type not in ("sudden_drop", "spike", "cardinality_explosion", "error_surge"):
            continue
        factor = float(p.get("factor", 1.0))
        if "ramp" in p:
            # Real incidents build up and die down: the factor is reached over `ramp`
            # and left over `ramp` before the end (geometrically, so a 5x explosion is
            # 2.2x half-way), not as a step.
            ramp = float(p["ramp"])
            if ramp > 0:
                share = min(1.0, (tick - item.start_tick + 1) / ramp)
                if item.end_tick is not None:
                    share = min(share, max(0.0, (item.end_tick - tick) / ramp))
                factor = factor**share
        target = f.target
        if isinstance(target, tuple) or target.startswith(GROUP_PREFIX):
            # A set of agents (the scenario allows no error_surge on one).
            into = glob.set_cardinality if f.type == "cardinality_explosion" else glob.set_mps
            into[target] = into.get(target, 1.0) * factor
            continue
        if target == "global":
            if f.type == "cardinality_explosion":
                glob.cardinality *= factor
            elif f.type == "error_surge":
                _surge(glob, p)
            else:
                glob.mps_factor *= factor
            continue
        eff = per.get(target)
        if eff is None:
            continue
        if f.type == "error_surge":
            _surge(eff, p)
        elif f.type == "cardinality_explosion":
            if p["variant"] == "baseline":
                eff.baseline_cardinality *= factor
            else:
                eff.candidate_cardinality *= factor
        elif p["variant"] == "baseline":
            eff.baseline_factor *= factor
        else:
            eff.candidate_factor *= factor
    for eff in per.values():
        if glob.error_rate is not None:
            eff.error_rate = max(eff.error_rate or 0.0, glob.error_rate)
        if glob.baseline_error_rate is not None:
            eff.baseline_error_rate = max(eff.baseline_error_rate or 0.0, glob.baseline_error_rate)
    return glob, per


def _surge(into: GlobalEffects | Effects, params: dict[str, Any]) -> None:
    """An error surge on its variant: the baseline's `baseline_error_rate` or the
    candidate's `error_rate` (the default); of several in force, the highest."""
    attr = "baseline_error_rate" if params.get("variant") == "baseline" else "error_rate"
    setattr(into, attr, max(getattr(into, attr) or 0.0, float(params["error_rate"])))
