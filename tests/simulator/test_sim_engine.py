"""The engine: determinism, the demo's story, consistency of the numbers, control."""

import collections
import json
import math

import pytest

from simulator import CHANNELS, CONTROL, FILTER_KEYS, Engine, ScenarioError, load_scenario
from simulator.clock import parse_rfc3339
from simulator.scenario import bundled_scenarios, parse_scenario, scenarios_dir

START = parse_rfc3339("2024-01-20T10:00:00Z")
ALL_EVENTS = {
    "experiment.created",
    "experiment.started",
    "experiment.updated",
    "experiment.completed",
    "experiment.failed",
    "metrics.update",
    "metrics.anomaly",
    "agent.connected",
    "agent.heartbeat",
    "agent.disconnected",
    "deployment.started",
    "deployment.progress",
    "deployment.completed",
    "alert.triggered",
    "alert.resolved",
    "cost.update",
}


def _lines(events):
    return [
        json.dumps(
            {"time": e.time, "channel": e.channel, "event": e.name, "data": e.data, "tags": e.tags},
            separators=(",", ":"),
        )
        for e in events
    ]


@pytest.fixture(scope="module")
def demo():
    return load_scenario("demo")


@pytest.fixture(scope="module")
def demo_events(demo):
    return Engine(demo, seed=7, start=START).advance_to(START + 600)


def test_same_seed_same_stream_however_chunked(demo, demo_events):
    chunked = Engine(demo, seed=7, start=START)
    events = []
    t = START
    while t < START + 600:
        t += 0.7  # fractional steps land between ticks
        events += chunked.advance_to(t)
    events += chunked.advance_to(START + 600)
    assert _lines(events) == _lines(demo_events)


def test_different_seed_different_stream(demo, demo_events):
    other = Engine(demo, seed=8, start=START).advance_to(START + 600)
    assert _lines(other) != _lines(demo_events)


def test_step_and_now(demo):
    eng = Engine(demo, seed=1, start=START + 0.5)
    assert eng.now == START and eng.end == START + demo.duration
    first = eng.step(0)  # tick 0: the initial fleet connects
    assert {e.name for e in first} >= {"agent.connected", "experiment.created"}
    assert eng.step(0.5) == [] and eng.now == START + 0.5
    eng.advance_to(START + 10_000)
    assert eng.now == eng.end  # never runs past the scenario's end
    with pytest.raises(ValueError):
        Engine(demo.__class__(**{**_fields(demo), "start": None}))


def _fields(sc):
    return {f: getattr(sc, f) for f in sc.__dataclass_fields__}


def test_demo_has_every_event_type_and_its_story(demo_events):
    names = collections.Counter(e.name for e in demo_events)
    assert set(names) == ALL_EVENTS
    completed = [e.data for e in demo_events if e.name == "experiment.completed"]
    assert [c["winner"] for c in completed] == ["candidate"]
    failed = [e.data for e in demo_events if e.name == "experiment.failed"]
    assert failed[0]["rollback_initiated"] is True and "error rate" in failed[0]["error"]
    rolled = [e for e in demo_events if e.data.get("status") == "rolled_back"]
    assert rolled and rolled[0].data["id"] == failed[0]["id"]
    anomalies = {e.data["type"] for e in demo_events if e.name == "metrics.anomaly"}
    assert {"error_surge", "sudden_drop"} <= anomalies
    triggered = {e.data["alert_id"] for e in demo_events if e.name == "alert.triggered"}
    resolved = {e.data["alert_id"] for e in demo_events if e.name == "alert.resolved"}
    assert triggered and triggered == resolved
    gone = {e.data["agent_id"] for e in demo_events if e.name == "agent.disconnected"}
    back = [e for e in demo_events if e.name == "agent.connected" and e.time > START]
    assert gone and gone == {e.data["agent_id"] for e in back}


