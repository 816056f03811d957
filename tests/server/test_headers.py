"""Access and headers over real sockets: the page token's strict Host check (exact bytes
on the wire, as a rebinding page or a crafted request would send them), and the security
headers on every kind of response."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from phoenix.views import CSP

from .conftest import TIMEOUT, Server, token


async def raw_http(server: Server, head: str) -> tuple[int, list[tuple[str, str]], bytes]:
    """Send `head` (request line and headers, CRLF-separated, no final blank line) as is,
    with `Connection: close`; return the status, the headers and the body."""
    host, port = server.client.host, server.client.port
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write((head + "\r\nConnection: close\r\n\r\n").encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        await writer.wait_closed()
    top, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = [(k.strip(), v.strip()) for k, _, v in (line.partition(":") for line in lines)]
    return int(status_line.split()[1]), headers, body


async def post_token(server: Server, host: str | list[str] | None, target: str = "/api/token"):
    hosts = [] if host is None else [host] if isinstance(host, str) else host
    head = "\r\n".join(
        [f"POST {target} HTTP/1.1", *(f"Host: {h}" for h in hosts), "Content-Length: 0"]
    )
    return await raw_http(server, head)


def accepted(server: Server) -> list[str]:
    port = server.client.port
    return [
        "localhost",
        f"localhost:{port}",
        "LOCALHOST:8080",
        "LocalHost:65535",
        "127.0.0.1",
        f"127.0.0.1:{port}",
        "127.1.2.3:80",
        "127.255.255.255",
        "[::1]",
        "[::1]:80",
    ]


REFUSED = [
    "evil.com#@127.0.0.1",
    "evil.com\\@127.0.0.1",
    "evil.com",
    "evil.com:80",
    "user@127.0.0.1",
    "user:pass@localhost:8080",
    "127.0.0.1@evil.com",
    "127.0.0.1.evil.com",
    "localhost.evil.com",
    "localhost.",
    "127.0.0.1.",
    "localhost:99999",
    "localhost:65536",
    "localhost:0",
    "localhost:",
    "localhost:80:80",
    "localhost:8o",
    "localhost:８０",  # fullwidth digits
    "localhoſt",  # long s: the same as `s` under Unicode case folding
    "localhost/api",
    "localhost?x",
    "local host",
    "localhost 8080",
    "127.1",
    "127.0.0.01",
    "127.0.0.256",
    "0x7f.0.0.1",
    "2130706433",
    "0.0.0.0",
    "::1",
    "[::1",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "",
]


async def test_page_token_accepts_a_loopback_host(server: Server) -> None:
    for host in accepted(server):
        status, _, body = await post_token(server, host)
        assert status == 200, (host, body)
        assert b'"token"' in body


@pytest.mark.parametrize("host", REFUSED)
async def test_page_token_refuses_any_other_host_header(server: Server, host: str) -> None:
    status, _, body = await post_token(server, host)
    assert status == 403, (host, status, body)
    assert b'"token"' not in body


async def test_page_token_refuses_two_host_headers_or_none(server: Server) -> None:
    for hosts in (["localhost", "localhost"], ["localhost", "evil.com"], ["evil.com", "localhost"]):
        status, _, body = await post_token(server, hosts)
        assert status in (400, 403), (hosts, body)
        assert b'"token"' not in body
    status, _, body = await post_token(server, None)  # HTTP/1.1 requires one
    assert status in (400, 403) and b'"token"' not in body
    # HTTP/1.0 does not, and aiohttp lets it through: refused all the same.
    status, _, body = await raw_http(server, "POST /api/token HTTP/1.0\r\nContent-Length: 0")
    assert status == 403 and b'"token"' not in body


async def test_page_token_refuses_a_request_target_in_absolute_form(server: Server) -> None:
    port = server.client.port
    for host in ("evil.com", f"127.0.0.1:{port}"):
        target = f"http://127.0.0.1:{port}/api/token"
        status, _, body = await post_token(server, host, target)
        assert status in (400, 403), (host, body)
        assert b'"token"' not in body
    status, _, body = await post_token(server, "localhost", "//evil.com/api/token")
    assert status in (400, 403, 404) and b'"token"' not in body
    # The same request in origin form is fine.
    assert (await post_token(server, f"127.0.0.1:{port}"))[0] == 200


async def test_the_page_offers_its_token_only_to_a_loopback_host(server: Server) -> None:
    status, _, body = await raw_http(server, "GET / HTTP/1.1\r\nHost: localhost")
    assert status == 200
    status, _, foreign = await raw_http(server, "GET / HTTP/1.1\r\nHost: evil.com#@127.0.0.1")
    assert status == 200
    assert body != foreign  # the page says whether it may fetch a token


def check(headers: list[tuple[str, str]], what: str) -> None:
    got: dict[str, list[str]] = {}
    for k, v in headers:
        got.setdefault(k.lower(), []).append(v)
    assert got.get("x-content-type-options") == ["nosniff"], what
    assert got.get("referrer-policy") == ["no-referrer"], what
    assert got.get("server") == ["phoenix"], what
    html = any(v.startswith("text/html") for v in got.get("content-type", []))
    assert got.get("content-security-policy") == ([CSP] if html else None), what


async def test_security_headers_on_every_response(server: Server) -> None:
    viewer, admin = token("v"), token("root", role="admin")
    cases = [
        ("GET", "/", None, 200),
        ("HEAD", "/", None, 200),
        ("GET", "/static/app.js", None, 200),
        ("GET", "/static/app.css", None, 200),
        ("GET", "/static/missing.js", None, 404),
        ("GET", "/static/../config.yaml", None, 404),
        ("GET", "/favicon.ico", None, 204),
        ("GET", "/health", None, 200),
        ("GET", "/metrics", None, 200),
        ("POST", "/api/token", None, 200),
        ("GET", "/api/sim", viewer, 200),
        ("GET", "/api/sim", None, 401),
        ("GET", "/api/sim", "nonsense", 401),
        ("POST", "/api/sim", viewer, 403),
        ("POST", "/api/sim", admin, 400),
        ("GET", "/api/v1/experiments", viewer, 200),
        ("GET", "/api/v1/experiments/nope", viewer, 404),
        ("GET", "/nowhere", None, 404),
        ("POST", "/health", None, 405),
        ("DELETE", "/metrics", None, 405),
        ("GET", "/ws", None, 400),  # not an upgrade
    ]
    for method, path, tok, status in cases:
        lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Content-Length: 0"]
        if tok is not None:
            lines.append(f"Authorization: Bearer {tok}")
        got, headers, body = await raw_http(server, "\r\n".join(lines))
        assert got == status, (method, path, got, body[:200])
        check(headers, f"{method} {path}")


async def test_security_headers_on_the_websocket_upgrade(server: Server) -> None:
    for tok in (token(), "nonsense"):  # accepted, and refused after the upgrade
        key = base64.b64encode(os.urandom(16)).decode()
        host, port = server.client.host, server.client.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            (
                f"GET /ws?token={tok} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        writer.close()
        await writer.wait_closed()
        status_line, *lines = head.decode("latin-1").strip().split("\r\n")
        assert status_line.startswith("HTTP/1.1 101"), status_line
        check([(k.strip(), v.strip()) for k, _, v in (x.partition(":") for x in lines)], tok)
        await server.wait_connections(0)
