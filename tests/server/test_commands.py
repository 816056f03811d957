"""subscribe / unsubscribe / ping and every kind of bad client input."""

from __future__ import annotations

import json
import re

import pytest

from .conftest import T0, Server, event, recv, recv_close, send, token

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def test_ping_pong_echoes_id_and_has_a_timestamp(server: Server) -> None:
    ws = await server.connect()
    pong = await send(ws, type="ping", id="abc")
    assert pong == {"type": "pong", "id": "abc", "timestamp": pong["timestamp"]}
    assert RFC3339.match(pong["timestamp"])
    pong = await send(ws, type="ping")
    assert "id" not in pong
    await ws.close()


async def test_subscribe_then_events_arrive_in_the_envelope(server: Server) -> None:
    ws = await server.connect()
    resp = await send(ws, type="subscribe", id="s1", channels=["experiments", "metrics"])
    assert resp["type"] == "response" and resp["status"] == "ok" and resp["id"] == "s1"
    assert resp["subscribed"] == ["experiments", "metrics"]
    server.publish(
        event(
            "experiment.created",
            {"id": "exp-1", "name": "n", "status": "created"},
            experiment_id="exp-1",
        ),
        event("agent.heartbeat", {"agent_id": "agent-a"}, agent_id="agent-a"),
        event("metrics.update", {"timestamp": "x", "global": {}, "experiments": {}}),
    )
    first, second = await recv(ws), await recv(ws)
    assert first["type"] == "event" and first["channel"] == "experiments"
    assert first["event"] == "experiment.created"
    assert first["data"]["id"] == "exp-1"
    assert first["timestamp"] == "2024-01-20T10:00:01Z"
    assert set(first) == {"id", "type", "channel", "event", "data", "timestamp"}
    assert second["event"] == "metrics.update"
    # ids are unique and increasing across channels (the agents event went to nobody).
    n1, n2 = int(first["id"][4:]), int(second["id"][4:])
    assert first["id"].startswith("evt-") and n2 == n1 + 2
    await ws.close()


async def test_unsubscribe_stops_events_and_unknown_subscription_is_not_an_error(
    server: Server,
) -> None:
    ws = await server.connect()
    await send(ws, type="subscribe", channels=["alerts", "agents"])
    resp = await send(ws, type="unsubscribe", id="u", channels=["alerts", "cost-flow"])
    assert resp["unsubscribed"] == ["alerts", "cost-flow"] and resp["id"] == "u"
    server.publish(
        event("alert.triggered", {"alert_id": "a1"}),
        event("agent.connected", {"agent_id": "agent-x"}, agent_id="agent-x"),
    )
    got = await recv(ws)
    assert got["event"] == "agent.connected"
    await ws.close()


async def test_unknown_channel_is_invalid_channel_and_subscribe_is_atomic(server: Server) -> None:
    ws = await server.connect()
    err = await send(ws, type="subscribe", id="x", channels=["metrics", "invalid"])
    assert err["type"] == "error" and err["id"] == "x"
    assert err["error"] == {
        "code": "INVALID_CHANNEL",
        "message": "Channel 'invalid' does not exist",
        "details": {
            "channel": "invalid",
            "valid_channels": [
                "experiments",
                "metrics",
                "agents",
                "deployments",
                "alerts",
                "cost-flow",
            ],
        },
    }
    server.publish(event("metrics.update", {"global": {}, "experiments": {}}))
    # Nothing was subscribed: the next frame is the pong, not the metrics event.
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()


async def test_subscribing_again_replaces_filters(server: Server) -> None:
    ws = await server.connect()
    await send(ws, type="subscribe", channels=["experiments"], filters={"experiment_id": "exp-1"})
    await send(ws, type="subscribe", channels=["experiments"], filters={"experiment_id": "exp-2"})
    server.publish(
        event("experiment.updated", {"id": "exp-1"}, experiment_id="exp-1"),
        event("experiment.updated", {"id": "exp-2"}, experiment_id="exp-2"),
    )
    assert (await recv(ws))["data"]["id"] == "exp-2"
    await ws.close()


