"""Security headers on every response: pages, static files, the JSON API, errors
(401/403/404/405...), /metrics, /health and the /ws upgrade.

An `on_response_prepare` signal, not a middleware: it also sees the responses aiohttp
makes itself (the router's 404 and 405, static files) just before their headers are
sent. Only a request aiohttp cannot parse at all gets its 400 without them (but with
`Server: phoenix`, see `setup`).
"""

from __future__ import annotations

from aiohttp import hdrs, web, web_response

from phoenix.views import CSP

SERVER = "phoenix"  # no name or version of the stack underneath


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    headers = response.headers
    headers[hdrs.SERVER] = SERVER
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"
    if response.content_type == "text/html":
        # A page that set its own keeps it (/docs: phoenix.contract.DOCS_CSP).
        headers.setdefault("Content-Security-Policy", CSP)


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(security_headers)
    # The one response the hook never sees is the 400 aiohttp writes for a request it
    # cannot parse; its Server header comes from this module constant (the default for
    # every server response; the client's User-Agent has its own), so set it here too.
    if hasattr(web_response, "SERVER_SOFTWARE"):
        web_response.SERVER_SOFTWARE = SERVER
