"""docs/asyncapi.yaml says what phoenix/protocol.py does: the same channels, error codes,
close codes, filter keys and command fields, examples that are real frames, and command
schemas that accept exactly what the server's parser accepts."""

from __future__ import annotations

import json
import os
import re
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft7Validator
from jsonschema.exceptions import SchemaError

import phoenix
from phoenix.protocol import (
    CHANNELS,
    COMMAND_FIELDS,
    FILTER_KEYS,
    Close,
    Code,
    ProtocolError,
    event_payload,
    parse_command,
)
from simulator import CONTROL, Engine, load_scenario
from simulator.clock import parse_rfc3339

from .validate import CONNECTION, DOCUMENT, deref, document, event_schemas, problem, resolve


def schema(name: str) -> dict[str, Any]:
    found: dict[str, Any] = document()["components"]["schemas"][name]
    return found


def all_messages() -> dict[str, dict[str, Any]]:
    return dict(document()["components"]["messages"])


def test_it_is_asyncapi_3_of_this_version() -> None:
    doc = document()
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["version"] == phoenix.__version__


def test_every_schema_is_a_valid_draft_07_schema() -> None:
    # AsyncAPI 3.0.0's default schemaFormat is a superset of JSON Schema draft 07.
    for name, body in document()["components"]["schemas"].items():
        try:
            Draft7Validator.check_schema(body)
        except SchemaError as exc:
            pytest.fail(f"schema {name}: {exc.message}")


def test_the_six_channels_in_the_servers_order() -> None:
    channels = {k: v for k, v in document()["channels"].items() if k != CONNECTION}
    assert [c["address"] for c in channels.values()] == list(CHANNELS)
    assert schema("Channel")["enum"] == list(CHANNELS)


def test_sixteen_events_each_on_one_channel() -> None:
    events = event_schemas()
    assert len(events) == 16
    assert sorted(schema("EventName")["enum"]) == sorted(events)
    assert {channel for channel, _ in events.values()} == set(CHANNELS)


def test_error_codes_are_the_servers() -> None:
    assert schema("ErrorCode")["enum"] == [str(c) for c in Code]
    variants = [resolve(v["$ref"]) for v in schema("ErrorFrame")["properties"]["error"]["oneOf"]]
    consts = {v["properties"]["code"].get("const") for v in variants} - {None}
    assert consts == {str(c) for c in Code}, "one error schema per code"
    assert [row["code"] for row in document()["info"]["x-error-codes"]] == [str(c) for c in Code]


def test_close_codes_are_the_servers() -> None:
    table = document()["info"]["x-close-codes"]
    assert [row["code"] for row in table if row["code"] != "any"] == [int(c) for c in Close]
    # And the table a reader sees on the connection channel lists them too.
    described = document()["channels"][CONNECTION]["description"]
    listed = [int(code) for code in re.findall(r"^\| (\d{4}) \|", described, re.MULTILINE)]
    assert listed == [int(c) for c in Close]


def test_filter_keys_and_command_fields_are_the_servers() -> None:
    assert list(schema("Filters")["properties"]) == list(FILTER_KEYS)
    details = schema("InvalidMessageError")["properties"]["details"]["properties"]
    assert details["valid_filters"]["items"]["enum"] == list(FILTER_KEYS)
    assert details["valid_types"]["items"]["enum"] == sorted(COMMAND_FIELDS)
    assert commands().keys() == COMMAND_FIELDS.keys()
    for kind, pointer in commands().items():
        assert set(resolve(pointer)["properties"]) == COMMAND_FIELDS[kind], kind


