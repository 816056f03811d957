"""The validation the contract tests and tests/server/conftest.py rely on does refuse what
the document forbids: a wrong type, a missing or an added field, a null where none is
allowed, an event on the wrong channel, a reply or an error out of shape."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from .validate import frame_problem, text_frame_problem

HEARTBEAT: dict[str, Any] = {
    "id": "evt-154",
    "type": "event",
    "channel": "agents",
    "event": "agent.heartbeat",
    "data": {
        "agent_id": "agent-prod-app-039",
        "status": "healthy",
        "metrics": {"cpu_percent": 24.3, "memory_percent": 61.2, "metrics_per_second": 8020},
    },
    "timestamp": "2024-01-20T10:00:01Z",
}
ALERT: dict[str, Any] = {
    "id": "evt-1101",
    "type": "event",
    "channel": "alerts",
    "event": "alert.triggered",
    "data": {
        "alert_id": "alert-1",
        "name": "Fleet Capacity Low",
        "severity": "warning",
        "experiment_id": None,
        "condition": "active_agents < 148",
        "current_value": 147,
    },
    "timestamp": "2024-01-20T10:02:30Z",
}
ERROR: dict[str, Any] = {
    "type": "error",
    "id": "m1",
    "error": {
        "code": "INVALID_CHANNEL",
        "message": "Channel 'x' does not exist",
        "details": {"channel": "x", "valid_channels": ["experiments", "metrics"]},
    },
    "timestamp": "2024-01-20T10:00:00Z",
}
RESPONSE: dict[str, Any] = {
    "type": "response",
    "status": "ok",
    "subscribed": ["alerts"],
    "recovered": True,
    "timestamp": "2024-01-20T10:00:00Z",
}


def changed(frame: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `frame` with the field at a dotted path set to `value` (`...` deletes it)."""
    out = copy.deepcopy(frame)
    *parents, last = path.split(".")
    node = out
    for key in parents:
        node = node[key]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


def test_the_good_frames_pass() -> None:
    # The baseline of every case below: each changes one thing of a frame that passes.
    for frame in (HEARTBEAT, ALERT, ERROR, RESPONSE):
        assert frame_problem(frame, events=True) is None


@pytest.mark.parametrize(
    ("frame", "words"),
    [
        (changed(HEARTBEAT, "data.metrics.cpu_percent", "24.3"), "'24.3' is not of type 'number'"),
        (changed(HEARTBEAT, "data.status", "sleepy"), "'sleepy' is not one of"),
        (changed(HEARTBEAT, "data.agent_id", ...), "'agent_id' is a required property"),
        (changed(HEARTBEAT, "data.agent", "a"), "Additional properties are not allowed"),
        (changed(HEARTBEAT, "data.metrics.metrics_per_second", -1), "less than the minimum"),
        (changed(HEARTBEAT, "channel", "metrics"), "'agents' was expected"),
        (changed(HEARTBEAT, "id", "42"), "does not match"),
        (changed(HEARTBEAT, "timestamp", "2024-01-20 10:00:01"), "does not match"),
        (changed(ALERT, "data.experiment_id", 7), "is not of type 'string', 'null'"),
        (changed(ALERT, "data.current_value", None), "None is not of type 'number'"),
        (changed(ALERT, "data.experiment_id", ...), "'experiment_id' is a required property"),
    ],
)
def test_a_bad_event_is_refused_naming_the_fault(frame: dict[str, Any], words: str) -> None:
    found = frame_problem(frame, events=True)
    assert found is not None and words in found, found


def test_without_events_only_the_envelope_is_checked() -> None:
    # What tests/server/conftest.py does: scripted events carry made-up data.
    made_up = changed(HEARTBEAT, "data", {"anything": 1})
    assert frame_problem(made_up) is None
    assert frame_problem(made_up, events=True) is not None
    # ... but the envelope and the channel are still the document's.
    assert "documented on 'agents'" in str(frame_problem(changed(HEARTBEAT, "channel", "alerts")))
    assert frame_problem(changed(HEARTBEAT, "event", "agent.sneezed")) is not None
    assert frame_problem(changed(HEARTBEAT, "data", [])) is not None


@pytest.mark.parametrize(
    "frame",
    [
        changed(ERROR, "error.code", "TEAPOT"),
        changed(ERROR, "error.details", {"reason": "expired"}),  # the details of another code
        changed(ERROR, "error.message", ...),
        changed(ERROR, "id", 5),
        changed(RESPONSE, "status", "error"),
        changed(RESPONSE, "recovered", "yes"),
        changed(RESPONSE, "unsubscribed", ["alerts"]),  # both lists: neither reply
        {"type": "pong"},
        {"type": ["event"]},
        {"type": "hello", "timestamp": "2024-01-20T10:00:00Z"},
        ["not", "an", "object"],
    ],
)
def test_a_bad_reply_or_error_is_refused(frame: Any) -> None:
    assert frame_problem(frame) is not None


def test_text_that_is_not_json_is_refused() -> None:
    assert str(text_frame_problem("{not json")).startswith("not JSON")
    assert text_frame_problem('{"type":"pong","timestamp":"2024-01-20T10:00:00Z"}') is None
