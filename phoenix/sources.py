"""Where the feed's events come from: a scenario run by the engine (or, later, a recorded
stream). The only place the server builds an Engine."""

from __future__ import annotations

import time
from pathlib import Path

from phoenix.config import SimulationConfig
from phoenix.feed import Source, SourceInfo
from simulator.clock import parse_start
from simulator.engine import Continuation, Engine
from simulator.scenario import MAX_SCENARIO_BYTES, ScenarioError, load_scenario


def scenario_source(
    scenario: str,
    seed: int | None = None,
    start: str | float | None = None,
    max_bytes: int = MAX_SCENARIO_BYTES,
    after: Continuation | None = None,
) -> tuple[Source, SourceInfo]:
    """Load a bundled scenario (by name) or a file and start an engine on it.

    Seed: the given one, else the scenario's, else 1. Start: the given one, else the
    scenario's, else now (whole seconds), which is the one thing that is not repeatable.
    """
    sc = load_scenario(scenario, max_bytes)
    seed = seed if seed is not None else (sc.seed if sc.seed is not None else 1)
    if start == "now":
        start = float(int(time.time()))
    elif isinstance(start, str):
        start = parse_start(start)
    if start is None and sc.start is None:
        start = float(int(time.time()))
    engine = Engine(sc, seed=seed, start=start, after=after)
    return engine, SourceInfo("scenario", sc.name, seed, scenario)


def source_from_config(sim: SimulationConfig) -> tuple[Source, SourceInfo]:
    return scenario_source(sim.scenario, sim.seed, sim.start, sim.max_scenario_bytes)


def restartable(ref: str, dirs: tuple[str, ...], current: str | None) -> str:
    """What a restart through the HTTP API may load, as load_scenario takes it: a bundled
    scenario by name, the scenario running now, or a .yaml file inside one of `dirs`
    (resolved, so neither `..` nor a symlink leads out of it). The admin API must not
    become a way to read the server's files."""
    if "\x00" in ref or len(ref) > 4096:
        raise ScenarioError("scenario: expected a scenario name or a path to a .yaml file")
    if ref == current:
        return ref
    path = Path(ref)
    if "/" not in ref and path.suffix not in (".yaml", ".yml"):
        return ref  # a bundled name: load_scenario looks it up among the bundled only
    if path.suffix not in (".yaml", ".yml"):
        raise ScenarioError("scenario: only .yaml files may be loaded")
    for directory in dirs:
        base = Path(directory).resolve()
        resolved = (base / path).resolve()  # an absolute `path` replaces `base`
        if resolved.is_relative_to(base):
            return str(resolved)
    where = ", ".join(dirs) if dirs else "none is configured"
    raise ScenarioError(
        "scenario: not a bundled scenario, nor a .yaml file inside simulation.scenario_dirs "
        f"({where})"
    )
