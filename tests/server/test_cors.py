"""CORS over a real server: which origins may call the API and open /ws, preflights, and
the config that says so (the browser side is tests/page/test_cors.py)."""

from __future__ import annotations

import pytest

from phoenix.config import ConfigError, parse_config

from .conftest import Server, make_config, token

PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


@pytest.mark.parametrize(
    "origin, ok",
    [
        ("http://localhost:5173", True),
        ("http://127.0.0.1:3000", True),
        ("http://localhost", True),
        ("https://localhost:5173", False),
        ("http://127.0.0.2:5173", False),
        ("http://localhost.evil.com:5173", False),
        ("http://evil.com", False),
        ("null", False),
    ],
)
async def test_the_default_allows_local_dev_servers_only(server: Server, origin, ok) -> None:
    pre = await server.client.options("/api/v1/agents", headers={"Origin": origin, **PREFLIGHT})
    assert pre.status == (204 if ok else 403)
    if ok:
        assert pre.headers["Access-Control-Allow-Origin"] == origin
        assert "Authorization" in pre.headers["Access-Control-Allow-Headers"]
    auth = {"Authorization": f"Bearer {token()}", "Origin": origin}
    resp = await server.client.get("/api/v1/agents", headers=auth)
    assert resp.status == 200
    assert resp.headers.get("Access-Control-Allow-Origin") == (origin if ok else None)
    ws = await server.client.get("/ws", headers={"Origin": origin})
    assert (ws.status == 403) == (not ok)


async def test_errors_carry_the_header_too_so_a_page_can_read_them(server: Server) -> None:
    resp = await server.client.get("/api/v1/agents", headers={"Origin": "http://localhost:1"})
    assert resp.status == 401
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:1"


async def test_no_origin_is_not_a_browser_and_passes(server: Server) -> None:
    ws = await server.connect()
    await ws.close()


async def test_configured_origins_replace_the_default(serve) -> None:
    server = await serve(server={"cors_origins": ["https://app.example.com", "http://dev:*"]})
    for origin, ok in [
        ("https://app.example.com", True),
        ("http://dev:8080", True),
        ("http://localhost:5173", False),
        ("https://app.example.com.evil", False),
    ]:
        pre = await server.client.options("/api/sim", headers={"Origin": origin, **PREFLIGHT})
        assert pre.status == (204 if ok else 403), origin


def test_off_loopback_the_default_allows_no_other_origin() -> None:
    from phoenix.cors import patterns

    assert patterns("0.0.0.0", None) == ()
    assert len(patterns("127.0.0.1", None)) == 2
    with pytest.raises(ConfigError, match=r"server.cors_origins\[0\]: expected an origin"):
        parse_config({"server": {"cors_origins": ["localhost:5173/path"]}}, {})
    assert make_config(server={"cors_origins": []}).server.cors_origins == ()


async def test_vary_origin_on_every_answer_to_a_page_and_own_origin_by_host(
    server: Server,
) -> None:
    refused = await server.client.get("/health", headers={"Origin": "http://evil.com"})
    assert "Origin" in refused.headers.getall("Vary")
    assert "Access-Control-Allow-Origin" not in refused.headers
    # The server's own page behind a TLS proxy: https origin, plain http here.
    host = f"{server.client.host}:{server.client.port}"
    own = await server.client.get("/ws", headers={"Origin": f"https://{host}"})
    assert own.status != 403
