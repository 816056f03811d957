"""The page against a real server: it connects by itself, shows live state, drives the
simulation with an admin token, reconnects, never renders event data as HTML, and fits a
phone and a laptop screen."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

HOSTILE = '<img src=x onerror="window.__xss=1">'
NUMBER = re.compile(r"^\d+$")
STATUS = re.compile(r"^(created|initializing|deploying|running|analyzing|completed)$")


def open_page(page: Any, server: Any) -> None:
    page.goto(server.url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")


def sim_time(page: Any) -> str:
    return page.locator("#sim-time").inner_text()


def test_loads_and_connects(page: Any, server: Any) -> None:
    open_page(page, server)
    expect(page.locator("#conn-text")).to_have_text("Connected")
    expect(page.locator("#conn")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#sim-time")).to_contain_text("2024-01-20")
    expect(page.locator("#fleet-active")).to_have_text(NUMBER)
    expect(page.locator("#log li").first).to_be_visible()


def test_viewer_token_without_pasting(page: Any, server: Any) -> None:
    with page.expect_response(lambda r: r.url.endswith("/api/token")) as token_resp:
        page.goto(server.url)
    resp = token_resp.value
    assert resp.status == 200
    assert resp.json()["role"] == "viewer"
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    assert page.evaluate("sessionStorage.getItem('phoenix.token')") is None
    expect(page.locator("#token-status")).to_contain_text("viewer token from this server")
    # A viewer sees the controls but cannot use them.
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()


def test_shows_a_live_experiment(page: Any, server: Any) -> None:
    open_page(page, server)
    row = page.locator("#experiments li[data-experiment-id='exp-789']")
    expect(row.locator(".exp-name")).to_have_text("Reduce app metrics cardinality")
    expect(row.locator(".badge")).to_have_text(STATUS)
    bar = row.get_by_role("progressbar")
    expect(bar).to_have_attribute("aria-valuenow", NUMBER)
    expect(page.locator("#chart canvas").first).to_be_attached()
    expect(page.locator("#chart-exp")).not_to_have_value("")
    # Live: the progress moves while we watch.
    start = int(bar.get_attribute("aria-valuenow") or "0")
    page.wait_for_function(
        "([sel, v]) => Number(document.querySelector(sel).getAttribute('aria-valuenow')) > v",
        arg=["#experiments li[data-experiment-id='exp-789'] [role=progressbar]", start],
    )


def test_controls_pause_and_resume(page: Any, server: Any) -> None:
    viewer = server.token()
    open_page(page, server)
    expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    page.locator("#token-input").fill(server.token("admin"))
    page.get_by_role("button", name="Use token").click()
    expect(page.get_by_role("button", name="Pause")).to_be_enabled()
    assert page.evaluate("sessionStorage.getItem('phoenix.token')")

    page.get_by_role("button", name="Pause").click()
    expect(page.locator("#sim-mode")).to_have_text("paused")
    assert server.api("/api/sim", viewer)["paused"] is True
    frozen = sim_time(page)
    server_frozen = server.api("/api/sim", viewer)["simulated_time"]
    # At speed 20 a second of wall time is 20 simulated seconds: nothing may move.
    page.wait_for_timeout(1200)
    assert sim_time(page) == frozen
    assert server.api("/api/sim", viewer)["simulated_time"] == server_frozen

    page.get_by_role("button", name="Resume").click()
    expect(page.locator("#sim-mode")).to_have_text("×20")
    assert server.api("/api/sim", viewer)["paused"] is False
    page.wait_for_function("t => document.getElementById('sim-time').textContent !== t", arg=frozen)


def test_channel_switches_and_filter_map_onto_the_protocol(page: Any, server: Any) -> None:
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(json.loads(f))))
    open_page(page, server)
    page.get_by_label("agents", exact=True).uncheck()
    expect(page.locator("#log")).to_contain_text("Unsubscribed: agents")
    assert {"type": "unsubscribe", "channels": ["agents"]}.items() <= sent[-1].items()

    page.locator("#exp-filter").select_option("exp-789")
    expect(page.locator("#conn-text")).to_contain_text("filtered to exp-789")
    subscribe = [m for m in sent if m["type"] == "subscribe"][-1]
    assert subscribe["filters"] == {"experiment_id": "exp-789"}
    assert "agents" not in subscribe["channels"]
    expect(page.locator("#experiments li")).to_have_count(1)

    page.get_by_label("agents", exact=True).check()
    expect(page.locator("#log")).to_contain_text("Subscribed: agents")


def test_reconnects_after_a_server_restart(page: Any, server: Any) -> None:
    open_page(page, server)
    server.stop()
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#conn-text")).to_contain_text("Closed 1001")
    expect(page.get_by_role("button", name="Reconnect now")).to_be_visible()
    server.start()
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=30_000)
    expect(page.locator("#experiments li[data-experiment-id='exp-789']")).to_be_visible()


def test_hostile_event_data_is_shown_as_text(page: Any, start_server: Any, tmp_path: Path) -> None:
    scenario = tmp_path / "hostile.yaml"
    scenario.write_text(
        textwrap.dedent(
            f"""\
            name: hostile
            start: 2024-01-20T10:00:00Z
            fleet: {{agents: 5}}
            pipelines:
              - {{id: base, template: baseline}}
              - {{id: cand, template: topk}}
            experiments:
              - id: exp-x
                name: {json.dumps(HOSTILE)}
                baseline: base
                candidate: cand
                create_at: 1m
                duration: 10m
                agents: 2
            """
        )
    )
    srv = start_server(str(scenario))
    open_page(page, srv)
    # Created a simulated minute in (3 s at speed 20): it arrives as a live event.
    expect(page.locator("#log")).to_contain_text("created: " + HOSTILE)
    expect(page.locator("#experiments .exp-name")).to_have_text(HOSTILE)
    assert page.evaluate("window.__xss") is None
    assert page.locator("img").count() == 0
    options = page.locator("#chart-exp option").all_inner_texts()
    assert any(HOSTILE in text for text in options)


@pytest.mark.parametrize("width", [375, 1280])
def test_no_horizontal_scroll(page: Any, server: Any, width: int, tmp_path: Path) -> None:
    page.set_viewport_size({"width": width, "height": 800})
    open_page(page, server)
    expect(page.locator("#experiments li[data-experiment-id='exp-790']")).to_be_visible()
    expect(page.locator("#chart canvas").first).to_be_attached()
    scroll, client = page.evaluate(
        "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll <= client, f"horizontal scroll at {width}px: {scroll} > {client}"
    page.screenshot(path=str(tmp_path / f"page-{width}.png"), full_page=True)


def test_an_injected_fault_shows_while_it_lasts(page: Any, server: Any) -> None:
    open_page(page, server)
    page.locator("#token-input").fill(server.token("admin"))
    page.get_by_role("button", name="Use token").click()
    page.locator("#fault-type").select_option("latency")
    page.locator("#fault-duration").fill("2m")
    page.get_by_role("button", name="Inject").click()
    faults = page.locator("#sim-faults")
    expect(faults).to_contain_text("latency")
    expect(faults).to_contain_text("delay_ms=200")
    assert [f["fault"] for f in server.api("/api/sim/faults", server.token())["faults"]] == [
        "latency"
    ]


def test_keyboard_alone_can_switch_a_channel(page: Any, server: Any) -> None:
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(json.loads(f))))
    open_page(page, server)
    box = page.get_by_label("deployments", exact=True)
    for _ in range(80):  # Tab through the page until the checkbox has the focus
        page.keyboard.press("Tab")
        if box.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("the deployments switch cannot be reached with Tab")
    page.keyboard.press("Space")
    expect(box).not_to_be_checked()
    expect(page.locator("#log")).to_contain_text("Unsubscribed: deployments")
    assert {"type": "unsubscribe", "channels": ["deployments"]}.items() <= sent[-1].items()
