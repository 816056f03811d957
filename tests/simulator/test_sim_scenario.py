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
    assert sc.faults[0].params == {"factor": 3.0, "ramp": 20.0, "variant": "candidate"}
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


def test_unreadable_files_are_scenario_errors(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(ScenarioError, match=r"latin1\.yaml: cannot read: not UTF-8"):
        load_scenario(str(path))


def test_recursive_alias_is_a_scenario_error():
    message = _error("name: t\nfleet: &a {x: *a}\n")
    assert message.startswith("t.yaml: fleet.x")
    assert "unknown field" in message


def test_deep_nesting_is_a_scenario_error():
    message = _error("name: t\nfleet: " + "[" * 5000 + "\n")
    # libyaml (CSafeLoader) says so with the line; the pure-Python parser hits recursion.
    assert "maximum nesting depth" in message or "nested too deeply" in message


def test_billion_laughs_is_cheap():
    import time

    lol = ["name: t", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        lol.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 10) + "]")
    began = time.process_time()
    assert "unknown field" in _error("\n".join(lol) + "\n")
    assert time.process_time() - began < 1.0


def test_too_many_nodes(monkeypatch):
    monkeypatch.setattr("simulator.scenario.MAX_YAML_NODES", 100)
    assert "too many YAML nodes" in _error("name: t\nx: [" + "1," * 100 + "1]\n")
    assert "unknown field" in _error("name: t\nx: [" + "1," * 50 + "1]\n")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("intervals: {metrics: 0.0000001}", "intervals.metrics (line 2): expected an interval"),
        ("intervals: {cost: 0.5ms}", "intervals.cost (line 2): expected an interval"),
        ("fleet: {mps: {median: 1.0e+300}}", "fleet.mps.median (line 2): expected a rate"),
        ("price_per_million_points: 1.0e+308", "price_per_million_points (line 2)"),
        ("fleet: {churn: {rate_per_hour: 1.0e+300}}", "fleet.churn.rate_per_hour (line 2)"),
        ("start: 9999-12-31T23:59:50Z", "start (line 2): the start must be between 1970-01-01"),
        ("fleet: {agents: 20000000}", "fleet.agents (line 2): expected a number of agents"),
    ],
)
def test_values_out_of_bounds(text, expected):
    assert expected in _error(f"name: t\n{text}\n")


def test_a_heartbeat_interval_of_one_millisecond_runs_spread_over_the_tick():
    from simulator import Engine

    sc = parse_scenario(
        "name: t\nstart: 2024-01-20T10:00:00Z\nfleet: {agents: 2}\nintervals: {heartbeat: 1ms}\n"
    )
    beats = [e for e in Engine(sc).advance_to(sc.start + 2) if e.name == "agent.heartbeat"]
    # Agents beat from the tick after they connect: a thousand each in tick 1, and the
    # same again in tick 2, each at its own millisecond.
    assert len(beats) == 2 * 2 * 1000
    assert len({(e.tags["agent_id"], e.time) for e in beats}) == len(beats)


def test_metrics_and_cost_are_at_most_once_a_tick():
    for key in ("metrics", "cost", "progress"):
        with pytest.raises(ScenarioError, match="at least 1s"):
            parse_scenario(f"name: t\nintervals: {{{key}: 500ms}}\n")


def test_agent_targets_are_parsed_not_enumerated():
    import time

    base = "name: t\nfleet: {agents: 100000}\nfaults:\n  - {at: 1m, type: agents_leave, "
    began = time.process_time()
    sc = parse_scenario(base + "target: agent-prod-app-100000, duration: 1m}\n")
    assert time.process_time() - began < 0.5
    assert sc.faults[0].target == "agent-prod-app-100000"
    for bad in (
        "agent-prod-app-100001",
        "agent-prod-app-000000",
        "agent-prod-app-1",
        "agent-prod-app-0000１",
        "agent-prod-app-+00001",
    ):
        assert "expected 'global' or" in _error(base + f"target: {bad}, duration: 1m}}\n")
    assert (
        parse_scenario(
            "name: t\nfleet: {agents: 5}\nfaults:\n"
            "  - {at: 1m, type: agents_leave, target: agent-prod-app-05}\n"
        )
        .faults[0]
        .target
        == "agent-prod-app-05"
    )