def test_events_are_json_ready_with_reference_types(demo_events):
    for e in demo_events:
        assert e.time == int(e.time)
        assert e.channel in CHANNELS
        assert set(e.tags) <= set(FILTER_KEYS)
        json.dumps(e.data, allow_nan=False)
    by = collections.defaultdict(list)
    for e in demo_events:
        by[e.name].append(e)
    for e in by["metrics.update"]:
        g = e.data["global"]
        assert all(type(g[k]) is int for k in ("total_mps", "total_series", "active_agents"))
        assert not e.tags
        for m in e.data["experiments"].values():
            assert type(m["baseline_mps"]) is int and type(m["candidate_mps"]) is int
            assert type(m["reduction_rate"]) is float and type(m["error_rate"]) is float
    for e in by["agent.heartbeat"]:
        m = e.data["metrics"]
        assert type(m["metrics_per_second"]) is int and type(m["cpu_percent"]) is float
        assert e.tags == {"agent_id": e.data["agent_id"]}
    for name in ("deployment.started", "deployment.progress", "deployment.completed"):
        for e in by[name]:
            assert e.tags == {
                "deployment_id": e.data["deployment_id"],
                "experiment_id": e.data["experiment_id"],
                "pipeline_id": e.data["pipeline_id"],
            }
    for e in by["deployment.completed"]:
        assert e.data["status"] in ("active", "failed")
        assert type(e.data["duration_seconds"]) is int and type(e.data["agent_count"]) is int
    for e in by["experiment.started"]:
        assert e.data["start_time"].endswith("Z") and type(e.data["deployment_count"]) is int
    for e in by["alert.resolved"]:
        assert {"experiment_id", "severity"} & set(e.tags)
        assert type(e.data["duration_minutes"]) is int
    for name in ALL_EVENTS:
        if name.startswith("experiment."):
            assert all(e.tags == {"experiment_id": e.data["id"]} for e in by[name])


def test_numbers_agree(demo):
    eng = Engine(demo, seed=3, start=START)
    mps_by_agent: dict[str, int] = {}
    for e in eng.advance_to(START + 600):
        if e.name == "agent.heartbeat":
            mps_by_agent[e.data["agent_id"]] = e.data["metrics"]["metrics_per_second"]
        if e.name == "metrics.update":
            g = e.data["global"]
            # Series per point: the agents' own ratios, 0.25 on average (traffic).
            assert 0.15 < g["total_series"] / g["total_mps"] < 0.4
            for m in e.data["experiments"].values():
                assert m["reduction_rate"] == round(1 - m["candidate_mps"] / m["baseline_mps"], 4)
        if e.name == "cost.update":
            d = e.data
            total = sum(i["contribution_usd"] for i in d["active_optimizations"])
            assert d["savings_per_hour"] == round(total, 2)
            assert d["optimized_cost_per_hour"] == round(
                d["baseline_cost_per_hour"] - d["savings_per_hour"], 2
            )
    # total_mps is the sum of the online agents' rates, at the same tick.
    snap = eng.snapshot()
    online = [a for a in snap["agents"] if a["status"] != "offline"]
    assert len(online) == 150  # the three agents that left are back


def test_total_mps_is_sum_of_agents_at_a_metrics_tick(demo):
    eng = Engine(demo, seed=4, start=START)
    eng.advance_to(START + 299)
    update = next(e for e in eng.advance_to(START + 300) if e.name == "metrics.update")
    agents = eng.snapshot()["agents"]
    assert update.data["global"]["total_mps"] == sum(
        a["metrics"]["metrics_per_second"] for a in agents if a["status"] != "offline"
    )


@pytest.mark.parametrize("name", [n for n, _ in bundled_scenarios()])
def test_every_bundled_scenario_runs_ten_minutes(name):
    sc = load_scenario(name)
    eng = Engine(sc, seed=0, start=START)
    seen = 0
    for minute in range(1, 11):  # in chunks, as the server consumes it
        events = eng.advance_to(START + 60 * minute)
        assert all(e.channel in (*CHANNELS, CONTROL) for e in events)
        seen += len(events)
    assert seen
    snap = eng.snapshot()
    json.dumps(snap, allow_nan=False)
    assert set(snap) >= {"experiments", "agents", "deployments", "alerts"}


