"""Where the feed's events come from: a scenario run by the engine (or, later, a recorded
stream). The only place the server builds an Engine."""

from __future__ import annotations

import time

from phoenix.config import SimulationConfig
from phoenix.feed import Source, SourceInfo
from simulator.clock import parse_start
from simulator.engine import Engine
from simulator.scenario import load_scenario


def scenario_source(
    scenario: str, seed: int | None = None, start: str | float | None = None
) -> tuple[Source, SourceInfo]:
    """Load a bundled scenario (by name) or a file and start an engine on it.

    Seed: the given one, else the scenario's, else 1. Start: the given one, else the
    scenario's, else now (whole seconds), which is the one thing that is not repeatable.
    """
    sc = load_scenario(scenario)
    seed = seed if seed is not None else (sc.seed if sc.seed is not None else 1)
    if isinstance(start, str):
        start = parse_start(start)
    if start is None and sc.start is None:
        start = float(int(time.time()))
    return Engine(sc, seed=seed, start=start), SourceInfo("scenario", sc.name, seed, scenario)


def source_from_config(sim: SimulationConfig) -> tuple[Source, SourceInfo]:
    return scenario_source(sim.scenario, sim.seed, sim.start)
