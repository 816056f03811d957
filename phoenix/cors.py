"""Cross-origin access: which web pages on other origins may call the HTTP API and open
/ws, per `server.cors_origins`.

A small middleware rather than aiohttp-cors: the default this project needs is "any
port of localhost and 127.0.0.1" (a Vite or webpack dev server picks its own port), and
aiohttp-cors matches origins exactly or not at all.

- An allowed origin gets `Access-Control-Allow-Origin` (itself, never `*`) on every
  response, and a preflight `OPTIONS` is answered 204 with the methods and headers the
  API takes (`Authorization` for the bearer token). A request from another origin gets
  no CORS headers, so the browser keeps the answer from the page.
- /ws checks `Origin` against the same list: a browser always sends it, so a page from
  elsewhere is refused with 403 before the upgrade. A client that sends no Origin is not
  a browser and passes; a page from the server's own origin always passes.
- Tokens are still needed: admin routes, and `/api/token` keeps its loopback rules.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from phoenix.config import is_loopback
from phoenix.keys import CONFIG

LOOPBACK_DEFAULT = ("http://localhost:*", "http://127.0.0.1:*")
METHODS = "GET, POST, OPTIONS"
HEADERS = "Authorization, Content-Type"
MAX_AGE = "600"  # seconds a browser may keep a preflight's answer


def patterns(host: str, configured: tuple[str, ...] | None) -> tuple[re.Pattern[str], ...]:
    """The allowed origins as patterns: `scheme://host` exactly, with `:*` for any port
    (or none). None means the default: localhost and 127.0.0.1 on any port, only while
    the server is bound to loopback."""
    origins = (
        configured if configured is not None else (LOOPBACK_DEFAULT if is_loopback(host) else ())
    )
    out = []
    for origin in origins:
        if origin == "*":
            out.append(re.compile(r"[a-z][a-z0-9+.-]*://[^/\s]+"))
            continue
        base, any_port = (origin[:-2], True) if origin.endswith(":*") else (origin, False)
        port = r"(?::[0-9]{1,5})?" if any_port else ""
        out.append(re.compile(re.escape(base.lower()) + port))
    return tuple(out)


def allowed(request: web.Request, origin: str) -> bool:
    """Whether a page from `origin` may use this server."""
    if _same_host(request, origin):
        return True
    return any(p.fullmatch(origin.lower()) for p in request.app[ORIGINS])


def _same_host(request: web.Request, origin: str) -> bool:
    """A page of the server's own: the origin's host and port are the Host the request
    was sent to (the scheme is left out: behind a proxy that ends TLS, the page is https
    and the request here http). Only the raw Host header counts, one of it, and only an
    origin-form request target (`/ws`, not `http://other/ws`)."""
    hosts = request.headers.getall(hdrs.HOST, [])
    if len(hosts) != 1 or not request.raw_path.startswith("/"):
        return False
    _, sep, rest = origin.partition("://")
    return bool(sep) and rest.lower() == hosts[0].lower()


@web.middleware
async def cors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return await handler(request)
    ok = request[ALLOWED] = allowed(request, origin)
    if request.path == "/ws" and not ok:
        return web.json_response(
            {"error": f"origin {origin[:100]!r} is not allowed (server.cors_origins)"},
            status=403,
        )
    if request.method == hdrs.METH_OPTIONS and hdrs.ACCESS_CONTROL_REQUEST_METHOD in (
        request.headers
    ):
        if not ok:
            return web.Response(status=403, text="origin not allowed (server.cors_origins)")
        # Allow-Origin and Vary: added by allow_origin, as on every response.
        return web.Response(
            status=204,
            headers={
                hdrs.ACCESS_CONTROL_ALLOW_METHODS: METHODS,
                hdrs.ACCESS_CONTROL_ALLOW_HEADERS: HEADERS,
                hdrs.ACCESS_CONTROL_MAX_AGE: MAX_AGE,
            },
        )
    return await handler(request)


async def allow_origin(request: web.Request, response: web.StreamResponse) -> None:
    """On every response, errors included (a page must be able to read a 401)."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return
    # Whatever the answer, it depends on the Origin: no cache may serve it to another.
    if "Origin" not in response.headers.getall(hdrs.VARY, []):
        response.headers.add(hdrs.VARY, "Origin")
    # As the middleware found; a response made without it asks here.
    ok = request.get(ALLOWED)
    if ok if ok is not None else allowed(request, origin):
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin


ORIGINS = web.AppKey[tuple[re.Pattern[str], ...]]("cors_origins")
ALLOWED = web.RequestKey[bool]("cors_allowed")  # the middleware's answer, for the hook


def setup(app: web.Application) -> None:
    cfg = app[CONFIG].server
    app[ORIGINS] = patterns(cfg.host, cfg.cors_origins)
    app.middlewares.append(cors)
    app.on_response_prepare.append(allow_origin)
