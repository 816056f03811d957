"""The server's log under attack, for real: a `phoenix serve` subprocess, raw sockets.

Out of file descriptors, asyncio reports every failed accept() (a traceback each, by the
thousand a second); a client's unparsable request made aiohttp log a traceback quoting
the request, token included. Now: one line a second per kind, a count, and no request
text (phoenix/logs.py).
"""

from __future__ import annotations

import asyncio
import re
import resource
import socket
import time
import urllib.request

from .procs import ServerProcess

START = "2024-01-20T10:00:00Z"
NOFILE = 64  # the server's open-file limit in the accept test: it starts with about 8


def _low_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


def _raw(port: int, data: bytes) -> bytes:
    """Send bytes on a fresh connection; the start of the answer (aiohttp's 400)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        return s.recv(4096)


def _get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.read().decode()


def _health_after(base: str, timeout: float = 30) -> int:
    """/health, retried: right after the attack the listen backlog still holds the
    attackers' dead connections, which the server accepts and drops first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return _get(base + "/health")[0]
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _attack(port: int, count: int = 300, hold: float = 3.0) -> float:
    """Open up to `count` connections to the server (non-blocking: one whose SYN waits in
    a full backlog does not hold the test up), keep them `hold` seconds, close them all.
    Returns how long the server was under attack."""
    socks = []
    began = time.monotonic()
    try:
        for _ in range(count):
            s = socket.socket()
            s.setblocking(False)
            socks.append(s)
            s.connect_ex(("127.0.0.1", port))
        time.sleep(hold)
    finally:
        for s in socks:
            s.close()
    return time.monotonic() - began


def _metric(text: str, name: str) -> float:
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(m.group(1)) if m else 0.0


async def test_out_of_files_costs_one_line_a_second_and_is_counted() -> None:
    srv = ServerProcess("--start", START, preexec_fn=_low_nofile)
    try:
        await asyncio.to_thread(srv.wait_ready)
        attacked = await asyncio.to_thread(_attack, srv.port)
        began = time.monotonic()
        # The attackers gone, the server serves again.
        assert await asyncio.to_thread(_health_after, srv.base) == 200
        recovered = time.monotonic() - began
        status, metrics = await asyncio.to_thread(_get, srv.base + "/metrics")
        assert status == 200
        failed = _metric(metrics, 'phoenix_loop_errors_total{kind="accept"}')
        assert failed > 0
    finally:
        out = srv.stop()
    assert "Traceback" not in out and "socket.accept() out of system resource" not in out
    lines = [line for line in out.splitlines() if "phoenix.loop" in line]
    assert (
        "cannot accept connections: Too many open files (the open-file limit is 64)" in (lines[0])
    )
    # One line a second, whatever the number of failures (thousands here): the first,
    # then a count per second while it lasts (and one at shutdown).
    assert len(lines) <= attacked + recovered + 3, lines
    counted = sum(int(m.group(1)) for m in map(re.compile(r"(\d+) more").search, lines) if m)
    assert counted > 0  # the log says how many it held back
    assert len(out) < 20_000


async def test_a_request_line_over_8k_never_shows_its_query() -> None:
    srv = ServerProcess("--start", START)
    try:
        await asyncio.to_thread(srv.wait_ready)
        token = b"SECRET" * 1500  # 9000 bytes: over aiohttp's 8190 for a request line
        answer = await asyncio.to_thread(
            _raw, srv.port, b"GET /ws?token=" + token + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.0 400")
        # A bad character in the URL: aiohttp's message quotes the whole request line.
        answer = await asyncio.to_thread(
            _raw, srv.port, b"GET /w\x01s?token=SECRET HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        assert answer.startswith(b"HTTP/1.0 400")
        assert await asyncio.to_thread(_health_after, srv.base) == 200
    finally:
        out = srv.stop()
    assert "SECRET" not in out and "token=" not in out
    assert "Traceback" not in out
    assert "bad HTTP request from 127.0.0.1: LineTooLong" in out
    assert "bad HTTP request from 127.0.0.1: InvalidURLError" in out


async def test_a_malformed_request_is_one_line_and_a_flood_of_them_a_few() -> None:
    srv = ServerProcess("--start", START)
    dup_host = b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
    try:
        await asyncio.to_thread(srv.wait_ready)
        answer = await asyncio.to_thread(_raw, srv.port, dup_host)
        assert answer.startswith(b"HTTP/1.0 400")
        assert b"\r\nServer: phoenix\r\n" in answer  # no stack or version, here too
        began = time.monotonic()
        for _ in range(200):
            await asyncio.to_thread(_raw, srv.port, dup_host)
        flood = time.monotonic() - began
        assert await asyncio.to_thread(_health_after, srv.base) == 200
    finally:
        out = srv.stop()
    assert "Traceback" not in out and "Duplicate" not in out
    lines = [line for line in out.splitlines() if "aiohttp.server" in line]
    assert "bad HTTP request from 127.0.0.1: BadHttpMessage" in lines[0]
    # The first in a line of its own, the rest counted (a line a second, one at the end).
    assert len(lines) <= flood + 3, lines
    counted = sum(int(m.group(1)) for m in map(re.compile(r"(\d+) more bad").search, lines) if m)
    shown = sum("bad HTTP request from" in line for line in lines)
    assert counted + shown == 201
    # Nor does the access log write a line for each of them.
    assert sum("aiohttp.access" in line and '" 400 ' in line for line in out.splitlines()) == 0


def test_json_lines_blank_queries_and_stay_json() -> None:
    import json
    import logging

    from phoenix.logs import JsonFormatter

    record = logging.LogRecord(
        "phoenix", logging.WARNING, __file__, 1, 'bad "GET /ws?token=abc" x', None, None
    )
    line = JsonFormatter().format(record)
    entry = json.loads(line)
    assert "abc" not in line and "[query removed]" in entry["message"]
    assert entry["time"].endswith("Z") and entry["level"] == "WARNING"
    forged = logging.LogRecord(
        "phoenix", logging.INFO, __file__, 1, '?a=b", "level": "CRITICAL', None, None
    )
    assert json.loads(JsonFormatter().format(forged))["level"] == "INFO"
