"""The JSON Schema of scenario files, for editors: ``python -m simulator.scenario_schema``
prints it.

It is generated from the declaration the loader checks files against
(`simulator.scenario.SCENARIO`: every field's type, bounds, choices, default and
description), so the schema and the loader cannot disagree. The published copy is
docs/scenario.schema.json; a test fails, with the command to regenerate it, when it is
stale. Cross-field rules (references between sections, fault targets, an alert's scope)
and a string duration's bounds are the loader's alone.

The loader does not import this module: `python -m` on a module the package already
imported runs it twice, and runpy warns.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from simulator.scenario import SCENARIO

PUBLISHED = "docs/scenario.schema.json"
REGENERATE = f".venv/bin/python -m simulator.scenario_schema > {PUBLISHED}"


def scenario_json_schema() -> dict[str, Any]:
    """The scenario format as JSON Schema (draft 2020-12)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Generated from simulator/scenario.py; do not edit. Regenerate: {REGENERATE}",
        "title": "Phoenix simulator scenario",
        "description": (
            "A simulated Phoenix fleet: agents, pipelines, experiments, faults and alert "
            "rules (docs/scenarios.md). The loader checks more than this schema can say: "
            "references between sections, fault targets, an alert's scope, the range of "
            "a duration or start written as a string."
        ),
        **SCENARIO.json_schema(),
    }


def render() -> str:
    """The published file's text."""
    return json.dumps(scenario_json_schema(), indent=2) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
