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
    group = {engine.fleet.ids[i] for i in np.flatnonzero(engine.fleet.mask("group:checkout"))}
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
    checkout = {engine.fleet.ids[i] for i in np.flatnonzero(engine.fleet.mask("group:checkout"))}
    search = {engine.fleet.ids[i] for i in np.flatnonzero(engine.fleet.mask("group:search"))}
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


def test_a_spike_on_a_list_of_agents_hits_those_agents_only() -> None:
    listed = ["agent-prod-app-03", "agent-prod-app-17", "agent-prod-app-29"]
    sc = parse_scenario(
        HEAD + f"faults:\n  - {{at: 2m, type: spike, target: {listed}, duration: 2m,"
        " params: {factor: 4, ramp: 0s}}\n"
    )
    engine = Engine(sc, seed=3, start=START)
    events = engine.advance_to(START + 150)
    (fault,) = engine.active_faults()
    assert fault["type"] == "spike" and fault["target"] == tuple(listed)
    events += engine.advance_to(START + 300)
    before, during = (
        _rates(events, START + 60, START + 120),
        _rates(events, START + 150, START + 230),
    )
    assert set(during) == set(before) and len(during) == 30
    for agent, rate in during.items():
        ratio = rate / before[agent]
        if agent in listed:
            assert 3.0 < ratio < 5.5, (agent, ratio)
        else:
            assert 0.8 < ratio < 1.25, (agent, ratio)


def test_a_list_of_agents_leaves_and_comes_back() -> None:
    listed = ["agent-prod-app-05", "agent-prod-app-06"]
    sc = parse_scenario(
        HEAD + "faults:\n  - {at: 1m, type: agents_leave, target: [agent-prod-app-06, "
        "agent-prod-app-05], duration: 1m}\n"
    )
    engine = Engine(sc, seed=4, start=START)
    events = engine.advance_to(START + 180)
    gone = [(e.time, e.data["agent_id"]) for e in events if e.name == "agent.disconnected"]
    back = [(e.time, e.data["agent_id"]) for e in events if e.name == "agent.connected"]
    assert sorted(a for _, a in gone) == listed  # both, although `count` is 1
    assert {t for t, _ in gone} == {START + 60}
    assert sorted(a for t, a in back if t > START) == listed


def test_an_experiment_on_a_list_of_agents() -> None:
    listed = [f"agent-prod-app-{n:02d}" for n in (2, 4, 8, 16, 25, 27)]
    sc = parse_scenario(
        HEAD + f"experiments:\n  - {{id: e1, baseline: base, candidate: cand, duration: 5m,"
        f" agents: {listed}, deployment: {{failure_probability: 0}}}}\n"
    )
    assert sc.experiments[0].agents == 6
    engine = Engine(sc, seed=5, start=START)
    events = engine.advance_to(START + 120)
    (run,) = engine.lab.runs
    assert sorted(engine.fleet.ids[i] for i in run.slots) == listed
    started = next(e for e in events if e.name == "experiment.started")
    assert started.data["agent_count"] == 6


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            "faults:\n  - {at: 1m, type: spike, duration: 1m, target:"
            " [agent-prod-app-01, agent-prod-app-31]}\n",
            "faults[0].target[1] (line 14): expected an agent id such as 'agent-prod-app-01'"
            " (from 1 to 30), got 'agent-prod-app-31'",
        ),
        (
            "faults:\n  - {at: 1m, type: spike, duration: 1m, target:"
            " [agent-prod-app-01, agent-prod-app-01]}\n",
            "faults[0].target[1] (line 14): 'agent-prod-app-01' is listed twice",
        ),
        (
            "faults:\n  - {at: 1m, type: spike, duration: 1m, target: []}\n",
            "faults[0].target (line 14): expected a non-empty list of agent ids, got a list",
        ),
        (
            "faults:\n  - {at: 1m, type: spike, duration: 1m, target: [7]}\n",
            "faults[0].target[0] (line 14): expected a non-empty string, got 7",
        ),
        (
            "faults:\n  - {at: 1m, type: spike, duration: 1m, target: {a: 1}}\n",
            "faults[0].target (line 14): expected a non-empty string or a list of agent ids,"
            " got a mapping",
        ),
        (
            "faults:\n  - {at: 1m, type: error_surge, duration: 1m, target: [agent-prod-app-01]}\n",
            "faults[0].target (line 14): a list of agents is a target of agents_leave,"
            " cardinality_explosion, spike, sudden_drop only, not of 'error_surge'",
        ),
        (
            "experiments:\n  - {id: e, baseline: base, candidate: cand, duration: 1m,"
            " agents: [agent-prod-app-1]}\n",
            "experiments[0].agents[0] (line 14): expected an agent id such as"
            " 'agent-prod-app-01' (from 1 to 30), got 'agent-prod-app-1'",
        ),
        (
            "experiments:\n  - {id: e, baseline: base, candidate: cand, duration: 1m, agents: 0}\n",
            "experiments[0].agents (line 14): expected a number of agents from 1 to 100000"
            " or a list of agent ids, got 0",
        ),
        (
            "experiments:\n  - {id: e, baseline: base, candidate: cand, duration: 1m,"
            " group: search, agents: [agent-prod-app-01]}\n",
            "experiments[0].group (line 14): give either a group or a list of agents, not both",
        ),
    ],
)
def test_a_wrong_list_of_agents_names_the_field_and_line(extra: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(HEAD + extra, "g.yaml")
    assert problem in str(err.value), str(err.value)


def test_one_agent_as_the_target_of_a_factor_fault_is_a_list_of_one() -> None:
    sc = parse_scenario(
        HEAD + "faults:\n  - {at: 1m, type: cardinality_explosion, target: agent-prod-app-04,"
        " duration: 1m}\n"
    )
    assert sc.faults[0].target == ("agent-prod-app-04",)
    with pytest.raises(ScenarioError) as err:
        parse_scenario(
            HEAD + "faults:\n  - {at: 1m, type: spike, target: agent-prod-app-99, duration: 1m}\n",
            "g.yaml",
        )
    assert (
        "faults[0].target (line 14): expected global, an experiment id, an agent id,"
        " group:<name> or a list of agent ids, got 'agent-prod-app-99'" in str(err.value)
    )
