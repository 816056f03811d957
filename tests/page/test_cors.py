"""Cross-origin use in a real browser: a page served from another local origin (a dev
server on its own port, as Vite's is) loads a snapshot from the HTTP API and subscribes
on /ws; a page from an origin not allowed can do neither (issue 12, item 1)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ..server.procs import free_port
from .conftest import Server

# The snapshot-then-subscribe flow of the README, from another origin. The result goes
# into the title: "ok <experiments count> <subscribed>" or "blocked <fetch> <ws>".
PAGE = """<!doctype html><html><head><title>start</title></head><body><script>
const api = "http://127.0.0.1:%(port)d", token = "%(token)s";
async function run() {
  let fetched = "failed", ws = "failed";
  try {
    const r = await fetch(api + "/api/v1/experiments",
                          {headers: {Authorization: "Bearer " + token}});
    fetched = String((await r.json()).count);
  } catch (e) { fetched = "blocked"; }
  ws = await new Promise((resolve) => {
    const s = new WebSocket("ws://127.0.0.1:%(port)d/ws?token=" + token);
    s.onopen = () => s.send(JSON.stringify({type: "subscribe", channels: ["agents"]}));
    s.onmessage = (m) => { const f = JSON.parse(m.data);
      if (f.type === "response") { resolve(f.subscribed.join(",")); s.close(); } };
    s.onerror = () => resolve("blocked");
  });
  document.title = (fetched === "blocked" && ws === "blocked" ? "blocked " : "ok ")
                   + fetched + " " + ws;
}
run();
</script></body></html>"""


class _Origin:
    """A second web server: one page, on its own host and port."""

    def __init__(self, host: str, html: str) -> None:
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.httpd = http.server.ThreadingHTTPServer((host, self.port), Handler)
        self.url = f"http://{'localhost' if host == '127.0.0.1' else host}:{self.port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def origin(server: Server) -> Iterator[Any]:
    opened: list[_Origin] = []

    def make(host: str) -> _Origin:
        o = _Origin(host, PAGE % {"port": server.port, "token": server.token()})
        opened.append(o)
        return o

    yield make
    for o in opened:
        o.close()


def test_a_page_on_another_local_port_reads_a_snapshot_and_subscribes(page, origin) -> None:
    site = origin("127.0.0.1")  # as http://localhost:<its port>, like a Vite dev server
    page.goto(site.url)
    page.wait_for_function("document.title !== 'start'")
    kind, count, subscribed = page.title().split()
    assert kind == "ok" and int(count) >= 0 and subscribed == "agents"


def test_a_page_from_an_origin_not_allowed_is_refused(page, origin) -> None:
    site = origin("127.0.0.2")  # loopback, but not an allowed origin
    page.goto(site.url)
    page.wait_for_function("document.title !== 'start'")
    assert page.title() == "blocked blocked blocked"
