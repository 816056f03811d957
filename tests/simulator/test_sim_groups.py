"""Agent groups (issue 11, item 10): a service, region or zone of the fleet, with labels,
that faults and experiments can target."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import Engine
from simulator.clock import parse_rfc3339
from simulator.scenario import ScenarioError, parse_scenario

START = parse_rfc3339("2024-01-20T10:00:00Z")

HEAD = """
name: groups
fleet:
  agents: 30
  groups:
    - {name: checkout, agents: 10, labels: {service: checkout, region: eu-west-1}}
    - {name: search, agents: 10, labels: {service: search}}
intervals: {heartbeat: 10s}
traffic: {bursts_per_agent_hour: 0, daily_amplitude: 0}
pipelines:
  - {id: base, template: baseline}
  - {id: cand, template: topk}
"""


def _rates(events, t0, t1):
    out: dict[str, list[int]] = {}
    for e in events:
        if e.name == "agent.heartbeat" and t0 <= e.time < t1:
            out.setdefault(e.data["agent_id"], []).append(e.data["metrics"]["metrics_per_second"])
    return {a: float(np.mean(v)) for a, v in out.items()}


def test_a_drop_on_a_group_hits_its_agents_only() -> None:
    sc = parse_scenario(
        HEAD + "faults:\n  - {at: 2m, type: sudden_drop, target: 'group:checkout', duration: 2m,"
        " params: {factor: 0.2, ramp: 0s}}\n"
    )
    engine = Engine(sc, seed=1, start=START)
    events = engine.advance_to(START + 300)
    before, during = (
        _rates(events, START + 60, START + 120),
        _rates(events, START + 150, START + 230),
    )
    group = {engine.fleet.ids[i] for i in np.flatnonzero(engine.fleet.in_group("checkout"))}
    for agent, rate in during.items():
        ratio = rate / before[agent]
        if agent in group:
            assert ratio < 0.3, (agent, ratio)
        else:
            assert 0.8 < ratio < 1.25, (agent, ratio)


def test_agents_leave_from_a_group_and_an_experiment_stays_in_its_group() -> None:
    sc = parse_scenario(
        HEAD
        + """experiments:
  - {id: e1, baseline: base, candidate: cand, duration: 10m, agents: 8, group: search,
     deployment: {failure_probability: 0}}
faults:
  - {at: 3m, type: agents_leave, target: 'group:checkout', duration: 2m, params: {fraction: 0.5}}
"""
    )
    engine = Engine(sc, seed=2, start=START)
    events = engine.advance_to(START + 600)
    left = {e.data["agent_id"] for e in events if e.name == "agent.disconnected"}
    checkout = {engine.fleet.ids[i] for i in np.flatnonzero(engine.fleet.in_group("checkout"))}
    search = {engine.fleet.ids[i] for i in np.flatnonzero(engine.fleet.in_group("search"))}
    assert len(left) == 5 and left <= checkout
    run = engine.lab.runs[0]
    assert {engine.fleet.ids[i] for i in run.slots} <= search
    snap = {a["agent_id"]: a for a in engine.snapshot()["agents"]}
    some = next(iter(checkout))
    assert snap[some]["group"] == "checkout"
    assert snap[some]["labels"] == {"service": "checkout", "region": "eu-west-1"}
    last = sorted(snap)[-1]  # past the groups: in none
    assert snap[last]["group"] is None and snap[last]["labels"] == {}


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            "faults:\n  - {at: 1m, type: spike, target: 'group:chekout', duration: 1m}\n",
            "faults[0].target (line 14): no group 'chekout' in fleet.groups"
            " (did you mean 'checkout'?)",
        ),
        (
            "faults:\n  - {at: 1m, type: error_surge, target: 'group:checkout', duration: 1m}\n",
            "faults[0].target (line 14): expected global or an experiment id",
        ),
        (
            "experiments:\n  - {id: e, baseline: base, candidate: cand, duration: 1m,"
            " group: serch}\n",
            "experiments[0].group (line 14): no group 'serch' in fleet.groups"
            " (did you mean 'search'?)",
        ),
    ],
)
def test_a_wrong_group_names_the_field_and_line(extra: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(HEAD + extra, "g.yaml")
    assert problem in str(err.value), str(err.value)


def test_groups_may_not_take_more_agents_than_the_fleet() -> None:
    with pytest.raises(
        ScenarioError, match=r"fleet\.groups\[1\]\.agents \(line \d+\): the groups take 35"
    ):
        parse_scenario(
            "name: g\nfleet:\n  agents: 30\n  groups:\n    - {name: a, agents: 20}\n"
            "    - {name: b, agents: 15}\n",
            "g.yaml",
        )
    with pytest.raises(ScenarioError, match="duplicate group 'a'"):
        parse_scenario(
            "name: g\nfleet:\n  agents: 30\n  groups:\n    - {name: a, agents: 2}\n"
            "    - {name: a, agents: 2}\n",
            "g.yaml",
        )
