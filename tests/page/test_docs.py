"""/docs in a real browser: the AsyncAPI web component renders docs/asyncapi.yaml from this
server alone (every request goes to it; anything else is blocked and fails the test)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import expect

from phoenix import contract
from simulator.events import CHANNELS

MISSING = "node_modules lacks @asyncapi/web-component: run make setup (CI installs it)"


def test_docs_render_the_contract_offline(page: Any, demo_server: Any, tmp_path: Path) -> None:
    if not contract.viewer_installed():
        if os.environ.get("CI") == "true":
            pytest.fail(MISSING, pytrace=False)
        pytest.skip(MISSING)
    ours, elsewhere = [], []

    def only_ours(route: Any) -> None:
        url = route.request.url
        if urlsplit(url).hostname == "127.0.0.1":
            ours.append(urlsplit(url).path)
            route.continue_()
        else:
            elsewhere.append(url)
            route.abort()

    page.route("**/*", only_ours)
    page.set_viewport_size({"width": 1600, "height": 1000})  # wide enough for the sidebar
    page.goto(demo_server.url + "docs")
    # The component renders in its shadow root; Playwright's locators look inside it.
    title = page.get_by_text("Phoenix WebSocket API (Phoenix simulator)").filter(visible=True)
    expect(title.first).to_be_visible()
    for name in ("experiment.created", "alert.resolved", "cost.update", "subscribe", "ping"):
        expect(page.get_by_text(name, exact=True).filter(visible=True).first).to_be_visible()
    for channel in CHANNELS:  # each channel's operation is headed by its address
        expect(page.get_by_text(channel, exact=True).filter(visible=True).first).to_be_visible()
    expect(page.get_by_text("There are errors in your Asyncapi document")).to_have_count(0)
    page.screenshot(path=str(tmp_path / "docs.png"))
    assert not elsewhere, f"/docs asked for something not on this server: {elsewhere}"
    # What rendered is our document, with our copy of the component and its styles.
    assert {
        "/docs",
        "/asyncapi.yaml",
        "/vendor/asyncapi/asyncapi-web-component.js",
        "/vendor/asyncapi-styles/default.min.css",
    } <= set(ours)
