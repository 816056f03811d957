"""The Phoenix fleet simulation: pure numpy and stdlib, no asyncio, no wall clock.

The server imports only what is re-exported here: load a scenario, build an Engine,
advance it, read its events and its snapshot.
"""

from simulator.clock import rfc3339
from simulator.engine import Engine
from simulator.events import CHANNELS, CONTROL, FILTER_KEYS, Event
from simulator.scenario import (
    Scenario,
    ScenarioError,
    bundled_scenarios,
    load_scenario,
    parse_scenario,
)

__all__ = [
    "CHANNELS",
    "CONTROL",
    "FILTER_KEYS",
    "Engine",
    "Event",
    "Scenario",
    "ScenarioError",
    "bundled_scenarios",
    "load_scenario",
    "parse_scenario",
    "rfc3339",
]