def test_control_faults_are_scheduled():
    eng = Engine(load_scenario("network-chaos"), seed=0, start=START)
    control = [e for e in eng.advance_to(START + 1200) if e.channel == CONTROL]
    starts = [e.data for e in control if e.name == "fault.start"]
    assert {s["fault"] for s in starts} >= {"latency", "close_connections", "server_restart"}
    latency = next(s for s in starts if s["fault"] == "latency")
    assert latency["duration_seconds"] == 60 and latency["params"]["delay_ms"] == 500
    ends = [e for e in control if e.name == "fault.end" and e.data["id"] == latency["id"]]
    assert ends and ends[0].time == START + 120


def test_inject_is_deterministic_and_validated(demo):
    def run():
        eng = Engine(demo, seed=7, start=START)
        eng.advance_to(START + 200.5)
        eng.inject({"type": "spike", "target": "exp-789", "duration": "1m"})
        eng.inject({"type": "latency", "duration": 10, "params": {"delay_ms": 100}})
        return eng, eng.advance_to(START + 250)

    eng, events = run()
    assert _lines(events) == _lines(run()[1])
    assert any(e.name == "fault.start" and e.time == START + 201 for e in events)
    spikes = [e for e in events if e.name == "metrics.anomaly" and e.data["type"] == "spike"]
    assert spikes and spikes[0].data["experiment_id"] == "exp-789"
    assert [f["type"] for f in eng.active_faults()] == ["agents_leave", "spike", "error_surge"]
    with pytest.raises(ScenarioError, match="type"):
        eng.inject({"type": "meteor"})
    with pytest.raises(ScenarioError, match="target"):
        eng.inject({"type": "spike", "target": "exp-nope", "duration": 5})
    with pytest.raises(ScenarioError, match="at"):
        eng.inject({"type": "spike", "at": "1m", "duration": 5})


def test_set_rate(demo):
    eng = Engine(demo, seed=7, start=START)
    eng.advance_to(START + 30)
    eng.set_rate("agents", 300)
    eng.set_rate("metrics", 0.5)
    events = eng.advance_to(START + 40)
    counts = collections.Counter(e.name for e in events)
    assert counts["agent.heartbeat"] == pytest.approx(3000, rel=0.02)
    # The next update is one new interval after the last one (at 30), then every other tick.
    per_tick = collections.Counter(e.time for e in events if e.name == "metrics.update")
    assert sorted(per_tick) == [START + k for k in (32, 34, 36, 38, 40)]
    assert set(per_tick.values()) == {1}
    with pytest.raises(ScenarioError):
        eng.set_rate("nope", 1)
    with pytest.raises(ScenarioError):
        eng.set_rate("agents", -1)
    with pytest.raises(ScenarioError):
        eng.set_rate("metrics", math.inf)
    with pytest.raises(ScenarioError, match="at most 1/s"):
        eng.set_rate("metrics", 5)
    with pytest.raises(ScenarioError, match="at most 1/s"):
        eng.set_rate("cost-flow", 2)


def test_heartbeats_faster_than_a_tick_spread_over_the_second(demo):
    # 150 agents at 600/s: four beats per agent per tick, at .25, .5, .75 and the tick,
    # in time order; never two of one agent at one instant, never identical events.
    eng = Engine(demo, seed=7, start=START)
    eng.advance_to(START + 30)
    eng.set_rate("agents", 600)
    eng.advance_to(START + 31)
    events = eng.advance_to(START + 33)
    # The whole stream stays in time order: the beats within a second come before the
    # tick's other events, which are dated at its end.
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert len({e.name for e in events}) > 1
    beats = [e for e in events if e.name == "agent.heartbeat"]
    assert len(beats) == 2 * 600
    times = [e.time for e in beats]
    assert times == sorted(times)
    assert {t - START for t in times} == {31.25, 31.5, 31.75, 32, 32.25, 32.5, 32.75, 33}
    pairs = collections.Counter((e.tags["agent_id"], e.time) for e in beats)
    assert max(pairs.values()) == 1
    raws = [e.raw for e in beats]
    assert len(set(raws)) > 0.9 * len(raws)
    from phoenix.protocol import event_frame

    frame = json.loads(event_frame(1, beats[0]))
    assert frame["timestamp"] == "2024-01-20T10:00:31.250Z"
    assert frame["data"] == beats[0].data


