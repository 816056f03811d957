"""Tests written as a user of the simulator writes them: only the public API, that is
`phoenix.testing` and the `phoenix_sim` fixture of the pytest plugin (installed with the
package), and a real WebSocket client."""

from __future__ import annotations

import json

import aiohttp
import pytest

from phoenix.testing import serve


@pytest.mark.phoenix(scenario="demo", seed=7, speed=60)
async def test_my_client_sees_what_the_server_sent(phoenix_sim) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(phoenix_sim.url()) as ws:
        await ws.send_json({"type": "subscribe", "channels": ["agents"]})
        assert json.loads((await ws.receive(timeout=10)).data)["status"] == "ok"
        got = [json.loads((await ws.receive(timeout=10)).data) for _ in range(5)]
    sent = {e["id"]: e for e in phoenix_sim.events_sent(channel="agents")}
    assert all(sent[e["id"]] == e for e in got)


def test_controls_tokens_and_faults_without_a_running_clock() -> None:
    with serve(scenario="demo", seed=7, speed=1) as sim:
        sim.pause()
        sim.step(60)
        assert sim.state()["simulated_time"] == "2024-01-20T10:01:00Z"
        assert len(sim.events_sent(event="agent.connected")) == 150
        sim.inject({"type": "latency", "duration": "30s", "params": {"delay_ms": 5}})
        sim.step(1)
        assert [f["fault"] for f in sim.state()["faults"]] == ["latency"]
        with pytest.raises(ValueError, match="type"):
            sim.inject({"type": "meteor"})
        admin = sim.token(role="admin", channels=["agents"], ttl=60)
        assert admin.count(".") == 2
    # Stopped with the block: the port no longer answers.
    with pytest.raises(OSError):
        import socket

        socket.create_connection(("127.0.0.1", sim.port), timeout=2).close()


async def test_a_fault(phoenix_sim) -> None:
    async with aiohttp.ClientSession() as http, http.ws_connect(phoenix_sim.url()) as ws:
        phoenix_sim.pause()
        phoenix_sim.inject({"type": "close_connections", "params": {"code": 4000}})
        phoenix_sim.step(1)  # my client should now reconnect...
        while (await ws.receive(timeout=10)).type == aiohttp.WSMsgType.TEXT:
            pass
        assert ws.close_code == 4000


def test_serve_takes_the_config_and_its_tokens_follow_it() -> None:
    config = {"auth": {"algorithms": ["HS512"]}, "simulation": {"seed": 3, "speed": 2}}
    with serve(config=config) as sim:
        state = sim.state()
        assert (state["seed"], state["speed"]) == (3, 2.0)
        header = sim.token().split(".")[0]
        import base64

        assert b"HS512" in base64.urlsafe_b64decode(header + "==")
    with serve(config=config, seed=5) as sim:  # an argument wins over the config
        assert sim.state()["seed"] == 5
