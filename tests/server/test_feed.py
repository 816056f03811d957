"""The feed's pacing: simulated time runs at `speed` times a clock, stops when paused, and
a source that cannot keep up is reported, not hidden."""

from __future__ import annotations

import logging

from phoenix.feed import Feed, SourceInfo
from phoenix.hub import Hub

from .conftest import T0, ListSource, event


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class SlowSource(ListSource):
    """Every call to advance_to costs `cost` seconds of the (fake) wall clock."""

    def __init__(self, clock: Clock, cost: float) -> None:
        super().__init__()
        self.clock, self.cost = clock, cost

    def advance_to(self, t: float):
        self.clock.t += self.cost
        return super().advance_to(t)


async def test_time_runs_at_speed_and_stops_when_paused() -> None:
    clock = Clock()
    feed = Feed(Hub(), ListSource(), SourceInfo("scenario", "x", 0), speed=60, clock=clock)
    clock.t += 2
    assert feed.now() == T0 + 120
    feed.pause()
    clock.t += 5
    assert feed.now() == T0 + 120
    feed.resume()
    feed.set_speed(1)
    clock.t += 3
    assert feed.now() == T0 + 123


async def test_a_source_that_cannot_keep_up_is_logged_and_measured(caplog) -> None:
    clock = Clock()
    source = SlowSource(clock, cost=0.5)
    source.push(event("agent.heartbeat", {"agent_id": "a"}, t=T0 + 5, agent_id="a"))
    feed = Feed(Hub(), source, SourceInfo("scenario", "x", 0), speed=10, lag_warning=2, clock=clock)
    clock.t += 10  # 100 simulated seconds are due
    with caplog.at_level(logging.WARNING, "phoenix.feed"):
        await feed._catch_up()
    assert source.now >= T0 + 100  # it did catch up to where it was asked...
    assert feed.lag > 2  # ...but fell behind the clock meanwhile, and says so
    assert "behind the wall clock" in caplog.text
    assert feed.state()["lag_seconds"] == round(feed.lag, 3)
    assert feed.seq == 1


async def test_a_fast_source_has_no_lag(caplog) -> None:
    clock = Clock()
    feed = Feed(Hub(), ListSource(), SourceInfo("scenario", "x", 0), speed=10, clock=clock)
    clock.t += 10
    with caplog.at_level(logging.WARNING, "phoenix.feed"):
        await feed._catch_up()
    assert feed.lag == 0 and "behind" not in caplog.text


async def test_a_finished_scenario_starts_over_with_time_moving_on(
    aiohttp_client, tmp_path
) -> None:
    from phoenix.app import create_app
    from phoenix.keys import FEED
    from phoenix.sources import scenario_source

    from .conftest import make_config, recv, send, token

    short = tmp_path / "short.yaml"
    short.write_text("name: short\nduration: 20s\nfleet: {agents: 3}\nintervals: {heartbeat: 5s}\n")
    source, info = scenario_source(str(short), 1, "2024-01-20T10:00:00Z")
    app = create_app(make_config(simulation={"speed": 100}), source, info)
    app[FEED].pause()
    client = await aiohttp_client(app)
    ws = await client.ws_connect(f"/ws?token={token()}")
    await send(ws, type="subscribe", channels=["agents"])
    app[FEED].resume()
    frames = []
    while not frames or frames[-1]["timestamp"] < "2024-01-20T10:00:50Z":
        frames.append(await recv(ws))
    stamps = [f["timestamp"] for f in frames]
    assert stamps == sorted(stamps)  # time never goes back
    # Ticks 0..20 are the first run; the second run's ticks are 21..41.
    first = [f["event"] for f in frames if f["timestamp"] <= "2024-01-20T10:00:20Z"]
    again = [f["event"] for f in frames if "10:00:21Z" <= f["timestamp"][11:] <= "10:00:41Z"]
    assert first[0] == "agent.connected"
    # The same story again, as one fleet going on: the agents, still online, are not
    # announced a second time (issue 11, item 1).
    assert again == [e for e in first if e != "agent.connected"]
    state = app[FEED].state()
    assert state["scenario"] == "short" and not state["finished"]
    await ws.close()


async def test_a_pause_while_a_finished_run_loads_again_still_holds() -> None:
    # The next run of a looping scenario loads in a thread; an admin's pause that lands
    # meanwhile must not be undone when it is put in place. And a run that failed to
    # load again does not stop a later one from looping.
    import asyncio
    import threading

    loading, release = threading.Event(), threading.Event()
    calls = []

    def reload(info: SourceInfo, start: float, ended: object):
        calls.append(start)
        loading.set()
        release.wait(10)
        if len(calls) == 1:
            nxt = ListSource(start)
            nxt.end = start + 1.0
            return nxt, SourceInfo("scenario", "x", 0, "x")
        raise RuntimeError("the file is gone")

    first = ListSource()
    first.end = T0  # finished from the start
    feed = Feed(Hub(), first, SourceInfo("scenario", "x", 0, "x"), reload=reload)
    task = asyncio.get_running_loop().create_task(feed.run())
    try:
        assert await asyncio.to_thread(loading.wait, 10)
        feed.pause()
        release.set()
        for _ in range(200):
            if feed.source is not first:
                break
            await asyncio.sleep(0.01)
        assert feed.source is not first  # the new run is in place...
        assert feed.paused  # ...and still paused
        # The second run ends; it cannot be loaded again: said, and the run stays.
        feed.set_speed(20)
        feed.resume()
        for _ in range(300):
            if feed.error:
                break
            await asyncio.sleep(0.01)
        assert len(calls) == 2 and feed.error and "the file is gone" in feed.error
        await asyncio.sleep(0.1)
        assert len(calls) == 2  # tried once, not again and again
    finally:
        task.cancel()