def test_snapshot_matches_events(demo):
    eng = Engine(demo, seed=7, start=START)
    eng.advance_to(START + 600)
    snap = eng.snapshot()
    exps = {e["id"]: e for e in snap["experiments"]}
    assert exps["exp-789"]["status"] == "completed" and exps["exp-789"]["winner"] == "candidate"
    assert exps["exp-790"]["status"] == "rolled_back"
    assert {d["status"] for d in snap["deployments"] if d["experiment_id"] == "exp-790"} >= {
        "rolled_back"
    }
    assert all(a["status"] == "resolved" for a in snap["alerts"])
    agent = snap["agents"][0]
    assert set(agent) >= {"agent_id", "hostname", "version", "capabilities", "status", "metrics"}
    assert agent["agent_id"] == "agent-prod-app-001"


def test_set_rate_before_the_first_tick_uses_the_starting_fleet(demo):
    # What `phoenix serve --rate agents=N/s` does: set the rate before anything ran.
    eng = Engine(demo, seed=7, start=START)
    eng.set_rate("agents", 600)
    events = eng.advance_to(START + 20)
    beats = sum(e.name == "agent.heartbeat" for e in events[len(events) // 2 :])
    per_second = sum(e.name == "agent.heartbeat" for e in events if e.time > START + 10) / 10
    assert per_second == pytest.approx(600, rel=0.05)
    assert beats > 0


def _small(experiments: str, faults: str = "", agents: int = 10):
    from simulator.scenario import parse_scenario

    return parse_scenario(
        f"""
name: small
fleet: {{agents: {agents}}}
# No bursts: in ten agents one burst is a real spike, and these tests look at others.
traffic: {{bursts_per_agent_hour: 0}}
pipelines:
  - {{id: base, template: baseline}}
  - {{id: cand, template: adaptive_filter}}
experiments:
{experiments}
faults:
{faults or "  []"}
"""
    )


def test_agents_leaving_and_returning_are_not_anomalies():
    # Every agent in the experiment: nobody can take a leaver's place, so the input
    # drops when one leaves (already-offline agents must not count in the rescale) and
    # rises when it returns (rescaled too).
    sc = _small(
        "  - {id: e1, baseline: base, candidate: cand, duration: 1h, agents: 10,"
        " deployment: {failure_probability: 0}}",
        "  - {at: 300s, type: agents_leave, duration: 5m}\n"
        "  - {at: 330s, type: agents_leave, duration: 5m}",
    )
    events = Engine(sc, seed=0, start=START).advance_to(START + 1200)
    assert sum(e.name == "agent.disconnected" for e in events) == 2
    assert sum(e.name == "agent.connected" and e.time > START for e in events) == 2
    assert [e.data for e in events if e.name == "metrics.anomaly"] == []


def _experiments_on_all_agents():
    return _small(
        "  - {id: e1, baseline: base, candidate: cand, duration: 1h, agents: 10,"
        " deployment: {failure_probability: 0}}\n"
        "  - {id: e2, baseline: base, candidate: cand, duration: 1h, agents: 10,"
        " deployment: {failure_probability: 0}}",
    )


def test_shared_agents_do_not_count_savings_twice():
    events = Engine(_experiments_on_all_agents(), seed=0, start=START).advance_to(START + 300)
    costs = [e.data for e in events if e.name == "cost.update"]
    shared = [d for d in costs if len(d["active_optimizations"]) == 2]
    assert shared
    for d in costs:
        assert 0 <= d["savings_per_hour"] <= d["baseline_cost_per_hour"]
        assert 0 <= d["optimized_cost_per_hour"] <= d["baseline_cost_per_hour"]
    # Two optimizations of about 70 % on the same traffic save about 70 %, not 140 %.
    last = shared[-1]
    assert last["savings_per_hour"] < 0.8 * last["baseline_cost_per_hour"]


def test_candidate_spike_never_makes_savings_negative():
    sc = _small(
        "  - {id: e1, baseline: base, candidate: cand, duration: 1h, agents: 5,"
        " deployment: {failure_probability: 0}}",
        "  - {at: 100s, type: spike, target: e1, duration: 2m, params: {factor: 10}}\n"
        "  - {at: 300s, type: spike, target: e1, duration: 2m,"
        " params: {factor: 1000, variant: baseline}}",
    )
    costs = [
        e.data
        for e in Engine(sc, seed=0, start=START).advance_to(START + 500)
        if e.name == "cost.update"
    ]
    items = [i for d in costs for i in d["active_optimizations"]]
    assert any(i["contribution_usd"] == 0 for i in items)  # the candidate spike
    for d in costs:
        assert all(i["contribution_usd"] >= 0 for i in d["active_optimizations"])
        assert 0 <= d["savings_per_hour"] <= d["baseline_cost_per_hour"]
        assert d["optimized_cost_per_hour"] == round(
            d["baseline_cost_per_hour"] - d["savings_per_hour"], 2
        )


def _status_events(events, eid):
    return [e.data for e in events if e.name.startswith("experiment.") and e.data["id"] == eid]


def test_progress_freezes_when_an_experiment_stops_running():
    sc = _small(
        "  - {id: e1, baseline: base, candidate: cand, duration: 10m, agents: 2,"
        " deployment: {failure_probability: 0}}",
        "  - {at: 100s, type: cancel, target: e1}",
    )
    eng = Engine(sc, seed=0, start=START)
    events = eng.advance_to(START + 100)
    cancelled = _status_events(events, "e1")[-1]
    assert cancelled["status"] == "cancelled" and cancelled["progress"] > 0
    eng.advance_to(START + 500)
    snap = next(x for x in eng.snapshot()["experiments"] if x["id"] == "e1")
    assert snap["progress"] == cancelled["progress"]


def test_progress_freezes_after_a_failure_and_rollback():
    sc = _small(
        "  - {id: e1, baseline: base, candidate: cand, duration: 10m, agents: 2,"
        " abort_after: 10s, deployment: {failure_probability: 0}}",
        "  - {at: 100s, type: error_surge, target: e1, duration: 5m}",
    )
    eng = Engine(sc, seed=0, start=START)
    events = eng.advance_to(START + 300)
    seen = _status_events(events, "e1")
    failed = next(d for d in seen if d["status"] == "failed")
    rolled_back = next(d for d in seen if d["status"] == "rolled_back")
    snap = next(x for x in eng.snapshot()["experiments"] if x["id"] == "e1")
    assert snap["status"] == "rolled_back"
    assert snap["progress"] == rolled_back["progress"] > 0
    assert failed["id"] == "e1"


def test_cancel_before_the_experiment_exists_takes_effect_when_created():
    sc = _small(
        "  - {id: e1, baseline: base, candidate: cand, create_at: 60s, duration: 10m, agents: 2}"
    )
    eng = Engine(sc, seed=0, start=START)
    eng.advance_to(START + 10)
    eng.inject({"type": "cancel", "target": "e1"})
    events = eng.advance_to(START + 120)
    seen = [
        (e.time - START, e.name, e.data["status"]) for e in events if e.channel == "experiments"
    ]
    assert seen == [(60, "experiment.created", "created"), (60, "experiment.updated", "cancelled")]


def test_cancel_while_analyzing():
    sc = _small(
        "  - {id: e1, baseline: base, candidate: cand, duration: 2m, agents: 2,"
        " deployment: {failure_probability: 0}}"
    )
    eng = Engine(sc, seed=0, start=START)
    t = START
    while True:
        t += 1
        events = eng.advance_to(t)
        if any(e.name == "experiment.updated" and e.data["status"] == "analyzing" for e in events):
            break
    eng.inject({"type": "cancel", "target": "e1"})
    events = eng.advance_to(t + 60)
    assert [e.data["status"] for e in events if e.channel == "experiments"] == ["cancelled"]
    snap = next(x for x in eng.snapshot()["experiments"] if x["id"] == "e1")
    assert snap["status"] == "cancelled" and snap["progress"] == 1.0


def test_agents_join_is_capped():
    from simulator.scenario import MAX_AGENTS

    sc = _small("  []", agents=2)
    eng = Engine(sc, seed=0, start=START)
    with pytest.raises(ScenarioError, match="count"):
        eng.inject({"type": "agents_join", "params": {"count": 10**11}})
    eng.inject({"type": "agents_join", "params": {"count": MAX_AGENTS}})
    eng.advance_to(START + 1)
    assert eng.fleet.size == MAX_AGENTS


def test_a_fleet_wide_alert_has_every_field_of_the_reference_with_a_null_experiment(demo):
    events = Engine(demo, seed=7, start=START).advance_to(START + 600)
    fleet = [e for e in events if e.channel == "alerts" and e.data["name"] == "Fleet Capacity Low"]
    assert {e.name for e in fleet} == {"alert.triggered", "alert.resolved"}
    triggered = next(e for e in fleet if e.name == "alert.triggered")
    assert set(triggered.data) >= {
        "alert_id", "name", "severity", "experiment_id", "condition", "current_value"
    }  # fmt: skip
    assert all(e.data["experiment_id"] is None for e in fleet)
    assert "experiment_id" not in triggered.tags  # so a filter on an experiment passes it


def test_a_failed_rollout_blames_the_worst_deployment_first():
    import re

    sc = load_scenario("experiment-failure")
    eng = Engine(sc, seed=sc.seed or 1, start=sc.start or START)
    events = eng.advance_to(eng.now + 1800)
    failed = next(
        e for e in events if e.name == "experiment.failed" and "Deployment" in e.data["error"]
    )
    exp = failed.data["id"]
    done = {
        e.data["variant"] if "variant" in e.data else e.data["deployment_id"]: e.data["failed"]
        for e in events
        if e.name == "deployment.completed" and e.data.get("experiment_id") == exp
    }
    blamed = re.findall(r"(\d+) of \d+ agents failed \((\w+)\)", failed.data["error"])
    assert len(blamed) == len(done) == 2
    counts = [int(n) for n, _ in blamed]
    assert counts == sorted(counts, reverse=True)  # the worst first
    assert counts[0] == max(done.values())


@pytest.mark.parametrize("name", [n for n, _ in bundled_scenarios()])
def test_an_experiment_is_measured_from_the_tick_it_starts(name):
    """Issue 11, item 3: the tick of experiment.started already has its metrics and its
    share of the savings; no update leaves a running experiment out."""
    engine = Engine(load_scenario(name), seed=3, start=START)
    events = engine.advance_to(START + 1800)
    running: set[str] = set()
    checked = 0
    for e in events:
        if e.name == "experiment.started":
            running.add(e.data["id"])
        elif e.name in ("experiment.completed", "experiment.failed") or (
            e.name == "experiment.updated" and e.data["status"] != "running"
        ):
            running.discard(e.data["id"])
        elif e.name == "metrics.update" and running:
            assert running <= set(e.data["experiments"]), (name, e.time)
            checked += 1
    if any(x.name == "experiment.started" for x in events):
        assert checked, f"{name}: no metrics.update while an experiment ran"


def test_savings_do_not_dip_while_an_experiment_is_analyzed(demo):
    """Issue 11, item 2: between `analyzing` and `completed` the candidate still runs;
    the savings go on, they do not fall to zero for those seconds."""
    events = Engine(demo, seed=7, start=START).advance_to(START + 3600)
    analyzing: set[str] = set()
    seen = 0
    for e in events:
        if e.name == "experiment.updated" and e.data["status"] == "analyzing":
            analyzing.add(e.data["id"])
        elif e.name == "experiment.completed":
            analyzing.discard(e.data["id"])
        elif e.name == "cost.update" and analyzing:
            optimized = {o["experiment_id"] for o in e.data["active_optimizations"]}
            assert analyzing <= optimized, e.time
            assert e.data["savings_per_hour"] > 0
            seen += 1
    assert seen, "demo has no cost.update while an experiment is analyzed"


@pytest.mark.parametrize("name", [n for n, _ in bundled_scenarios() if n != "firehose"])
def test_a_scenario_run_again_gives_new_entities_new_ids(name):
    """Issue 11, item 1: a loop (simulation.loop) is one fleet going on. The second run's
    experiments, deployments and alerts have ids never seen before, and an agent that
    stayed online is not announced again."""
    sc = load_scenario(name)
    if sc.duration is None:
        pytest.skip("runs forever: never starts over")
    first = Engine(sc, seed=5, start=START)
    one = first.advance_to(first.end)
    second = Engine(sc, seed=5, start=first.end + 1, after=first.continuation())
    two = second.advance_to(second.end)

    def ids(events, name_prefix, key):
        return {e.data[key] for e in events if e.name.startswith(name_prefix) and key in e.data}

    for prefix, key in (
        ("experiment.", "id"),
        ("deployment.", "deployment_id"),
        ("alert.", "alert_id"),
    ):
        again = ids(one, prefix, key) & ids(two, prefix, key)
        assert not again, f"{name}: {prefix} ids reused: {sorted(again)[:5]}"
    assert ids(two, "experiment.created", "id"), f"{name}: no experiment in the second run"
    online_at_end = set(first.continuation().online)
    hello_again = {e.data["agent_id"] for e in two if e.name == "agent.connected"} & online_at_end
    # An agent online at the end may still leave and come back later in the run.
    left = {e.data["agent_id"] for e in two if e.name == "agent.disconnected"}
    assert not (hello_again - left), f"{name}: online agents announced again"
    # Faults still find their experiments by the scenario's ids.
    failed = [e for e in two if e.name == "experiment.failed"]
    assert bool(failed) == bool([e for e in one if e.name == "experiment.failed"])


def test_a_promoted_candidate_goes_on_saving_across_a_loop():
    """A loop is one fleet going on: exp-789's winning candidate stays deployed, so the
    second run's cost.update starts with its savings (no drop to zero at the loop), and
    exp-789-run2 re-tests the same agents; once it is promoted, exp-789 gives way."""
    sc = load_scenario("demo")
    first = Engine(sc, seed=7, start=START)
    one = first.advance_to(first.end)
    won = next(e.data for e in one if e.name == "experiment.completed")
    assert won["id"] == "exp-789" and won["winner"] == "candidate"
    (promoted,) = first.lab.promotions()
    second = Engine(sc, seed=7, start=first.end + 1, after=first.continuation())
    two = second.advance_to(second.end)
    third = Engine(sc, seed=7, start=second.end + 1, after=second.continuation())
    three = third.advance_to(third.start + 120)

    def costs(events):
        return [e.data for e in events if e.name == "cost.update"]

    last = costs(one)[-1]["savings_per_hour"]
    after_loop = costs(two)
    assert after_loop[0]["savings_per_hour"] == pytest.approx(last, rel=0.15)
    assert min(d["savings_per_hour"] for d in after_loop) > 0.5 * last
    assert [o["experiment_id"] for o in after_loop[0]["active_optimizations"]] == ["exp-789"]
    run2 = next(r for r in second.lab.runs if r.id == "exp-789-run2")
    # The same agents (those its earlier promotion still runs on), topped up to its count.
    assert set(promoted.agents.tolist()) <= set(run2.slots.tolist())
    done = next(e for e in two if e.name == "experiment.completed")
    assert done.data["id"] == "exp-789-run2" and done.data["winner"] == "candidate"
    final = costs(two)[-1]["active_optimizations"]
    assert [o["experiment_id"] for o in final] == ["exp-789-run2"]
    # The third run starts from the second's promotion, not the first's.
    assert [o["experiment_id"] for o in costs(three)[0]["active_optimizations"]] == ["exp-789-run2"]
    assert min(d["savings_per_hour"] for d in costs(three)) > 0.5 * last


def test_a_loop_takes_over_only_the_promotions_that_fit_the_reloaded_scenario():
    """The loop reads the scenario file again, which may have changed in between: a
    promotion goes over by its agents' ids, keeps those the new fleet has, and is
    dropped when its experiment's pipelines are not the same any more."""
    text = (scenarios_dir() / "demo.yaml").read_text()
    first = Engine(parse_scenario(text), seed=7, start=START)
    first.advance_to(first.end)
    after = first.continuation()
    ((_, ids),) = after.promotions
    smaller = parse_scenario(text.replace("agents: 150", "agents: 100"))
    second = Engine(smaller, seed=7, start=first.end + 1, after=after)
    (kept,) = second.lab.standing()
    still = [a for a in ids if int(a.rsplit("-", 1)[1]) <= 100]
    assert 0 < len(still) < len(ids)  # the case is there: some of its agents are gone
    assert [second.fleet.ids[a] for a in kept.agents.tolist()] == still
    costs = [e.data for e in second.advance_to(second.end) if e.name == "cost.update"]
    assert second.now >= second.end  # the whole run, its cost included
    assert costs[0]["active_optimizations"][0]["experiment_id"] == "exp-789"
    changed = parse_scenario(text.replace("reduction: 0.70", "reduction: 0.75"))
    assert Engine(changed, seed=7, start=first.end + 1, after=after).lab.standing() == []


def _loss_scenario(faults: str):
    return _small(
        "  - {id: e1, baseline: base, candidate: cand, duration: 5m, agents: 10,"
        " deployment: {failure_probability: 0}, target_reduction: 0.5}",
        faults,
    )


def test_a_drop_on_the_candidate_is_data_loss_not_reduction():
    """Issue 11, item 9: a sudden_drop on the candidate lost points; it must not make the
    reduction look better, and it counts against the candidate (max_data_loss)."""
    clean = Engine(_loss_scenario(""), seed=2, start=START).advance_to(START + 900)
    lossy = Engine(
        _loss_scenario(
            "  - {at: 2m, type: sudden_drop, target: e1, duration: 40s, params: {factor: 0.3}}"
        ),
        seed=2,
        start=START,
    ).advance_to(START + 900)

    def done(events):
        return next(e.data for e in events if e.name == "experiment.completed")

    a, b = done(clean), done(lossy)
    assert a["winner"] == "candidate" and a["final_metrics"]["data_loss_rate"] == 0.0
    # The same pipeline: the same judged reduction, within the noise of the run.
    assert abs(b["final_metrics"]["total_reduction"] - a["final_metrics"]["total_reduction"]) < 0.01
    assert b["final_metrics"]["data_loss_rate"] > 0.01
    assert b["winner"] == "baseline"


def test_a_lasting_data_loss_fails_the_experiment():
    events = Engine(
        _loss_scenario(
            "  - {at: 90s, type: sudden_drop, target: e1, duration: 3m, params: {factor: 0.2}}"
        ),
        seed=2,
        start=START,
    ).advance_to(START + 900)
    failed = next(e.data for e in events if e.name == "experiment.failed")
    assert failed["error"].startswith("Data loss detected: 80% of the candidate's points lost")


def test_a_drop_on_the_baseline_is_not_held_against_the_candidate():
    events = Engine(
        _loss_scenario(
            "  - {at: 2m, type: sudden_drop, target: e1, duration: 40s,"
            " params: {factor: 0.3, variant: baseline}}"
        ),
        seed=2,
        start=START,
    ).advance_to(START + 900)
    done = next(e.data for e in events if e.name == "experiment.completed")
    assert done["final_metrics"]["data_loss_rate"] == 0.0


def test_an_error_surge_on_the_baseline_is_its_own_and_does_not_fail_the_candidate():
    """Issue 11, item 10: error_surge on one variant. On the baseline it shows in
    baseline_error_rate (and the detector sees it); the experiment, judged on the
    candidate's error rate, runs on."""
    sc = _loss_scenario(
        "  - {at: 4m, type: error_surge, target: e1, duration: 1m,"
        " params: {error_rate: 0.05, variant: baseline}}"
    )
    events = Engine(sc, seed=2, start=START).advance_to(START + 900)
    during = [
        e.data["experiments"]["e1"]
        for e in events
        if e.name == "metrics.update" and START + 250 <= e.time <= START + 290
    ]
    assert during and all(m["baseline_error_rate"] > 0.04 for m in during)
    assert all(m["error_rate"] < 0.001 for m in during)
    assert not [e for e in events if e.name == "experiment.failed"]
    anomalies = [e.data["details"]["metric"] for e in events if e.name == "metrics.anomaly"]
    assert "baseline_error_rate" in anomalies
