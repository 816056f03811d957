"""GET /metrics: the Prometheus text format, parsed with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from .conftest import Server, event, recv, send


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_count_what_happened(serve) -> None:
    server: Server = await serve(limits={"messages_per_second": 2, "close_after_rejected": 100})
    ws = await server.connect()
    await send(ws, type="subscribe", channels=["alerts", "agents"])
    server.publish(
        event("alert.triggered", {"alert_id": "a"}),
        event("agent.heartbeat", {"agent_id": "x"}, agent_id="x"),
    )
    await recv(ws)
    await recv(ws)
    for _ in range(5):
        await ws.send_str('{"type":"ping"}')
    for _ in range(5):
        await recv(ws)
    bad = await server.connect("nonsense")
    await recv(bad)
    resp = await server.client.get("/metrics")
    assert resp.headers["Content-Type"].startswith("text/plain")
    m = samples(await resp.text())
    assert m[("phoenix_connections", ())] >= 1
    assert m[("phoenix_subscriptions", (("channel", "alerts"),))] == 1
    assert m[("phoenix_subscriptions", (("channel", "metrics"),))] == 0
    assert m[("phoenix_events_published_total", (("channel", "alerts"),))] == 1
    assert m[("phoenix_events_delivered_total", (("channel", "agents"),))] == 1
    assert m[("phoenix_rate_limit_hits_total", (("limit", "messages"),))] >= 1
    assert m[("phoenix_auth_failures_total", (("reason", "malformed"),))] == 1
    assert m[("phoenix_bytes_out_total", ())] > 0
    assert ("phoenix_outbound_queue", (("stat", "max"),)) in m
    assert m[("phoenix_sim_lag_seconds", ())] >= 0
    assert ("phoenix_slow_consumer_closes_total", ()) in m
    await ws.close()