BAD_INPUTS = [
    ("{not json", None, "not valid JSON"),
    ("[1,2]", None, "expected a JSON object, got array"),
    ('"ping"', None, "expected a JSON object, got string"),
    ("{}", "type", "required"),
    ('{"type": 5}', "type", "expected a string, got number"),
    ('{"type": "hello"}', "type", "unknown type 'hello'"),
    ('{"type": "ping", "id": 7}', "id", "expected a string, got number"),
    ('{"type": "ping", "id": "' + "x" * 129 + '"}', "id", "longer than 128 characters"),
    ('{"type": "subscribe"}', "channels", "required"),
    ('{"type": "subscribe", "channels": "metrics"}', "channels", "expected a list of strings"),
    ('{"type": "subscribe", "channels": []}', "channels", "must not be empty"),
    ('{"type": "subscribe", "channels": ["metrics", 3]}', "channels[1]", "expected a string"),
    (
        '{"type": "subscribe", "channels": ["metrics"], "filters": []}',
        "filters",
        "expected an object",
    ),
    (
        '{"type": "subscribe", "channels": ["metrics"], "filters": {"color": "red"}}',
        "filters.color",
        "unknown filter key",
    ),
    (
        '{"type": "subscribe", "channels": ["metrics"], "filters": {"agent_id": 1}}',
        "filters.agent_id",
        "expected a string",
    ),
    ('{"type": "subscribe", "channels": ["metrics"], "filter": {}}', "filter", "unknown field"),
    ('{"type": "unsubscribe", "channels": ["metrics"], "filters": {}}', "filters", "unknown field"),
    (
        '{"type": "subscribe", "channels": ["metrics"], "since": {"metrics": "42"}}',
        "since.metrics",
        "expected an event id",
    ),
]


@pytest.mark.parametrize(("text", "field", "problem"), BAD_INPUTS)
async def test_bad_input_gets_invalid_message_naming_the_field(
    server: Server, text: str, field: str | None, problem: str
) -> None:
    ws = await server.connect()
    await ws.send_str(text)
    err = await recv(ws)
    assert err["type"] == "error"
    assert err["error"]["code"] == "INVALID_MESSAGE"
    assert err["error"]["details"].get("field") == field
    assert problem in err["error"]["details"]["problem"]
    # The connection stays open and still works.
    assert (await send(ws, type="ping", id="after"))["id"] == "after"
    await ws.close()


async def test_error_echoes_the_id_of_the_bad_message(server: Server) -> None:
    ws = await server.connect()
    err = await send(ws, type="subscribe", id="m-9", channels=[])
    assert err["id"] == "m-9"
    await ws.close()


async def test_binary_frame_is_invalid_message(server: Server) -> None:
    ws = await server.connect()
    await ws.send_bytes(b'{"type":"ping"}')
    err = await recv(ws)
    assert err["error"]["code"] == "INVALID_MESSAGE"
    assert "binary" in err["error"]["details"]["problem"]
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()


async def test_frame_over_the_size_limit_closes_1009(serve) -> None:
    server = await serve(limits={"max_message_bytes": 1024})
    ws = await server.connect()
    await ws.send_str(json.dumps({"type": "ping", "id": "x" * 2000}))
    assert await recv_close(ws) == 1009
    # The server is fine: a new connection works.
    ws2 = await server.connect()
    assert (await send(ws2, type="ping"))["type"] == "pong"
    await ws2.close()


async def test_hostile_inputs_do_not_hurt_other_connections(server: Server) -> None:
    good = await server.connect()
    await send(good, type="subscribe", channels=["alerts"])
    bad = await server.connect(token(sub="mallory"))
    hostile = [
        "\x00",
        "[" * 30000 + "]" * 30000,  # nesting deep enough to exhaust a recursive parser
        '{"type":"subscribe","channels":[null]}',
        "9" * 5000,
        '{"type":"ping","id":{"a":1}}',
        '{"type":"subscribe","channels":["metrics"],"filters":{"experiment_id":null}}',
    ]
    for text in hostile:
        await bad.send_str(text)
    for _ in range(6):
        err = await recv(bad)
        assert err["error"]["code"] == "INVALID_MESSAGE"
    server.publish(event("alert.triggered", {"alert_id": "a1"}, t=T0 + 5))
    assert (await recv(good))["data"]["alert_id"] == "a1"
    await good.close()
    await bad.close()


async def test_client_close_is_clean(server: Server) -> None:
    ws = await server.connect()
    await ws.close()
    assert ws.closed
    resp = await server.client.get("/health")
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["connections"] == 0
