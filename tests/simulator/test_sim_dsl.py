"""The scenario language's stories (issue 11, item 10): faults that repeat (`every`,
`times`), faults that follow an experiment's moment (`after`), with their errors."""

from __future__ import annotations

import pytest

from simulator import Engine
from simulator.clock import parse_rfc3339
from simulator.scenario import ScenarioError, parse_scenario

START = parse_rfc3339("2024-01-20T10:00:00Z")

HEAD = """
name: dsl
duration: 30m
fleet: {agents: 20}
intervals: {heartbeat: 10m}
traffic: {bursts_per_agent_hour: 0}
pipelines:
  - {id: base, template: baseline}
  - {id: cand, template: adaptive_filter}
experiments:
  - {id: e1, baseline: base, candidate: cand, create_at: 1m, start_at: 2m, duration: 10m,
     agents: 10, deployment: {failure_probability: 0}}
faults:
"""


def _starts(events: list, fault: str) -> list[float]:
    out = []
    for e in events:
        if e.name == "fault.start" and e.data["fault"] == fault:
            out.append(e.time - START)
        elif e.name == "agent.disconnected" and fault == "agents_leave":
            out.append(e.time - START)
    return out


def test_a_fault_repeats_every_interval_as_many_times_as_asked() -> None:
    sc = parse_scenario(
        HEAD + "  - {at: 1m, type: latency, duration: 10s, every: 5m, times: 3}\n"
        "  - {at: 2m, type: duplicate, duration: 10s, every: 10m}\n"
    )
    events = Engine(sc, seed=1, start=START).advance_to(START + 1800)
    assert _starts(events, "latency") == [60.0, 360.0, 660.0]
    # Without `times`: until the run ends (30 minutes).
    assert _starts(events, "duplicate") == [120.0, 720.0, 1320.0]


def test_a_fault_follows_an_experiments_moment() -> None:
    sc = parse_scenario(
        HEAD + "  - {at: 2m, type: error_surge, target: e1, duration: 1m,"
        " after: {experiment: e1, event: started}}\n"
        "  - {at: 0s, type: burst, after: {experiment: e1, event: ended}}\n"
    )
    engine = Engine(sc, seed=1, start=START)
    before = engine.timeline()
    waiting = [i for i in before if i.get("after")]
    assert sorted(i["after"] for i in waiting) == ["0s after e1 ended", "2m after e1 started"]
    events = engine.advance_to(START + 1800)
    started = next(e.time for e in events if e.name == "experiment.started")
    ended = next(e.time for e in events if e.name in ("experiment.completed", "experiment.failed"))
    surge = [e for e in events if e.name == "metrics.update" and e.data["experiments"].get("e1")]
    during = [e for e in surge if started + 125 <= e.time <= started + 175]
    assert during and all(e.data["experiments"]["e1"]["error_rate"] > 0.01 for e in during)
    early = [e for e in surge if e.time < started + 110]
    assert early and all(e.data["experiments"]["e1"]["error_rate"] < 0.01 for e in early)
    assert [t + START for t in _starts(events, "burst")] == [ended + 1]
    after = engine.timeline()
    assert not [i for i in after if i.get("after")], "fired faults still wait"


def test_a_fault_waiting_for_a_moment_that_never_comes_never_happens() -> None:
    sc = parse_scenario(
        HEAD + "  - {at: 0s, type: burst, after: {experiment: e1, event: failed}}\n"
    )
    events = Engine(sc, seed=1, start=START).advance_to(START + 1800)
    assert any(e.name == "experiment.completed" for e in events)
    assert _starts(events, "burst") == []


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        (
            "{at: 1m, type: burst, after: {experiment: e2}}",
            "faults[0].after.experiment (line 14): no experiment with id 'e2'",
        ),
        (
            "{at: 1m, type: burst, after: {experiment: e1, event: begun}}",
            "faults[0].after.event (line 14): unknown experiment event 'begun'; known: created",
        ),
        (
            "{at: 1m, type: burst, times: 3}",
            "faults[0].times (line 14): 'times' repeats a fault: give 'every' too",
        ),
        ("{at: 1m, type: burst, every: 0s}", "faults[0].every (line 14): expected"),
        (
            "{at: 1m, type: burst, every: 1m, times: 0}",
            "faults[0].times (line 14): expected a count",
        ),
        ("{at: 1m, type: burst, evry: 1m}", "did you mean 'every'?"),
    ],
)
def test_bad_repeats_and_follows_name_the_field_and_line(fault: str, problem: str) -> None:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(HEAD + f"  - {fault}\n", "dsl.yaml")
    assert problem in str(err.value), str(err.value)


def test_an_injected_fault_neither_repeats_nor_waits() -> None:
    sc = parse_scenario(HEAD + "  []\n")
    engine = Engine(sc, seed=1, start=START)
    for extra in ({"every": "1m"}, {"after": {"experiment": "e1"}}):
        with pytest.raises(ScenarioError, match="an injected fault happens now"):
            engine.inject({"type": "burst", **extra})
