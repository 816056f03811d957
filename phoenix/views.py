"""Plain HTTP views: the page, its static files, health, metrics and the page's token."""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp_jinja2
from aiohttp import hdrs, web

from phoenix.auth import issue
from phoenix.config import is_loopback
from phoenix.keys import CONFIG, CONNECTIONS, FEED, LINK, METRICS, STARTED
from phoenix.metrics import CONTENT_TYPE

ROOT = Path(__file__).resolve().parent.parent
VENDOR = ROOT / "node_modules"


# The page has no inline script and loads nothing from elsewhere: say so to the
# browser, so that even a bug that let event data into the DOM as HTML could not run it.
# (phoenix.headers sends it with every HTML response.)
CSP = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)


async def index(request: web.Request) -> web.Response:
    cfg = request.app[CONFIG]
    context = {
        "page_token": page_token_available(request),
        "scenario": request.app[FEED].info.name,
        "host": cfg.server.host,
    }
    return aiohttp_jinja2.render_template("index.html", request, context)


async def favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


# A loopback name or address, with an optional port, and nothing else: no userinfo, no
# trailing dot, no other IPv6 spelling. ASCII only: with Unicode case folding `ſ` would
# match `s`, and [0-9], not \d, which matches every script's digits.
_LOOPBACK_HOST = re.compile(
    r"(?:localhost|127(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}|\[::1\])"
    r"(?::([0-9]{1,5}))?",
    re.ASCII | re.IGNORECASE,
)


def loopback_host(values: list[str]) -> bool:
    """The request's Host headers (raw) are exactly one, naming a loopback host."""
    if len(values) != 1:
        return False
    match = _LOOPBACK_HOST.fullmatch(values[0])
    return match is not None and (match[1] is None or 0 < int(match[1]) < 65536)


def page_token_available(request: web.Request) -> bool:
    """The page may fetch a viewer token only when the server is bound to loopback, the
    request came from loopback, and it names a loopback host (a page on another site
    that rebinds its DNS name to 127.0.0.1 sends its own name as Host). The Host header
    is read raw and strictly (a URL parser finds a loopback host in `evil.com#@127.0.0.1`),
    and a request target in absolute form (`POST http://127.0.0.1/api/token`), whose
    host aiohttp prefers to the Host header, is refused."""
    cfg = request.app[CONFIG]
    target = request.raw_path
    return (
        is_loopback(cfg.server.host)
        and is_loopback(request.remote or "")
        and target.startswith("/")
        and not target.startswith("//")
        and loopback_host(request.headers.getall(hdrs.HOST, []))
    )


async def page_token(request: web.Request) -> web.Response:
    if not page_token_available(request):
        return web.json_response(
            {"error": "page tokens are only issued on loopback; paste a token instead"},
            status=403,
        )
    cfg = request.app[CONFIG]
    ttl = cfg.auth.page_token_ttl
    token = issue(cfg.auth.jwt_secret, "page-viewer", time.time(), ttl, role="viewer")
    return web.json_response({"token": token, "expires_in": ttl, "role": "viewer"})


async def health(request: web.Request) -> web.Response:
    app = request.app
    body = {
        "status": "ok",
        "connections": app[CONNECTIONS].count(),
        "uptime_seconds": round(time.time() - app[STARTED], 3),
        "simulation": app[FEED].state(),
    }
    link = app.get(LINK)
    if link is not None:
        # A gateway: the broker or the engine away is a state (it keeps its clients and
        # catches up when they are back), said here with a 200 so a load balancer that
        # only wants "is the process alive" keeps it; `status` says it is degraded.
        body["broker"] = link.health()
        if not (link.feed.broker_up and link.feed.engine_up):
            body["status"] = "degraded"
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    body = request.app[METRICS].render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


def setup_routes(app: web.Application, static: Path) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/favicon.ico", favicon)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/api/token", page_token)
    app.router.add_static("/static/", static, name="static")
    # The charting library, installed by `make` from the npm registry (package-lock.json),
    # served by us so the page works with no internet.
    uplot = VENDOR / "uplot" / "dist"
    if uplot.is_dir():
        app.router.add_static("/vendor/uplot/", uplot, name="uplot")
