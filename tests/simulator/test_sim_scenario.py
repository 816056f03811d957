"""Scenario loading and validation: every error names the field path and the line."""

import textwrap

import pytest

from simulator.scenario import (
    ScenarioError,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
)

GOOD = """\
name: t
description: a test
duration: 10m
pipelines:
  - id: base
    template: baseline
  - id: cand
    template: adaptive_filter
experiments:
  - id: exp-1
    baseline: base
    candidate: cand
    duration: 5m
    target_reduction: 0.6
faults:
  - at: 1m
    type: spike
    target: exp-1
    duration: 30s
alerts:
  - name: High Error Rate
    condition: error_rate > 0.01
    for: 1m
"""


def _error(text: str) -> str:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(textwrap.dedent(text), source="t.yaml")
    return str(info.value)


def test_good_scenario_parses_with_defaults():
    sc = parse_scenario(GOOD, source="t.yaml")
    assert sc.duration == 600
    assert sc.pipelines[1].reduction == 0.70
    assert sc.experiments[0].max_error_rate == 0.01
    assert sc.faults[0].params == {"factor": 3.0, "variant": "candidate"}
    assert sc.alerts[0].scope == "experiments" and sc.alerts[0].for_seconds == 60
    assert sc.fleet.agents == 150 and sc.intervals.heartbeat == 30


def test_wrong_type_names_path_and_line():
    msg = _error(GOOD.replace("target_reduction: 0.6", "target_reduction: high"))
    assert msg == (
        "t.yaml: experiments[0].target_reduction (line 14): "
        "expected a number between 0 and 1, got 'high'"
    )


def test_unknown_key_suggests_a_spelling():
    msg = _error(GOOD.replace("    duration: 5m", "    duraton: 5m"))
    assert "experiments[0].duraton (line 13): unknown field (did you mean 'duration'?)" in msg


def test_missing_field():
    msg = _error(GOOD.replace("    candidate: cand\n", ""))
    assert "experiments[0] (line 10): missing required field 'candidate'" in msg


def test_bad_reference_and_condition_and_fault():
    assert "no pipeline with id 'cnd' (did you mean 'cand'?)" in _error(
        GOOD.replace("candidate: cand", "candidate: cnd")
    )
    msg = _error(GOOD.replace("error_rate > 0.01", "eval('1') > 0"))
    assert "alerts[0].condition (line 22)" in msg
    msg = _error(GOOD.replace("type: spike", "type: spik"))
    assert "faults[0].type (line 17): unknown fault type 'spik' (did you mean 'spike'?)" in msg
    msg = _error(GOOD.replace("target: exp-1", "target: exp-2"))
    assert "faults[0].target (line 18)" in msg


def test_duplicate_keys_and_yaml_syntax():
    assert "duplicate key" in _error("name: a\nname: b\n")
    assert "(line 2): invalid YAML" in _error("name: a\nfleet: a: b\n")
    assert "the file is empty" in _error("")


def test_delivery_fault_params_are_checked_and_defaulted():
    text = GOOD + "  - {name: x, condition: total_mps > 1}\n"
    sc = parse_scenario(
        text.replace(
            "faults:\n",
            "faults:\n  - {at: 2m, type: latency, duration: 1m, params: {delay_ms: 500}}\n",
        )
    )
    assert [f.type for f in sc.faults] == ["spike", "latency"]
    assert sc.faults[1].params == {"delay_ms": 500.0, "jitter_ms": 50.0, "distribution": "normal"}
    msg = _error(
        GOOD.replace(
            "faults:\n", "faults:\n  - {at: 2m, type: latency, duration: 1m, params: {x: 1}}\n"
        )
    )
    assert "faults[0].params.x" in msg and "unknown parameter" in msg and "delay_ms" in msg
    msg = _error(
        GOOD.replace(
            "faults:\n", "faults:\n  - {at: 2m, type: close_connections, params: {code: 1006}}\n"
        )
    )
    assert "faults[0].params.code" in msg and "close code" in msg
    msg = _error(GOOD.replace("faults:\n", "faults:\n  - {at: 2m, type: pause_delivery}\n"))
    assert "faults[0].duration" in msg and "needs a duration" in msg


def test_bundled_scenarios_listed_and_loadable():
    names = [name for name, _ in bundled_scenarios()]
    assert names == sorted(names)
    assert {"demo", "experiment-failure", "agent-churn", "firehose"} <= set(names)
    assert all(description for _, description in bundled_scenarios())
    with pytest.raises(ScenarioError, match="did you mean 'demo'"):
        load_scenario("demoo")
