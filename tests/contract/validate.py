"""Validate wire frames against docs/asyncapi.yaml, the contract client developers read.

The schemas are taken from the document itself, never restated here: which schema an event
must match is found through the document's own channels and messages, so a change to the
document is a change to what the tests enforce. Schema objects of AsyncAPI 3.0.0 (its
default schemaFormat) are a superset of JSON Schema draft 07, so draft 07 it is. The
document's `$ref`s are all local and none is recursive: they are inlined (draft 07 ignores
a `$ref`'s siblings, so the target replaces the node), which makes a validation about a
quarter cheaper than resolving them through a `referencing` registry on every frame.

Used by tests/contract (every event of every scenario) and by tests/server/conftest.py
(every frame any server test receives).
"""

from __future__ import annotations

import json
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "asyncapi.yaml"
CONNECTION = "connection"  # the document's channel for commands and replies, not a Phoenix one

# The schema a frame must match, by its `type`, when nothing more is known about it. An
# event's data is checked only against the envelope here: tests that script their own
# events (tests/server's ListSource) make data up, so the per-event schemas are enforced
# where the data comes from the real simulation (tests/contract).
FRAME_SCHEMAS = {
    "event": "#/components/schemas/EventEnvelope",
    "response": "#/components/schemas/Response",
    "pong": "#/components/schemas/Pong",
    "error": "#/components/schemas/ErrorFrame",
}


@cache
def document() -> dict[str, Any]:
    with DOCUMENT.open(encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    assert isinstance(doc, dict), f"{DOCUMENT} is not a YAML mapping"
    return doc


def resolve(pointer: str) -> Any:
    """What a local reference ("#/components/schemas/Pong") points at in the document."""
    assert pointer.startswith("#/"), f"only local references are expected, got {pointer}"
    node: Any = document()
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def deref(node: Any) -> Any:
    """`node`, or what its chain of `$ref`s leads to."""
    while isinstance(node, dict) and "$ref" in node:
        node = resolve(node["$ref"])
    return node


def inline(node: Any, seen: tuple[str, ...] = ()) -> Any:
    """`node` with every `$ref` replaced by a copy of its target, recursively."""
    if isinstance(node, dict):
        if "$ref" in node:
            pointer = node["$ref"]
            assert pointer not in seen, f"recursive reference: {' -> '.join((*seen, pointer))}"
            return inline(resolve(pointer), (*seen, pointer))
        return {key: inline(value, seen) for key, value in node.items()}
    if isinstance(node, list):
        return [inline(item, seen) for item in node]
    return node


@cache
def validator(pointer: str) -> Draft7Validator:
    """A validator for the schema at a pointer of the document, `$ref`s inlined."""
    schema = inline({"$ref": pointer})
    Draft7Validator.check_schema(schema)  # a broken schema must not pass everything
    return Draft7Validator(schema)


@cache
def event_schemas() -> dict[str, tuple[str, str]]:
    """Event name -> (its Phoenix channel, the pointer of its frame schema), read from the
    document's channels: every message of every channel but the connection is an event."""
    out: dict[str, tuple[str, str]] = {}
    for key, channel in document()["channels"].items():
        if key == CONNECTION:
            continue
        for ref in channel["messages"].values():
            message = deref(ref)
            name = message["name"]
            assert name not in out, f"event {name} is documented twice"
            out[name] = (channel["address"], message["payload"]["$ref"])
    return out


def problem(frame: Any, pointer: str) -> str | None:
    """None when `frame` matches the schema at `pointer`; else what is wrong, in words."""
    check = validator(pointer)
    if check.is_valid(frame):  # the fast path: nearly every frame is fine
        return None
    err = best_match(check.iter_errors(frame))
    where = err.json_path if err.path else "the frame"
    return f"schema {pointer.rsplit('/', 1)[-1]}: {err.message} (at {where})"


def frame_problem(frame: Any, *, events: bool = False) -> str | None:
    """What is wrong with a frame from the server, by the document; None if nothing.

    Every frame must be a JSON object with a documented `type` that matches that type's
    schema, and an event must be on the channel the document gives it. With `events`, an
    event must also match the schema of its own event, data and all."""
    if not isinstance(frame, dict):
        return f"not a JSON object but {type(frame).__name__}"
    kind = frame.get("type")
    if not isinstance(kind, str) or kind not in FRAME_SCHEMAS:
        return f"type {kind!r} is none of the documented {sorted(FRAME_SCHEMAS)}"
    name = frame.get("event")
    known = event_schemas().get(name) if kind == "event" and isinstance(name, str) else None
    if known is not None and events:
        return problem(frame, known[1])  # the envelope, the channel and the data, at once
    found = problem(frame, FRAME_SCHEMAS[kind])
    if found is None and known is not None and frame["channel"] != known[0]:
        return f"event {name} on channel {frame['channel']!r}, documented on {known[0]!r}"
    return found


# Fan-out tests receive the same frame on many sockets: judge each text once.
@lru_cache(maxsize=8192)
def text_frame_problem(text: str, *, events: bool = False) -> str | None:
    """`frame_problem` for a text frame as it came off the socket."""
    try:
        frame = json.loads(text)
    except ValueError as exc:
        return f"not JSON: {exc}"
    return frame_problem(frame, events=events)
