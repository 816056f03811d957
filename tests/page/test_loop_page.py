"""The page across a scenario's loop (issue 11, item 1): the next run's experiments are
new rows beside the finished ones, and the fleet is the same agents, not twice as many."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

SHORT = textwrap.dedent(
    """
    name: short-loop
    duration: 40s
    fleet: {agents: 12}
    intervals: {heartbeat: 5s, metrics: 2s, cost: 2s, progress: 2s}
    pipelines:
      - {id: base, template: baseline}
      - {id: cand, template: topk}
    experiments:
      - {id: exp-loop, baseline: base, candidate: cand, start_at: 1s, duration: 10s,
         agents: 6, deployment: {failure_probability: 0, seconds_per_agent: 1, parallel: 6}}
    """
)


def test_the_second_run_shows_as_new_experiments_on_the_same_fleet(
    page: Any, start_server: Any, tmp_path: Path
) -> None:
    path = tmp_path / "short-loop.yaml"
    path.write_text(SHORT)
    server = start_server(str(path))  # speed 20: a run every 2 s of wall time
    page.goto(server.url)
    expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    first = page.locator("#experiments li[data-experiment-id='exp-loop']")
    again = page.locator("#experiments li[data-experiment-id='exp-loop-run2']")
    expect(first).to_have_count(1)
    expect(again).to_have_count(1, timeout=20_000)
    expect(first.locator(".badge")).to_have_text("completed")
    ids = page.locator("#experiments li[data-experiment-id]").evaluate_all(
        "els => els.map(e => e.dataset.experimentId)"
    )
    assert len(ids) == len(set(ids)), f"one experiment shown twice: {ids}"
    # The same twelve agents, announced once: not 24 after the second run's start.
    expect(page.locator("#fleet-active")).to_have_text("12")
