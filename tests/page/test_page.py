"""The page against a real server: it connects by itself, shows live state, drives the
simulation with an admin token, reconnects, never renders event data as HTML, and fits a
phone and a laptop screen."""

from __future__ import annotations

import json
import re
import textwrap
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from .conftest import phoenix_token

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
    # The speed box shows the speed in force (the server runs at 20), not a default.
    expect(page.locator("#speed-input")).to_have_value("20")
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


def inject_from_the_form(
    page: Any, server: Any, fault: str, duration: str, target: str | None = None
) -> None:
    """As an admin would: the page open, an admin token in, the fault form sent."""
    open_page(page, server)
    page.locator("#token-input").fill(server.token("admin"))
    page.get_by_role("button", name="Use token").click()
    page.locator("#fault-type").select_option(fault)
    if target is not None:
        page.locator("#fault-target").fill(target)
    page.locator("#fault-duration").fill(duration)
    page.get_by_role("button", name="Inject").click()


def test_an_injected_fault_shows_while_it_lasts(page: Any, server: Any) -> None:
    inject_from_the_form(page, server, "latency", "2m")
    faults = page.locator("#sim-faults")
    expect(faults).to_contain_text("latency")
    expect(faults).to_contain_text("delay_ms=200")
    assert [f["fault"] for f in server.api("/api/sim/faults", server.token())["faults"]] == [
        "latency"
    ]


def test_a_fault_on_a_list_of_agents_from_the_form(page: Any, server: Any) -> None:
    inject_from_the_form(page, server, "spike", "5m", "agent-prod-app-001, agent-prod-app-007")
    expect(page.locator("#control-status")).to_contain_text(
        "Fault injected: spike on agent-prod-app-001, agent-prod-app-007."
    )
    # The simulation takes it at its next tick; the list shows it with its agents.
    expect(page.locator("#sim-faults")).to_contain_text(
        "spike on agent-prod-app-001, agent-prod-app-007", timeout=15_000
    )
    (spike,) = [
        f for f in server.api("/api/sim", server.token())["faults"] if f["fault"] == "spike"
    ]
    assert spike["target"] == ["agent-prod-app-001", "agent-prod-app-007"]


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


# --- helpers for the fixes below ---------------------------------------------------------


def relay(page: Any, on_server: Callable[[str, int], str | None] | None = None) -> list[Any]:
    """Route the page's /ws through Playwright: frames from the server pass through
    `on_server(frame, connection number)` (None drops it); returns the routes, in order."""
    routes: list[Any] = []

    def handler(ws: Any) -> None:
        server = ws.connect_to_server()
        routes.append(ws)
        n = len(routes)

        def from_server(message: str | bytes) -> None:
            out = on_server(str(message), n) if on_server else message
            if out is not None:
                ws.send(out)

        server.on_message(from_server)
        ws.on_message(lambda message: server.send(message))

    page.route_web_socket(re.compile(r"/ws"), handler)
    return routes


def sent_frames(page: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append(json.loads(f))))
    return sent


def paste(page: Any, token: str) -> None:
    page.locator("#token-input").fill(token)
    page.get_by_role("button", name="Use token").click()


def test_a_token_limited_to_some_channels_connects(page: Any, server: Any) -> None:
    open_page(page, server)
    with page.expect_websocket() as ws_info:
        paste(page, phoenix_token("--channels", "experiments,metrics"))
    assert "token=" in ws_info.value.url
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#experiments li[data-experiment-id='exp-789']")).to_be_visible()
    for ch in ("agents", "deployments", "alerts", "cost-flow"):
        expect(page.get_by_label(ch, exact=True)).to_be_disabled()
        expect(page.get_by_label(ch, exact=True)).not_to_be_checked()
    expect(page.get_by_label("experiments", exact=True)).to_be_checked()
    page.wait_for_timeout(1500)
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#log")).not_to_contain_text("Loading the state failed")
    # Forgetting it moves the socket back to the page's own token: all channels again.
    page.get_by_role("button", name="Forget token").click()
    expect(page.get_by_label("agents", exact=True)).to_be_enabled()
    expect(page.get_by_label("agents", exact=True)).to_be_checked()


