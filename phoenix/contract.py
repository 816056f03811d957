"""The API contract over HTTP: the AsyncAPI document and a rendered view of it.

`GET /asyncapi.yaml` serves docs/asyncapi.yaml as it is in the checkout, so what a client
developer downloads is what the tests validate. `GET /docs` renders it with the AsyncAPI
web component (npm `@asyncapi/web-component`, a standalone bundle with React inside),
served by us from node_modules like the page's uPlot: the view needs no internet.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
from aiohttp import web

from phoenix.views import CSP, VENDOR

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
# The component's bundle, and the styles it was built with: it imports them by URL
# (`cssImportPath`), and without one it asks unpkg.com.
COMPONENT = VENDOR / "@asyncapi" / "web-component" / "lib"
STYLES = VENDOR / "@asyncapi" / "react-component" / "styles"
BUNDLE = "asyncapi-web-component.js"
STYLESHEET = "default.min.css"
NOT_INSTALLED = (
    "The AsyncAPI viewer is not installed (node_modules/@asyncapi/web-component is "
    "missing): run `make setup` (or `npm ci --omit=dev`) and restart the server.\n"
    "The document itself is at /asyncapi.yaml.\n"
)

# The page's policy plus 'unsafe-eval', for /docs only: the component validates the
# document in the browser with ajv, which compiles each JSON Schema with `new Function`
# and renders nothing without it. Everything else stays as strict (scripts from this
# origin only, no inline script, fetches to this origin only), and the page shows our
# own document, never event data.
DOCS_CSP = CSP.replace("script-src 'self';", "script-src 'self' 'unsafe-eval';", 1)


def viewer_installed() -> bool:
    return (COMPONENT / BUNDLE).is_file() and (STYLES / STYLESHEET).is_file()


async def document(request: web.Request) -> web.StreamResponse:
    # A file response: sent without blocking the loop, with ETag and Last-Modified.
    return web.FileResponse(DOCUMENT, headers={"Content-Type": "application/yaml; charset=utf-8"})


async def docs(request: web.Request) -> web.Response:
    if not viewer_installed():
        return web.Response(status=503, text=NOT_INSTALLED)
    context = {
        "bundle": f"/vendor/asyncapi/{BUNDLE}",
        "stylesheet": f"/vendor/asyncapi-styles/{STYLESHEET}",
        "document": "/asyncapi.yaml",
    }
    response = aiohttp_jinja2.render_template("docs.html", request, context)
    # phoenix.headers gives every page the strict policy unless the page has its own.
    response.headers["Content-Security-Policy"] = DOCS_CSP
    return response


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/asyncapi.yaml", document)
    app.router.add_get("/docs", docs)
    # Registered only when installed, as uPlot is; /docs says what to run otherwise.
    if viewer_installed():
        app.router.add_static("/vendor/asyncapi/", COMPONENT, name="asyncapi")
        app.router.add_static("/vendor/asyncapi-styles/", STYLES, name="asyncapi-styles")
