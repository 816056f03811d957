"""The value that crosses from the simulation to the server: one event.

The simulation knows nothing of envelopes, ids or sockets. It hands out `Event`s whose
`data` is exactly the wire's `data` object and whose `tags` are the filter keys the hub
matches on (the hub never digs in `data`). The server adds the envelope (`id`, `type`,
`timestamp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CHANNELS: tuple[str, ...] = (
    "experiments",
    "metrics",
    "agents",
    "deployments",
    "alerts",
    "cost-flow",
)

# Not a wire channel: directives for the server (delivery faults declared in a
# scenario's schedule), emitted in order with the events so that a run repeats exactly.
CONTROL = "control"

FILTER_KEYS: tuple[str, ...] = (
    "experiment_id",
    "agent_id",
    "deployment_id",
    "pipeline_id",
    "severity",
)


@dataclass(frozen=True, slots=True)
class Event:
    time: float  # simulated UNIX seconds (tick-aligned, whole seconds)
    channel: str  # one of CHANNELS, or CONTROL
    name: str  # "experiment.created", ... ; for CONTROL: "fault.start" / "fault.end"
    data: dict[str, Any]  # JSON-ready, exactly the wire's "data"
    tags: dict[str, str] = field(default_factory=dict)  # filter key -> value
