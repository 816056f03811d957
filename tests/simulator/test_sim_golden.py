"""Golden stream: the demo, seed 7, first ten simulated minutes, byte for byte.

Regenerate after an intended change with UPDATE_GOLDEN=1 and review the diff.
"""

import json
import os
from pathlib import Path

from simulator import Engine, load_scenario
from simulator.clock import parse_rfc3339

GOLDEN = Path(__file__).parent / "golden" / "demo-seed7-10m.jsonl"


def _stream() -> str:
    start = parse_rfc3339("2024-01-20T10:00:00Z")
    events = Engine(load_scenario("demo"), seed=7, start=start).advance_to(start + 600)
    return "".join(
        json.dumps(
            {"time": e.time, "channel": e.channel, "event": e.name, "data": e.data, "tags": e.tags},
            sort_keys=False,
            separators=(",", ":"),
        )
        + "\n"
        for e in events
    )


def test_demo_golden_stream():
    stream = _stream()
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(stream, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    if stream != expected:
        got, want = stream.splitlines(), expected.splitlines()
        first = next(
            (i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
            min(len(got), len(want)),
        )
        raise AssertionError(
            f"stream differs from {GOLDEN.name} at line {first + 1} "
            f"({len(got)} lines vs {len(want)}):\n"
            f"got:  {got[first] if first < len(got) else '<end>'}\n"
            f"want: {want[first] if first < len(want) else '<end>'}"
        )
