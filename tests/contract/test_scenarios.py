"""Every event of every bundled scenario matches its schema in docs/asyncapi.yaml: the
wire bytes `phoenix simulate` and `phoenix serve` send, run headless through the engine."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import pytest

from phoenix.protocol import event_frame
from phoenix.sources import scenario_source
from simulator import CONTROL, bundled_scenarios

from .validate import event_schemas, frame_problem

START = "2024-01-20T10:00:00Z"
MINUTES = 30  # simulated, at most; a scenario that ends sooner is run whole
# At most this many events a scenario (whole ticks): about 3 s of validation, so the
# firehose is checked on its first minute (5,000 agents joining, then beating) and the
# others run their 30 minutes or to their end.
BUDGET = 30_000


def frames(scenario: str) -> Iterator[bytes]:
    """The scenario's events as wire frames, numbered as `phoenix simulate` numbers them."""
    engine, _ = scenario_source(scenario, 7, START)
    end = engine.now + MINUTES * 60
    if engine.end is not None:
        end = min(end, engine.end)
    seq = 0
    while engine.now < end and seq < BUDGET:
        for event in engine.advance_to(min(end, engine.now + 10)):
            if event.channel != CONTROL:
                seq += 1
                yield event_frame(seq, event)


@pytest.mark.parametrize("scenario", [name for name, _ in bundled_scenarios()])
def test_every_event_matches_the_document(scenario: str) -> None:
    seen: Counter[str] = Counter()
    bad: list[str] = []
    for raw in frames(scenario):
        frame = json.loads(raw)
        seen[frame["event"]] += 1
        found = frame_problem(frame, events=True)
        if found is not None and len(bad) < 5:
            bad.append(f"{found}\n    frame: {raw.decode()[:1000]}")
    assert not bad, f"{scenario}: frames that do not match docs/asyncapi.yaml:\n" + "\n".join(bad)
    assert sum(seen.values()) > 1000, f"{scenario}: too few events to say much ({seen})"


def test_the_demo_sends_every_documented_event_and_no_other() -> None:
    # The demo shows all sixteen (README: within ten simulated minutes): so the document
    # lists no event the server never sends, and the server sends none it does not list.
    seen = {json.loads(raw)["event"] for raw in frames("demo")}
    assert seen == set(event_schemas())
