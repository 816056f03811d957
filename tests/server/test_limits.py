"""The reference's three limits, and docs/design.md's rule for clients that keep on flooding."""

from __future__ import annotations

import json

from .conftest import Server, recv, recv_close, send, token


async def test_messages_over_the_rate_get_rate_limited_and_are_not_processed(serve) -> None:
    server: Server = await serve(limits={"messages_per_second": 20, "close_after_rejected": 1000})
    ws = await server.connect()
    for i in range(60):
        await ws.send_str(json.dumps({"type": "ping", "id": f"p{i}"}))
    frames = [await recv(ws) for _ in range(60)]
    pongs = [f for f in frames if f["type"] == "pong"]
    limited = [f for f in frames if f["type"] == "error"]
    assert 20 <= len(pongs) < 30  # the bucket holds a second's worth; a little refills
    assert len(limited) == 60 - len(pongs)
    err = limited[0]
    assert err["error"]["code"] == "RATE_LIMITED"
    assert err["error"]["details"]["limit"] == "messages"
    assert err["error"]["details"]["retry_after_ms"] >= 1
    assert err["id"].startswith("p")  # the rejected message's id is echoed
    await ws.close()


async def test_a_client_that_keeps_flooding_is_closed_4029(serve) -> None:
    server: Server = await serve(limits={"messages_per_second": 10, "close_after_rejected": 30})
    ws = await server.connect()
    for _ in range(100):
        await ws.send_str('{"type":"ping"}')
    assert await recv_close(ws) == 4029
    ws2 = await server.connect()  # others are fine
    assert (await send(ws2, type="ping"))["type"] == "pong"
    await ws2.close()


async def test_channels_per_connection(serve) -> None:
    server: Server = await serve(limits={"channels_per_connection": 2})
    ws = await server.connect()
    assert (await send(ws, type="subscribe", channels=["metrics"]))["status"] == "ok"
    err = await send(ws, type="subscribe", channels=["alerts", "agents"])
    assert err["error"]["code"] == "RATE_LIMITED"
    assert err["error"]["details"]["limit"] == "subscriptions"
    # Atomic: still room for exactly one more, and re-subscribing is not counted twice.
    ok = await send(ws, type="subscribe", channels=["metrics", "alerts"])
    assert ok["subscribed"] == ["metrics", "alerts"]
    await ws.close()


async def test_connections_per_user(serve) -> None:
    server: Server = await serve(limits={"connections_per_user": 3})
    mine = [await server.connect(token("bob")) for _ in range(3)]
    extra = await server.connect(token("bob"))
    err = await recv(extra)
    assert err["error"]["code"] == "RATE_LIMITED"
    assert err["error"]["details"]["limit"] == "connections"
    assert await recv_close(extra) == 4029
    other = await server.connect(token("carol"))
    assert (await send(other, type="ping"))["type"] == "pong"
    await mine[0].close()
    await server.wait_connections(3)  # bob x2 and carol
    again = await server.connect(token("bob"))  # a slot is free again
    assert (await send(again, type="ping"))["type"] == "pong"
    for ws in [*mine[1:], other, again]:
        await ws.close()
