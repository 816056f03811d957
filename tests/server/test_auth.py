"""Authentication of /ws: every kind of bad token, expiry while connected, channel claims."""

from __future__ import annotations

import asyncio
import time

import jwt
import pytest

from .conftest import SECRET, Server, recv, recv_close, send, token


async def refused(server: Server, tok: str | None) -> dict:
    ws = await server.connect(tok)
    frame = await recv(ws)
    code = await recv_close(ws)
    assert code == 4001
    assert frame["type"] == "error"
    assert frame["error"]["code"] == "UNAUTHORIZED"
    return frame["error"]


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: None, "missing"),
        (lambda: "", "missing"),
        (lambda: "not-a-jwt", "malformed"),
        (lambda: "a.b.c", "malformed"),
        (lambda: jwt.encode({"sub": "a", "exp": time.time() + 60}, "x" * 40), "invalid_signature"),
        (lambda: token(ttl=-10), "expired"),
        (
            lambda: jwt.encode({"sub": "a", "exp": time.time() + 60}, None, algorithm="none"),
            "algorithm_not_allowed",
        ),
        (
            lambda: jwt.encode({"sub": "a", "exp": time.time() + 60}, SECRET, algorithm="HS512"),
            "algorithm_not_allowed",
        ),
        (lambda: jwt.encode({"exp": time.time() + 60}, SECRET), "invalid_claims"),
        (lambda: jwt.encode({"sub": "a"}, SECRET), "invalid_claims"),
        (
            lambda: jwt.encode({"sub": "a", "exp": time.time() + 60, "role": "root"}, SECRET),
            "invalid_claims",
        ),
        (
            lambda: jwt.encode({"sub": "a", "exp": time.time() + 60, "channels": ["nope"]}, SECRET),
            "invalid_claims",
        ),
    ],
)
async def test_bad_tokens_get_one_error_frame_then_4001(server: Server, make, reason) -> None:
    tok = make()
    ws = await server.client.ws_connect("/ws" if tok is None else f"/ws?token={tok}")
    frame = await recv(ws)
    assert await recv_close(ws) == 4001
    assert frame["error"]["code"] == "UNAUTHORIZED"
    assert frame["error"]["details"]["reason"] == reason
    assert frame["error"]["message"]


async def test_valid_token_connects_and_pings(server: Server) -> None:
    ws = await server.connect(token())
    pong = await send(ws, type="ping", id="p1")
    assert pong["type"] == "pong" and pong["id"] == "p1"
    await ws.close()


async def test_token_that_expires_while_connected_is_closed_4001(server: Server) -> None:
    ws = await server.connect(token(ttl=1.5))
    assert (await send(ws, type="ping"))["type"] == "pong"
    frame = await recv(ws, timeout=5)
    assert frame["error"]["code"] == "UNAUTHORIZED"
    assert frame["error"]["details"]["reason"] == "expired"
    assert await recv_close(ws) == 4001


async def test_channels_claim_restricts_subscriptions(server: Server) -> None:
    ws = await server.connect(token(channels=["metrics"]))
    err = await send(ws, type="subscribe", id="s1", channels=["metrics", "experiments"])
    assert err["type"] == "error" and err["id"] == "s1"
    assert err["error"]["code"] == "UNAUTHORIZED"
    assert err["error"]["details"]["reason"] == "forbidden_channel"
    assert err["error"]["details"]["channel"] == "experiments"
    # The connection stays open and nothing was subscribed (atomic).
    ok = await send(ws, type="subscribe", channels=["metrics"])
    assert ok["subscribed"] == ["metrics"]
    await ws.close()


async def test_auth_failures_are_counted_by_reason(server: Server) -> None:
    await refused(server, "garbage")
    await refused(server, token(ttl=-1))
    resp = await server.client.get("/metrics")
    text = await resp.text()
    assert 'phoenix_auth_failures_total{reason="malformed"} 1.0' in text
    assert 'phoenix_auth_failures_total{reason="expired"} 1.0' in text
    await asyncio.sleep(0)