def test_auth_is_a_jwt_in_the_token_query_parameter() -> None:
    doc = document()
    scheme = doc["components"]["securitySchemes"]["token"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("httpApiKey", "query", "token")
    assert doc["servers"]["local"]["pathname"] == "/ws"
    assert doc["channels"][CONNECTION]["bindings"]["ws"]["query"]["required"] == ["token"]


def commands() -> dict[str, str]:
    """Command type -> its payload schema, from the operations the server receives."""
    out: dict[str, str] = {}
    for op in document()["operations"].values():
        if op["action"] != "receive":
            continue
        for ref in op["messages"]:
            pointer = deref(ref)["payload"]["$ref"]
            out[resolve(pointer)["properties"]["type"]["const"]] = pointer
    return out


def test_every_example_matches_its_message() -> None:
    checked = 0
    for key, message in all_messages().items():
        assert message.get("examples"), f"message {key} has no example"
        for example in message["examples"]:
            found = problem(example["payload"], message["payload"]["$ref"])
            assert found is None, f"example of {key}: {found}"
            checked += 1
    assert checked >= len(all_messages())


def demo_frames() -> dict[str, dict[str, Any]]:
    """The frames of `phoenix simulate --scenario demo --seed 7 --start 2024-01-20T10:00:00Z
    --duration 10m`, by id (as tests/simulator/test_sim_golden.py runs it)."""
    start = parse_rfc3339("2024-01-20T10:00:00Z")
    engine = Engine(load_scenario("demo"), seed=7, start=start)
    wire = (e for e in engine.advance_to(start + 600) if e.channel != CONTROL)
    return {f"evt-{seq}": event_payload(seq, e) for seq, e in enumerate(wire, 1)}


def yaml_json(value: Any) -> str:
    """JSON as the document writes it: what YAML 1.1 (PyYAML) and 1.2 (the AsyncAPI tools)
    read alike, so floats are positional (PyYAML reads `5e-05` as a string)."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {yaml_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_json(v) for v in value) + "]"
    if isinstance(value, float):
        text = format(Decimal(repr(value)), "f")
        return text if "." in text else text + ".0"
    return json.dumps(value)


EXAMPLE_LINE = re.compile(r'^(\s+(?:- )?payload: )(\{"id": "evt-.*)$', re.MULTILINE)


def test_event_examples_are_real_frames() -> None:
    """Each event's example is the frame the demo sends at that id. After an intended change
    to the simulation, UPDATE_GOLDEN=1 rewrites them (as it does the golden stream)."""
    real = demo_frames()
    text = DOCUMENT.read_text(encoding="utf-8")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        fresh = EXAMPLE_LINE.sub(lambda m: m[1] + yaml_json(real[json.loads(m[2])["id"]]), text)
        if fresh != text:
            DOCUMENT.write_text(fresh, encoding="utf-8")
            document.cache_clear()
    examples = [
        (message["name"], example["payload"])
        for message in all_messages().values()
        if message["name"] in event_schemas()
        for example in message["examples"]
    ]
    assert {name for name, _ in examples} == set(event_schemas())
    for name, frame in examples:
        assert frame["event"] == name, f"the example of {name} is a {frame['event']}"
        assert frame == real[frame["id"]], f"the example of {name} is not the frame {frame['id']}"


# Commands the server's parser accepts, and ones it refuses: the schemas must agree. (The
# schemas cannot say that a `since` key must be one of the same subscribe's channels; the
# parser checks that on its own.)
ACCEPTED: list[Any] = [
    {"type": "ping"},
    {"type": "ping", "id": "x" * 128},
    {"type": "subscribe", "channels": ["metrics"]},
    {"type": "subscribe", "channels": ["metrics", "metrics"], "id": "s"},
    {"type": "subscribe", "channels": list(CHANNELS), "filters": {"experiment_id": "exp-1"}},
    {"type": "subscribe", "channels": ["alerts"], "filters": None, "since": None},
    {"type": "subscribe", "channels": ["alerts"], "filters": {k: "v" for k in FILTER_KEYS}},
    {"type": "subscribe", "channels": ["alerts", "agents"], "since": {"alerts": "evt-42"}},
    {"type": "unsubscribe", "channels": ["alerts", "cost-flow"], "id": ""},
]
REFUSED: list[Any] = [
    [1, 2],
    "ping",
    {},
    {"type": 5},
    {"type": "hello"},
    {"type": "ping", "id": 7},
    {"type": "ping", "id": "x" * 129},
    {"type": "ping", "channels": ["metrics"]},
    {"type": "subscribe"},
    {"type": "subscribe", "channels": "metrics"},
    {"type": "subscribe", "channels": []},
    {"type": "subscribe", "channels": ["metrics", 3]},
    {"type": "subscribe", "channels": ["invalid"]},
    {"type": "subscribe", "channels": ["metrics"], "filters": []},
    {"type": "subscribe", "channels": ["metrics"], "filters": {"color": "red"}},
    {"type": "subscribe", "channels": ["metrics"], "filters": {"agent_id": 1}},
    {"type": "subscribe", "channels": ["metrics"], "filter": {}},
    {"type": "subscribe", "channels": ["metrics"], "since": "evt-1"},
    {"type": "subscribe", "channels": ["metrics"], "since": {"metrics": "42"}},
    {"type": "subscribe", "channels": ["metrics"], "since": {"metrics": "evt-\uff11"}},
    {"type": "subscribe", "channels": ["metrics"], "since": {"metrics": "evt-" + "9" * 19}},
    {"type": "unsubscribe", "channels": ["metrics"], "filters": {}},
    {"type": "unsubscribe"},
]


def schema_accepts(command: Any) -> bool:
    kind = command.get("type") if isinstance(command, dict) else None
    pointer = commands().get(kind) if isinstance(kind, str) else None
    return pointer is not None and problem(command, pointer) is None


def server_accepts(command: Any) -> bool:
    try:
        parse_command(command)
    except ProtocolError:
        return False
    return True


@pytest.mark.parametrize("command", ACCEPTED + REFUSED, ids=lambda c: json.dumps(c)[:60])
def test_command_schemas_accept_what_the_server_accepts(command: Any) -> None:
    assert schema_accepts(command) == server_accepts(command)
    assert server_accepts(command) == (command in ACCEPTED)  # the lists are right, too