def test_experiment_filter_drops_other_experiments_snapshot_items(page: Any, server: Any) -> None:
    def deployments(route: Any) -> None:
        resp = route.fetch()
        body = resp.json()
        extra = {"status": "deploying", "variant": "candidate", "agent_count": 2}
        body["deployments"] += [
            dict(extra, deployment_id="dep-other", experiment_id="exp-other"),
            dict(extra, deployment_id="dep-mine", experiment_id="exp-789"),
            dict(extra, deployment_id="dep-global"),
        ]
        route.fulfill(response=resp, json=body)

    page.route("**/api/v1/deployments", deployments)
    open_page(page, server)
    expect(page.locator("#deployments")).to_contain_text("dep-other")
    page.locator("#exp-filter").select_option("exp-789")
    expect(page.locator("#conn-text")).to_contain_text("filtered to exp-789")
    expect(page.locator("#deployments")).to_contain_text("dep-mine")
    expect(page.locator("#deployments")).to_contain_text("dep-global")
    expect(page.locator("#deployments")).not_to_contain_text("dep-other")


def test_not_recovered_reloads_the_state(page: Any, server: Any) -> None:
    sent = sent_frames(page)
    flipped: list[bool] = []

    def on_server(frame: str, n: int) -> str:
        msg = json.loads(frame)
        if msg.get("type") == "response" and "subscribed" in msg and not flipped:
            flipped.append(True)
            msg["recovered"] = False
            return json.dumps(msg)
        return frame

    relay(page, on_server)
    open_page(page, server)
    expect(page.locator("#log")).to_contain_text("reloading the state")
    assert len([m for m in sent if m["type"] == "subscribe"]) >= 2
    assert any(m["type"] == "unsubscribe" for m in sent)


def test_a_pasted_token_refused_as_expired_falls_back(page: Any, server: Any) -> None:
    admin = server.token("admin")
    open_page(page, server)
    paste(page, admin)
    expect(page.get_by_role("button", name="Pause")).to_be_enabled()
    urls: list[str] = []
    page.on("websocket", lambda ws: urls.append(ws.url))
    server.api("/api/sim/faults", admin, {"type": "token_expiry_storm", "duration": "1m"})
    try:
        expect(page.locator("#token-status")).to_contain_text("paste a new one")
        expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        page.wait_for_timeout(6000)  # the storm is over: still not back on the refused token
        assert urls and all(admin not in url for url in urls)
        expect(page.get_by_role("button", name="Pause")).to_be_disabled()
    finally:
        # The fixture's cached tokens predate the storm: make sure it is over for the next test.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                server.api("/api/sim", admin)
                break
            except urllib.error.HTTPError:
                # A finished run never reaches the storm's end: restart it (fresh token).
                body = {"action": "restart", "scenario": server.scenario, "seed": 7}
                server.api("/api/sim", phoenix_token("--role", "admin"), body)
                time.sleep(0.5)


def test_the_page_token_is_renewed_before_it_expires(page: Any, server: Any) -> None:
    def short(route: Any) -> None:
        resp = route.fetch()
        route.fulfill(response=resp, json=dict(resp.json(), expires_in=61))

    page.route("**/api/token", short)
    open_page(page, server)
    with page.expect_websocket(timeout=5000):
        pass  # renewed a second after it came, with a new socket
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    expect(page.locator("#log")).to_contain_text("Renewed the page's viewer token")
    expect(page.locator("#log li.err")).to_have_count(0)


def test_a_dead_connection_is_noticed(page: Any, server: Any) -> None:
    page.add_init_script("window.__phoenixTest = {pingMs: 500, requestTimeoutMs: 1000}")
    relay(page, lambda frame, n: None if n == 1 and '"pong"' in frame else frame)
    open_page(page, server)
    expect(page.locator("#log")).to_contain_text("No answer to a ping")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")


