"""The contract over HTTP: GET /asyncapi.yaml is the document, GET /docs renders it from
our own copy of the AsyncAPI web component, or says how to install it."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml
from aiohttp.test_utils import TestClient

from phoenix import contract
from phoenix.app import create_app
from phoenix.config import parse_config
from phoenix.sources import scenario_source
from phoenix.views import CSP

from .validate import DOCUMENT

SECRET = "contract-test-secret-long-enough-for-every-hmac-algorithm-0123456789"
MISSING = "node_modules lacks @asyncapi/web-component: run make setup (CI installs it)"

Client = Callable[..., Awaitable[TestClient]]


async def start(aiohttp_client: Client) -> TestClient:
    cfg = parse_config({"auth": {"jwt_secret": SECRET}, "websocket": {"heartbeat": 0}}, {})
    return await aiohttp_client(create_app(cfg, *scenario_source("demo", 7)))


def needs_viewer() -> None:
    if not contract.viewer_installed():
        if os.environ.get("CI") == "true":
            pytest.fail(MISSING, pytrace=False)
        pytest.skip(MISSING)


async def test_the_document_is_served_as_it_is(aiohttp_client: Client) -> None:
    client = await start(aiohttp_client)
    resp = await client.get("/asyncapi.yaml")
    assert resp.status == 200
    assert resp.content_type == "application/yaml"
    body = await resp.read()
    assert body == DOCUMENT.read_bytes()
    assert yaml.safe_load(body)["asyncapi"] == "3.0.0"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"  # phoenix.headers saw it


def directives(policy: str) -> dict[str, str]:
    return dict(d.strip().split(" ", 1) for d in policy.split(";") if d.strip())


async def test_docs_loads_the_component_from_this_server(aiohttp_client: Client) -> None:
    needs_viewer()
    client = await start(aiohttp_client)
    resp = await client.get("/docs")
    assert resp.status == 200 and resp.content_type == "text/html"
    html = await resp.text()
    assert 'schemaUrl="/asyncapi.yaml"' in html
    assert 'cssImportPath="/vendor/asyncapi-styles/default.min.css"' in html
    assert '<script src="/vendor/asyncapi/asyncapi-web-component.js">' in html
    assert "http" not in html  # nothing from elsewhere
    # The page's policy, with 'unsafe-eval' for scripts and nothing else loosened.
    got, page = directives(resp.headers["Content-Security-Policy"]), directives(CSP)
    assert got["script-src"] == page["script-src"] + " 'unsafe-eval'"
    assert {k: v for k, v in got.items() if k != "script-src"} == {
        k: v for k, v in page.items() if k != "script-src"
    }
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    for asset in (
        "/vendor/asyncapi/asyncapi-web-component.js",
        "/vendor/asyncapi-styles/default.min.css",
    ):
        got_asset = await client.get(asset)
        assert got_asset.status == 200, asset
        assert "Content-Security-Policy" not in got_asset.headers  # only HTML gets one
    # The page's own policy is untouched by the /docs one.
    assert (await client.get("/")).headers["Content-Security-Policy"] == CSP


async def test_docs_without_the_component_says_what_to_run(
    aiohttp_client: Client, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(contract, "COMPONENT", tmp_path / "not-installed")
    client = await start(aiohttp_client)
    resp = await client.get("/docs")
    assert resp.status == 503
    assert "make setup" in await resp.text()
    assert (await client.get("/vendor/asyncapi/asyncapi-web-component.js")).status == 404
    assert (await client.get("/asyncapi.yaml")).status == 200  # the document needs nothing
