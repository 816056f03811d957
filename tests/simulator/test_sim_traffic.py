"""Traffic with a shape (issue 11, items 8 and 9): a daily cycle and a trend, bursts,
series that differ by agent and pipeline, faults that ramp, health that follows load,
and savings that ramp with a rollout."""

from __future__ import annotations

import math

import numpy as np

from simulator import Engine
from simulator.clock import parse_rfc3339
from simulator.scenario import parse_scenario

START = parse_rfc3339("2024-01-20T00:00:00Z")


def _scenario(
    traffic: str = "{}",
    extra: str = "",
    agents: int = 40,
    intervals: str = "{metrics: 10m, heartbeat: 10m, cost: 10m}",
) -> object:
    return parse_scenario(
        f"""
name: shape
fleet: {{agents: {agents}}}
intervals: {intervals}
traffic: {traffic}
{extra}
"""
    )


def _global(events: list, key: str) -> list[tuple[float, float]]:
    return [(e.time, e.data["global"][key]) for e in events if e.name == "metrics.update"]


def test_a_day_shows_the_daily_cycle_of_the_configured_amplitude() -> None:
    amplitude = 0.3
    sc = _scenario(f"{{daily_amplitude: {amplitude}, peak_hour: 15, trend_per_day: 0}}")
    events = Engine(sc, seed=2, start=START).advance_to(START + 86400)
    mps = _global(events, "total_mps")
    values = np.array([v for _, v in mps], dtype=float)
    # Hourly means, so the agents' own noise and bursts average out.
    hours = np.array([(t - START) // 3600 for t, _ in mps])
    hourly = np.array([values[hours == h].mean() for h in range(24)])
    swing = (hourly.max() - hourly.min()) / (hourly.max() + hourly.min())
    assert abs(swing - amplitude) < 0.05, swing
    assert abs(int(hourly.argmax()) - 15) <= 1, hourly.argmax()
    assert abs(int(hourly.argmin()) - 3) <= 1, hourly.argmin()


def test_a_trend_when_asked_and_no_cycle() -> None:
    growing = _scenario("{daily_amplitude: 0, trend_per_day: 0.2, bursts_per_agent_hour: 0}")
    events = Engine(growing, seed=2, start=START).advance_to(START + 86400)
    values = np.array([v for _, v in _global(events, "total_mps")], dtype=float)
    first, last = values[:12].mean(), values[-12:].mean()
    assert 1.12 < last / first < 1.28, last / first
    detrended = values / np.linspace(1.0, 1.2, values.size)
    assert (detrended.max() - detrended.min()) / detrended.mean() < 0.1  # no daily cycle


def test_agents_burst_now_and_then() -> None:
    sc = _scenario("{daily_amplitude: 0, bursts_per_agent_hour: 2, burst_factor: 2}", agents=20)
    engine = Engine(sc, seed=3, start=START)
    bursting = 0
    for k in range(3600):
        engine.advance_to(START + k)
        bursting += int(engine.fleet.bursting.sum())
    # 20 agents, 2 bursts an hour each, 90 s each: about an agent-hour of bursts.
    assert 0.5 * 3600 < bursting < 1.6 * 3600, bursting


def test_series_per_point_differs_by_agent_and_by_pipeline() -> None:
    sc = _scenario(
        "{series_spread: 0.5}",
        """
pipelines:
  - {id: base, template: baseline}
  - {id: top, template: topk}
  - {id: filter, template: adaptive_filter}
experiments:
  - {id: a, baseline: base, candidate: top, duration: 1h, agents: 10,
     deployment: {failure_probability: 0}}
  - {id: b, baseline: base, candidate: filter, duration: 1h, agents: 10,
     deployment: {failure_probability: 0}}
""",
    )
    engine = Engine(sc, seed=4, start=START)
    ratios = engine.fleet.series_ratio
    assert ratios.std() / ratios.mean() > 0.3  # agents differ
    events = engine.advance_to(START + 1800)
    last = [e for e in events if e.name == "metrics.update"][-1].data["experiments"]
    spp = {
        k: (m["candidate_series"] / m["candidate_mps"]) / (m["baseline_series"] / m["baseline_mps"])
        for k, m in last.items()
    }
    assert spp["a"] < 0.9 < 1.1 < spp["b"], spp  # top-k keeps fewer series per point


def test_a_drop_ramps_in_and_out() -> None:
    sc = _scenario(
        "{daily_amplitude: 0, bursts_per_agent_hour: 0}",
        """
faults:
  - {at: 10m, type: sudden_drop, duration: 5m, params: {factor: 0.2, ramp: 60s}}
""",
        intervals="{metrics: 1s, heartbeat: 10m, cost: 10m}",
    )
    mps = dict(_global(Engine(sc, seed=5, start=START).advance_to(START + 1200), "total_mps"))
    before = np.mean([mps[START + s] for s in range(540, 600)])
    # Half-way through the ramp in: between the old level and the floor, not at either.
    mid = mps[START + 630] / before
    assert 0.3 < mid < 0.8, mid
    assert mps[START + 700] / before < 0.25
    mid_out = mps[START + 870] / before
    assert 0.3 < mid_out < 0.8, mid_out
    assert mps[START + 960] / before > 0.9


def test_health_follows_load_and_a_cardinality_explosion_fills_memory() -> None:
    sc = _scenario(
        "{daily_amplitude: 0.3, peak_hour: 12, bursts_per_agent_hour: 1}",
        """
faults:
  - {at: 6h, type: cardinality_explosion, duration: 2h, params: {factor: 3, ramp: 5m}}
""",
        agents=40,
        intervals="{metrics: 10m, heartbeat: 60s, cost: 10m}",
    )
    events = Engine(sc, seed=6, start=START).advance_to(START + 13 * 3600)
    beats = [e for e in events if e.name == "agent.heartbeat"]

    def hours(a: float, b: float) -> list:
        return [e for e in beats if START + a * 3600 <= e.time < START + b * 3600]

    def cpu(es: list) -> float:
        return float(np.mean([e.data["metrics"]["cpu_percent"] for e in es]))

    def mem(es: list) -> float:
        return float(np.mean([e.data["metrics"]["memory_percent"] for e in es]))

    def share(es: list, status: str) -> float:
        return sum(e.data["status"] == status for e in es) / len(es)

    noon, night = hours(11, 13), hours(0, 2)
    assert cpu(noon) > cpu(night) + 10  # CPU follows the daily load
    assert share(noon, "degraded") > share(night, "degraded")
    assert share(noon, "degraded") > 0.01, "a peak hour never degrades anyone"
    explosion, before = hours(7, 8), hours(4, 5)
    assert mem(explosion) > mem(before) + 15  # series fill memory
    assert share(explosion, "unhealthy") > share(before, "unhealthy")
    assert {e.data["status"] for e in beats} <= {"healthy", "degraded", "unhealthy"}


def test_savings_ramp_with_the_rollout_not_at_once() -> None:
    sc = _scenario(
        "{daily_amplitude: 0, bursts_per_agent_hour: 0}",
        """
pipelines:
  - {id: base, template: baseline}
  - {id: cand, template: hybrid}
experiments:
  - id: e
    baseline: base
    candidate: cand
    duration: 10m
    agents: 20
    deployment: {failure_probability: 0, seconds_per_agent: 6, parallel: 1}
""",
        intervals="{metrics: 10s, heartbeat: 10m, cost: 1s}",
    )
    events = Engine(sc, seed=7, start=START).advance_to(START + 600)
    started = next(e.time for e in events if e.name == "deployment.started")
    running = next(e.time for e in events if e.name == "experiment.started")
    during = [
        e.data["savings_per_hour"]
        for e in events
        if e.name == "cost.update" and started < e.time < running
    ]
    after = [
        e.data["savings_per_hour"]
        for e in events
        if e.name == "cost.update" and e.time > running + 30
    ]
    assert len(during) > 60
    # Up step by step as agents finish: many distinct levels, from about 0 to about full.
    assert during[0] < 0.1 * np.mean(after)
    assert during[-1] > 0.8 * np.mean(after)
    assert len(set(during)) > 10
    assert all(b >= a - 1.0 for a, b in zip(during, during[1:], strict=False))
    assert not math.isnan(sum(during))
