"""The value that crosses from the simulation to the server: one event.

The simulation knows nothing of envelopes, ids or sockets. It hands out `Event`s whose
`data` is exactly the wire's `data` object and whose `tags` are the filter keys the hub
matches on (the hub never digs in `data`). The server adds the envelope (`id`, `type`,
`timestamp`).

The most frequent events (heartbeats, thousands a second in a firehose) are built in bulk
from the fleet's arrays straight as JSON text (`raw`): no dict is made for them unless
someone reads `data`, which is then parsed from that text.
"""

from __future__ import annotations

import json
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


class Event:
    __slots__ = ("time", "channel", "name", "tags", "raw", "_data")

    def __init__(
        self,
        time: float,  # simulated UNIX seconds: its tick's, or within the second before it
        # for heartbeats above one per agent per second
        channel: str,  # one of CHANNELS, or CONTROL
        name: str,  # "experiment.created", ... ; for CONTROL: "fault.start" / "fault.end"
        data: dict[str, Any] | None = None,  # JSON-ready, exactly the wire's "data"
        tags: dict[str, str] | None = None,  # filter key -> value
        raw: bytes | None = None,  # or the wire's "data" already as compact JSON (UTF-8)
    ) -> None:
        if data is None and raw is None:
            raise ValueError("an event needs data or raw")
        self.time = time
        self.channel = channel
        self.name = name
        self.tags = {} if tags is None else tags
        self.raw = raw
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            assert self.raw is not None
            self._data = json.loads(self.raw)
        return self._data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.time, self.channel, self.name, self.data, self.tags) == (
            other.time,
            other.channel,
            other.name,
            other.data,
            other.tags,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Event(time={self.time!r}, channel={self.channel!r}, name={self.name!r}, "
            f"data={self.data!r}, tags={self.tags!r})"
        )