def test_fault_counts_are_capped():
    text = "name: t\nfaults:\n  - {at: 1m, type: agents_join, params: {count: 100000000000}}\n"
    assert "faults[0].params.count (line 3): expected a number of agents" in _error(text)
    text = (
        "name: t\nfaults:\n  - {at: 1m, type: agent_churn, duration: 1m,"
        " params: {rate_per_hour: 1.0e+300}}\n"
    )
    assert "faults[0].params.rate_per_hour (line 3): expected a rate" in _error(text)


def test_merge_key_with_an_override_is_not_a_duplicate():
    sc = parse_scenario(
        textwrap.dedent(
            """\
            name: t
            pipelines:
              - {id: base, template: baseline}
              - {id: cand, template: adaptive_filter}
            experiments:
              - &e {id: e1, baseline: base, candidate: cand, duration: 5m}
              - <<: *e
                id: e2
                agents: 3
            """
        )
    )
    assert [(e.id, e.agents, e.duration) for e in sc.experiments] == [
        ("e1", 15, 300.0),
        ("e2", 3, 300.0),
    ]
    # A real duplicate next to a merge is still one.
    assert "experiments[1].id (line 5): duplicate key" in _error(
        "name: t\nexperiments:\n  - &e {id: e1}\n  - {<<: *e, id: e2,\n     id: e3}\n"
    )


def test_int_and_string_keys_are_different_keys():
    # `1` and `'1'` are two keys (both unknown fields here), not a duplicate.
    message = _error("name: t\nfleet: {1: a, '1': b}\n")
    assert "duplicate" not in message and "unknown field" in message


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("fleet: []", "fleet (line 2)"),
        ("fleet: false", "fleet (line 2)"),
        ("intervals: 0", "intervals (line 2)"),
        ("faults:\n  - {at: 1m, type: agents_join, params: []}", "faults[0].params (line 3)"),
    ],
)
def test_empty_or_false_is_not_an_absent_mapping(text, path):
    assert f"{path}: expected a mapping" in _error(f"name: t\n{text}\n")


def test_close_code_must_be_an_integer():
    text = "name: t\nfaults:\n  - {at: 1m, type: close_connections, params: {code: 4000.0}}\n"
    assert "faults[0].params.code (line 3): expected a close code" in _error(text)
    text = text.replace("4000.0", "4000")
    assert parse_scenario(text).faults[0].params["code"] == 4000


def test_an_error_quotes_no_more_than_an_excerpt_of_a_file(tmp_path):
    # A file that is not a scenario (a password file, a key) given by mistake: the error
    # says what is wrong and quotes at most a short excerpt of it.
    secret = "root:x:0:0:" + "s3cr3t" * 100
    path = tmp_path / "passwd.yaml"
    path.write_text(secret + "\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert "s3cr3t" * 7 not in str(info.value)
    assert len(str(info.value)) < 200
    path.write_text(f"name: x\n{secret}: 1\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(str(path))
    assert "s3cr3t" * 7 not in str(info.value)


def test_only_regular_files_are_read(tmp_path):
    import os

    fifo = tmp_path / "f.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ScenarioError, match="not a regular file"):
        load_scenario(str(fifo))
    with pytest.raises(ScenarioError, match="not a regular file"):
        load_scenario("/dev/zero")
    big = tmp_path / "big.yaml"
    big.write_text("name: big\n" + "#" * 5000 + "\n")
    with pytest.raises(ScenarioError, match="limit of 4096 bytes"):
        load_scenario(str(big), max_bytes=4096)
    assert load_scenario(str(big), max_bytes=8192).name == "big"
