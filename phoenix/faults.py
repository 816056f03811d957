"""Faults: the ones that change the simulation go to the engine; the ones that change
delivery (closing connections, latency, duplicates, token storms, ...) are carried out
here, on the server side.

Scheduled faults arrive as CONTROL events from the engine, in order with the events, so a
run repeats exactly; injected ones arrive through POST /api/sim/faults.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from aiohttp import web

from simulator.events import Event

log = logging.getLogger("phoenix.faults")


class Faults:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        self._active: dict[str, dict[str, Any]] = {}

    def on_control(self, event: Event) -> None:
        log.info("fault control %s: %s", event.name, event.data)

    def inject(self, body: dict[str, Any]) -> dict[str, Any]:
        from phoenix.keys import FEED

        source = self.app[FEED].source
        source.inject(body)  # type: ignore[attr-defined]
        log.info("fault injected: %s", body)
        return dict(body)

    def active(self) -> list[dict[str, Any]]:
        return list(self._active.values())

    def active_counts(self) -> Counter[str]:
        return Counter(f["fault"] for f in self._active.values())

    def clear(self) -> None:
        self._active.clear()
