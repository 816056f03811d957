"""A hostile-input suite: a few hundred generated malformed frames and bodies, each
answered as documented, with no traceback in the log, while a well-behaved client beside
them loses nothing (issue 8)."""

from __future__ import annotations

import json
import logging
import random
from typing import Any

import aiohttp
import pytest

from .conftest import T0, Server, recv, send, token
from .test_faults import beat

ADMIN = {"Authorization": f"Bearer {token('root', role='admin')}"}
SEED = 8
NASTY_STRINGS = [
    "\ud800",
    "\udfff",
    "a\ud83d",
    "x" * 129,
    "x" * 5000,
    "",
    "evt-²",
    "evt-１",
    "<script>alert(1)</script>",
    "\x00",
    "☃",
    "𝕏",
    "agents\n",
    "AGENTS",
]
NASTY_VALUES: list[Any] = [
    None,
    True,
    0,
    -1,
    10**400,
    1e308,
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {"c": {}}}},
    *NASTY_STRINGS,
]


def _mutant(rng: random.Random) -> Any:
    """A command with one or two things wrong (a valid one is never produced)."""
    kind = rng.choice(["subscribe", "unsubscribe", "ping", "bogus", None])
    obj: dict[str, Any] = {} if kind is None else {"type": kind}
    if kind in ("subscribe", "unsubscribe"):
        obj["channels"] = rng.choice(
            [
                rng.choice(NASTY_VALUES),
                [rng.choice(NASTY_VALUES)],
                ["agents", rng.choice(NASTY_STRINGS)],
            ]
        )
    if rng.random() < 0.5:
        obj["id"] = rng.choice(NASTY_VALUES + ["fine-id"])
    extra = rng.choice(["filters", "since", "channel", "filter", "data", rng.choice(NASTY_STRINGS)])
    obj[extra] = rng.choice(NASTY_VALUES)
    if kind == "subscribe" and extra == "filters":
        obj["filters"] = {rng.choice(["agent_id", "bogus", "\ud800"]): rng.choice(NASTY_VALUES)}
    if kind == "subscribe" and extra == "since":
        obj["since"] = {"agents": rng.choice(NASTY_STRINGS + [None, 5])}
        obj["channels"] = ["agents"]
    return obj


def frames(rng: random.Random, n: int) -> list[tuple[str, Any]]:
    """(kind, payload): 'text' with a str, or 'binary' with bytes."""
    out: list[tuple[str, Any]] = []
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            text = "".join(rng.choice('{}[]":,tnf0123 \\u') for _ in range(rng.randint(0, 40)))
            out.append(("text", text))
        elif r < 0.2:
            out.append(("binary", bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))))
        elif r < 0.3:
            out.append(("text", json.dumps(rng.choice(NASTY_VALUES))))
        elif r < 0.35:
            depth = rng.choice([100, 5000, 30000])
            out.append(("text", "[" * depth + "]" * depth))
        else:
            out.append(("text", json.dumps(_mutant(rng))))
    return out


def expected_id(kind: str, payload: Any) -> str | None:
    """The documented rule: the id is echoed when the frame is JSON whose id is a string
    of at most 128 characters, and every string in it can be encoded."""
    if kind != "text":
        return None
    try:
        obj = json.loads(payload)
        payload.encode("utf-8")
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except (ValueError, RecursionError):
        return None
    if isinstance(obj, dict) and isinstance(obj.get("id"), str) and len(obj["id"]) <= 128:
        return obj["id"]
    return None


async def test_hundreds_of_malformed_frames_are_each_answered_as_documented(serve, caplog) -> None:
    server: Server = await serve(limits={"messages_per_second": 100_000})
    good = await server.connect(token("good"))
    assert (await send(good, type="subscribe", channels=["agents"]))["status"] == "ok"
    bad = await server.connect(token("bad"))
    rng = random.Random(SEED)
    sent = frames(rng, 400)
    beats = 0
    for i, (kind, payload) in enumerate(sent):
        if kind == "binary":
            await bad.send_bytes(payload)
        else:
            await bad.send_str(payload)
        reply = await recv(bad)
        assert reply["type"] == "error", (payload, reply)
        assert reply["error"]["code"] in ("INVALID_MESSAGE", "INVALID_CHANNEL"), reply
        details = reply["error"]["details"]
        assert "problem" in details or "valid_channels" in details
        assert reply.get("id") == expected_id(kind, payload), (payload, reply)
        if i % 20 == 0:
            server.publish(beat(beats, T0 + 1 + beats))
            beats += 1
    # The well-behaved client got every event, in order; the hostile one is still open.
    assert [(await recv(good))["data"]["n"] for _ in range(beats)] == list(range(beats))
    assert (await send(bad, type="ping", id="still"))["id"] == "still"
    await good.close()
    await bad.close()
    errors = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def bodies(rng: random.Random, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.2:
            out.append(bytes(rng.randrange(256) for _ in range(rng.randint(0, 64))))
        elif r < 0.3:
            depth = rng.choice([1000, 100_000])
            out.append(b"[" * depth + b"]" * depth)
        elif r < 0.5:
            out.append(json.dumps(rng.choice(NASTY_VALUES)).encode())
        else:
            body: dict[str, Any] = {}
            if rng.random() < 0.5:
                body["action"] = rng.choice(["step", "speed", "restart", "pause!", None, 5])
                key = rng.choice(["seconds", "speed", "seed", "start", "scenario"])
                body[key] = rng.choice(NASTY_VALUES)
            else:
                body["type"] = rng.choice(["burst", "latency", "pause_delivery", "nope", None])
                body["params"] = {
                    rng.choice(["count", "delay_ms", "share", "x"]): rng.choice(NASTY_VALUES)
                }
                body["duration"] = rng.choice(NASTY_VALUES + ["99999999999999999999d", "2h"])
            out.append(json.dumps(body).encode())
    return out


@pytest.mark.parametrize("path", ["/api/sim", "/api/sim/faults"])
async def test_hundreds_of_malformed_bodies_are_each_a_400(server: Server, caplog, path) -> None:
    rng = random.Random(f"{SEED}:{path}")
    statuses = []
    for body in bodies(rng, 150):
        resp = await server.client.post(path, data=body, headers=ADMIN)
        text = await resp.text()
        statuses.append(resp.status)
        if resp.status != 400:
            # Only a body that happens to be valid may pass; it must then be one.
            assert resp.status in (200, 202), (body[:200], resp.status, text[:200])
            continue
        assert "error" in json.loads(text)
    assert statuses.count(400) >= 120
    resp = await server.client.get("/api/sim", headers=ADMIN)
    assert resp.status == 200
    errors = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
    ws = await server.connect()
    assert (await send(ws, type="ping"))["type"] == "pong"
    await ws.close()


async def test_garbage_in_the_token_never_drops_the_upgrade(server: Server, caplog) -> None:
    rng = random.Random(SEED)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_.=%"
    for _ in range(100):
        tok = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300)))
        async with server.client.session.ws_connect(
            server.client.make_url(f"/ws?token={tok}")
        ) as ws:
            reply = await recv(ws)
            assert reply["error"]["code"] == "UNAUTHORIZED"
            msg = await ws.receive(timeout=5)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == 4001
    errors = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