def test_a_slow_consumer_close_skips_the_replay_once(page: Any, server: Any) -> None:
    sent = sent_frames(page)
    routes = relay(page)
    open_page(page, server)
    routes[0].close(code=1013, reason="slow consumer")
    expect(page.locator("#log")).to_contain_text("continuing from now")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=30_000)
    page.locator("#exp-filter").select_option("exp-789")
    expect(page.locator("#conn-text")).to_contain_text("filtered to exp-789")
    subscribe = [m for m in sent if m["type"] == "subscribe"][-1]
    assert subscribe["filters"] == {"experiment_id": "exp-789"}
    assert "since" in subscribe


def test_two_slow_consumer_closes_drop_the_agents_channel(page: Any, server: Any) -> None:
    routes = relay(page)
    open_page(page, server)
    routes[0].close(code=1013, reason="slow consumer")
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected", timeout=30_000)
    expect(page.get_by_label("agents", exact=True)).to_be_checked()
    routes[-1].close(code=1013, reason="slow consumer")
    expect(page.get_by_label("agents", exact=True)).not_to_be_checked()
    expect(page.locator("#log")).to_contain_text("stopped the agents channel")


def test_a_late_deployment_started_keeps_the_progress(page: Any, server: Any) -> None:
    routes = relay(page)
    open_page(page, server)
    base = {"type": "event", "channel": "deployments", "timestamp": "2024-01-20T10:00:30Z"}
    data = {"deployment_id": "dep-late", "experiment_id": "exp-789", "pipeline_id": "p"}
    progress = dict(data, completed=3, failed=0, total=5)
    started = dict(data, variant="candidate", agent_count=5)
    routes[0].send(
        json.dumps(dict(base, id="evt-900000", event="deployment.progress", data=progress))
    )
    routes[0].send(
        json.dumps(dict(base, id="evt-900001", event="deployment.started", data=started))
    )
    expect(page.locator("#deployments")).to_contain_text("dep-late")
    page.wait_for_timeout(600)
    expect(page.locator("#deployments")).to_contain_text("3/5 agents")


def test_a_1012_close_is_named(page: Any, server: Any) -> None:
    routes = relay(page)
    open_page(page, server)
    routes[0].close(code=1012, reason="")
    expect(page.locator("#log")).to_contain_text("Closed 1012 (server restarting)")


def test_the_faults_live_region_is_not_rebuilt_at_every_poll(page: Any, server: Any) -> None:
    open_page(page, server)
    admin = server.token("admin")
    server.api("/api/sim/faults", admin, {"type": "latency", "duration": "5m"})
    item = page.locator("#sim-faults li", has_text="latency")
    expect(item).to_be_visible()
    # Paused, the list does not change (the scenario's own faults start and end too):
    # the polls that follow must leave it as it is.
    server.api("/api/sim", admin, {"action": "pause"})
    page.wait_for_timeout(3500)  # one poll to take the paused list in
    handle = item.element_handle()
    page.wait_for_timeout(7000)  # two polls
    assert handle.evaluate("el => el.isConnected")


def contrast(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    def lum(c: tuple[int, ...]) -> float:
        ch = [x / 255 for x in c[:3]]
        ch = [x / 12.92 if x <= 0.03928 else ((x + 0.055) / 1.055) ** 2.4 for x in ch]
        return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2]

    hi, lo = sorted([lum(a), lum(b)], reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_focus_is_visible_and_the_log_is_keyboard_scrollable(page: Any, server: Any) -> None:
    open_page(page, server)
    log = page.locator("#log")
    expect(log).to_have_attribute("tabindex", "0")
    expect(log).to_have_attribute("aria-label", re.compile(r"\w"))
    button = page.get_by_role("button", name="Clear log")
    button.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # keyboard focus: :focus-visible applies
    color = button.evaluate("el => getComputedStyle(el).outlineColor")
    rgb = tuple(int(x) for x in re.findall(r"\d+", color)[:3])
    assert contrast(rgb, (255, 255, 255)) >= 3, color
    log.focus()
    assert log.evaluate("el => el === document.activeElement")
