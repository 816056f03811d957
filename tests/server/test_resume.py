"""Resume after reconnect: `since` replays every missed event that matches, in order, or
nothing with `recovered: false` when the history no longer reaches back."""

from __future__ import annotations

from phoenix.keys import HUB

from .conftest import T0, Server, event, recv, send


def exp(n: int, exp_id: str = "exp-1", t: float = T0 + 1):
    return event("experiment.updated", {"id": exp_id, "n": n}, t=t, experiment_id=exp_id)


async def test_resume_replays_missed_events_in_order_then_goes_live(server: Server) -> None:
    ws = await server.connect()
    await send(ws, type="subscribe", channels=["experiments", "alerts"])
    server.publish(exp(0))
    last = (await recv(ws))["id"]
    await ws.close()
    # Missed while away: two experiment events, one alert, and a metrics event (not asked).
    server.publish(
        exp(1, t=T0 + 2),
        event("alert.triggered", {"alert_id": "a1"}, t=T0 + 2),
        event("metrics.update", {"global": {}, "experiments": {}}, t=T0 + 3),
        exp(2, t=T0 + 3),
    )
    ws = await server.connect()
    resp = await send(
        ws,
        type="subscribe",
        id="r",
        channels=["experiments", "alerts"],
        since={"experiments": last, "alerts": last},
    )
    assert resp["recovered"] is True and resp["id"] == "r"
    replayed = [await recv(ws) for _ in range(3)]
    assert [f["event"] for f in replayed] == [
        "experiment.updated",
        "alert.triggered",
        "experiment.updated",
    ]
    ids = [int(f["id"][4:]) for f in replayed]
    assert ids == sorted(ids) and ids[0] > int(last[4:])
    server.publish(exp(3, t=T0 + 4))
    assert (await recv(ws))["data"]["n"] == 3  # then live
    await ws.close()


async def test_resume_applies_the_filters(server: Server) -> None:
    server.publish(exp(0))
    since = f"evt-{server.app[HUB].last_seq}"
    server.publish(exp(1, "exp-2", T0 + 2), exp(2, "exp-1", T0 + 2))
    ws = await server.connect()
    resp = await send(
        ws,
        type="subscribe",
        channels=["experiments"],
        filters={"experiment_id": "exp-1"},
        since={"experiments": since},
    )
    assert resp["recovered"] is True
    assert (await recv(ws))["data"]["n"] == 2
    assert (await send(ws, type="ping"))["type"] == "pong"  # nothing else replayed
    await ws.close()


async def test_history_too_short_means_not_recovered_and_nothing_replayed(serve) -> None:
    server: Server = await serve(history={"max_events": 3})
    server.publish(exp(0))
    server.publish(*[exp(i, t=T0 + 2) for i in range(1, 6)])
    ws = await server.connect()
    resp = await send(
        ws, type="subscribe", channels=["experiments"], since={"experiments": "evt-1"}
    )
    assert resp["recovered"] is False
    assert (await send(ws, type="ping"))["type"] == "pong"  # never a partial replay
    # Still subscribed: live events flow.
    server.publish(exp(9, t=T0 + 3))
    assert (await recv(ws))["data"]["n"] == 9
    await ws.close()


async def test_an_id_from_another_run_is_not_recovered(server: Server) -> None:
    server.publish(exp(0))
    ws = await server.connect()
    resp = await send(
        ws, type="subscribe", channels=["experiments"], since={"experiments": "evt-999999"}
    )
    assert resp["recovered"] is False
    metrics = await (await server.client.get("/metrics")).text()
    assert 'phoenix_resumes_total{recovered="false"} 1.0' in metrics
    await ws.close()


async def test_since_must_name_a_channel_of_the_subscribe(server: Server) -> None:
    ws = await server.connect()
    err = await send(ws, type="subscribe", channels=["experiments"], since={"alerts": "evt-1"})
    assert err["error"]["code"] == "INVALID_MESSAGE"
    assert err["error"]["details"]["field"] == "since.alerts"
    await ws.close()


async def test_a_replay_longer_than_the_outbound_queue_is_not_an_eviction(serve) -> None:
    server: Server = await serve(limits={"outbound_queue": 20})
    server.publish(exp(0))
    server.publish(*[exp(i, t=T0 + 2) for i in range(1, 101)])  # 100 missed events
    ws = await server.connect()
    resp = await send(
        ws, type="subscribe", channels=["experiments"], since={"experiments": "evt-1"}
    )
    assert resp["recovered"] is True
    server.publish(exp(101, t=T0 + 3))  # a live event right behind the replay
    got = [(await recv(ws))["data"]["n"] for _ in range(101)]
    assert got == list(range(1, 102))
    await ws.close()
