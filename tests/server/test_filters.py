"""Filters: a key narrows the events that carry it; metrics.update and cost.update are
narrowed to the filtered experiment."""

from __future__ import annotations

from .conftest import Server, event, recv, send

METRICS = {
    "timestamp": "2024-01-20T10:00:00Z",
    "global": {"total_mps": 1250000, "total_series": 312500, "active_agents": 148},
    "experiments": {
        "exp-1": {
            "baseline_mps": 500000,
            "candidate_mps": 150000,
            "reduction_rate": 0.7,
            "error_rate": 0.0001,
        },
        "exp-2": {
            "baseline_mps": 400000,
            "candidate_mps": 200000,
            "reduction_rate": 0.5,
            "error_rate": 0.0002,
        },
    },
}
COST = {
    "timestamp": "2024-01-20T10:00:00Z",
    "baseline_cost_per_hour": 375.0,
    "optimized_cost_per_hour": 112.5,
    "savings_per_hour": 262.5,
    "active_optimizations": [
        {"experiment_id": "exp-1", "contribution_usd": 125.0},
        {"experiment_id": "exp-2", "contribution_usd": 137.5},
    ],
}


async def test_experiment_filter_narrows_events_that_carry_it(server: Server) -> None:
    ws = await server.connect()
    await send(
        ws,
        type="subscribe",
        channels=["experiments", "deployments", "alerts"],
        filters={"experiment_id": "exp-1"},
    )
    server.publish(
        event("experiment.updated", {"id": "exp-2"}, experiment_id="exp-2"),
        event("experiment.updated", {"id": "exp-1"}, experiment_id="exp-1"),
        event(
            "deployment.progress",
            {"deployment_id": "dep-9", "experiment_id": "exp-2"},
            deployment_id="dep-9",
            experiment_id="exp-2",
        ),
        event(
            "deployment.progress",
            {"deployment_id": "dep-1", "experiment_id": "exp-1"},
            deployment_id="dep-1",
            experiment_id="exp-1",
        ),
        # A global alert carries no experiment_id: it passes.
        event("alert.triggered", {"alert_id": "g1"}, severity="critical"),
        event(
            "alert.resolved", {"alert_id": "a2", "experiment_id": "exp-2"}, experiment_id="exp-2"
        ),
    )
    got = [(await recv(ws))["data"] for _ in range(3)]
    assert got == [
        {"id": "exp-1"},
        {"deployment_id": "dep-1", "experiment_id": "exp-1"},
        {"alert_id": "g1"},
    ]
    assert (await send(ws, type="ping"))["type"] == "pong"  # nothing else was queued
    await ws.close()


async def test_several_filter_keys_must_all_match_where_carried(server: Server) -> None:
    ws = await server.connect()
    await send(
        ws,
        type="subscribe",
        channels=["alerts"],
        filters={"experiment_id": "exp-1", "severity": "critical"},
    )
    server.publish(
        event("alert.triggered", {"n": 1}, experiment_id="exp-1", severity="warning"),
        event("alert.triggered", {"n": 2}, experiment_id="exp-2", severity="critical"),
        event("alert.triggered", {"n": 3}, experiment_id="exp-1", severity="critical"),
        event("alert.triggered", {"n": 4}, severity="critical"),
    )
    assert [(await recv(ws))["data"]["n"] for _ in range(2)] == [3, 4]
    await ws.close()


async def test_metrics_and_cost_updates_are_narrowed_to_the_experiment(server: Server) -> None:
    narrow = await server.connect()
    full = await server.connect()
    await send(
        narrow,
        type="subscribe",
        channels=["metrics", "cost-flow"],
        filters={"experiment_id": "exp-1"},
    )
    await send(full, type="subscribe", channels=["metrics", "cost-flow"])
    server.publish(event("metrics.update", METRICS), event("cost.update", COST))
    m, c = await recv(narrow), await recv(narrow)
    assert m["data"]["global"] == METRICS["global"]
    assert m["data"]["experiments"] == {"exp-1": METRICS["experiments"]["exp-1"]}
    assert c["data"]["active_optimizations"] == [
        {"experiment_id": "exp-1", "contribution_usd": 125.0}
    ]
    assert c["data"]["baseline_cost_per_hour"] == 375.0
    fm, fc = await recv(full), await recv(full)
    assert fm["data"] == METRICS and fc["data"] == COST
    assert fm["id"] == m["id"]  # the same event, narrowed
    await narrow.close()
    await full.close()


async def test_agent_filter_on_agents_channel(server: Server) -> None:
    ws = await server.connect()
    await send(ws, type="subscribe", channels=["agents"], filters={"agent_id": "agent-b"})
    server.publish(
        event("agent.heartbeat", {"agent_id": "agent-a"}, agent_id="agent-a"),
        event("agent.heartbeat", {"agent_id": "agent-b"}, agent_id="agent-b"),
    )
    assert (await recv(ws))["data"]["agent_id"] == "agent-b"
    await ws.close()
