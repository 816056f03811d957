"""The wire format of the Phoenix WebSocket API, in one place.

Channels, error codes, close codes, the frames the server sends and the validation of the
frames a client sends. Nothing here does I/O: the WebSocket handler is the only place that
turns a `ProtocolError` into an error frame on a socket.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from functools import lru_cache
from typing import Any

import orjson

from simulator.clock import rfc3339, timestamp
from simulator.events import CHANNELS, FILTER_KEYS, Event

__all__ = [
    "CHANNELS",
    "FILTER_KEYS",
    "Close",
    "Code",
    "Command",
    "ProtocolError",
    "dumps",
    "error_frame",
    "event_frame",
    "event_payload",
    "narrow",
    "parse_command",
    "pong_frame",
    "response_frame",
]

MAX_ID_LENGTH = 128
NARROWED_EVENTS = frozenset({"metrics.update", "cost.update"})


class Code(StrEnum):
    """Error codes of the reference (`error.code`)."""

    UNAUTHORIZED = "UNAUTHORIZED"
    INVALID_MESSAGE = "INVALID_MESSAGE"
    INVALID_CHANNEL = "INVALID_CHANNEL"
    RATE_LIMITED = "RATE_LIMITED"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class Close(IntEnum):
    """Every close code the server uses, in one table."""

    GOING_AWAY = 1001  # server shutdown or restart
    TOO_BIG = 1009  # a client frame over limits.max_message_bytes
    SERVICE_RESTART = 1012  # the server_restart fault
    TRY_AGAIN_LATER = 1013  # slow consumer: outbound queue overflowed
    UNAUTHORIZED = 4001  # bad, missing or expired token
    RATE_LIMITED = 4029  # connection limit, or a client that keeps flooding


@dataclass(slots=True)
class ProtocolError(Exception):
    """A client mistake that becomes one `error` frame; the connection stays open
    unless `close` says otherwise."""

    code: Code
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    close: Close | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def invalid(field_name: str | None, problem: str, **extra: Any) -> ProtocolError:
    details: dict[str, Any] = {"problem": problem, **extra}
    if field_name is not None:
        details = {"field": field_name, **details}
    where = f"'{field_name}': " if field_name else ""
    return ProtocolError(Code.INVALID_MESSAGE, f"Invalid message: {where}{problem}", details)


def encode(obj: Any) -> bytes:
    """The one serialiser for every frame: compact JSON in UTF-8, as text frames are.

    orjson: about 9x the standard library's json.dumps on these events and 1.4x msgspec
    (bench/README.md). It writes NaN and Infinity as null where the standard library can
    refuse them; NaN is not JSON and a null where a number belongs breaks clients too, so
    a frame that holds a null is checked strictly (few frames hold one)."""
    out = orjson.dumps(obj)
    if b"null" in out:
        json.dumps(obj, allow_nan=False)  # ValueError for a NaN or an Infinity
    return out


def dumps(obj: Any) -> str:
    return encode(obj).decode()


# --- server -> client -------------------------------------------------------------


def event_payload(seq: int, event: Event, data: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": f"evt-{seq}",
        "type": "event",
        "channel": event.channel,
        "event": event.name,
        "data": event.data if data is None else data,
        "timestamp": timestamp(event.time),
    }


@lru_cache(maxsize=256)
def _between(channel: str, name: str) -> bytes:
    # What comes between the id and the data: the same for every event of a kind.
    return b'","type":"event","channel":' + encode(channel) + b',"event":' + encode(name)


def event_frame(seq: int, event: Event, data: dict[str, Any] | None = None) -> bytes:
    """The wire bytes of an event: exactly `encode(event_payload(...))`, assembled from
    parts so that only `data` is serialised per event (a tick's events share a second,
    and an event kind its channel and name)."""
    if data is None and event.raw is not None:
        body = event.raw  # made as JSON by the simulation (heartbeats)
    else:
        body = encode(event.data if data is None else data)
    stamp = _stamp(round(event.time * 1000))
    return b'{"id":"evt-%d%b,"data":%b%b' % (seq, _between(event.channel, event.name), body, stamp)


@lru_cache(maxsize=4096)
def _stamp(ms: int) -> bytes:
    # A tick's events share an instant (a few within it for heartbeats above one per
    # agent per second): formatted once each.
    return b',"timestamp":"' + timestamp(ms / 1000).encode() + b'"}'


def narrow(event: Event, experiment_id: str) -> dict[str, Any]:
    """The data of a `metrics.update` or `cost.update` narrowed to one experiment: its
    per-experiment part keeps only that experiment, the global part stays (docs/design.md §2)."""
    data = dict(event.data)
    if event.name == "metrics.update":
        per = data.get("experiments") or {}
        data["experiments"] = {k: v for k, v in per.items() if k == experiment_id}
    elif event.name == "cost.update":
        opts = data.get("active_optimizations") or []
        data["active_optimizations"] = [o for o in opts if o.get("experiment_id") == experiment_id]
    return data


def response_frame(msg_id: str | None, now: float, **fields: Any) -> str:
    frame: dict[str, Any] = {"type": "response"}
    if msg_id is not None:
        frame["id"] = msg_id
    frame["status"] = "ok"
    frame.update(fields)
    frame["timestamp"] = rfc3339(now)
    return dumps(frame)


def pong_frame(msg_id: str | None, now: float) -> str:
    frame: dict[str, Any] = {"type": "pong"}
    if msg_id is not None:
        frame["id"] = msg_id
    frame["timestamp"] = rfc3339(now)
    return dumps(frame)


def error_frame(err: ProtocolError, msg_id: str | None, now: float) -> str:
    """The error frame for `err`. It never raises: this is the path every other failure
    ends in, so a value that cannot be encoded falls back to a frame without it."""
    frame: dict[str, Any] = {"type": "error"}
    if msg_id is not None:
        frame["id"] = msg_id
    frame["error"] = {"code": str(err.code), "message": err.message, "details": err.details}
    frame["timestamp"] = rfc3339(now)
    try:
        text = dumps(frame)
        text.encode("utf-8")  # what the socket will do: fail here, not there
        return text
    except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
        fallback = {"code": str(err.code), "message": "The message was refused", "details": {}}
        return dumps({"type": "error", "error": fallback, "timestamp": rfc3339(now)})


def unauthorized(reason: str, message: str) -> ProtocolError:
    return ProtocolError(Code.UNAUTHORIZED, message, {"reason": reason}, Close.UNAUTHORIZED)


def invalid_channel(name: str) -> ProtocolError:
    return ProtocolError(
        Code.INVALID_CHANNEL,
        f"Channel '{name}' does not exist",
        {"channel": name, "valid_channels": list(CHANNELS)},
    )


# --- client -> server -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    type: str  # "subscribe" | "unsubscribe" | "ping"
    id: str | None = None
    channels: tuple[str, ...] = ()
    filters: dict[str, str] = field(default_factory=dict)
    since: dict[str, str] = field(default_factory=dict)  # resume: channel -> last event id


COMMAND_FIELDS: dict[str, frozenset[str]] = {
    "subscribe": frozenset({"id", "type", "channels", "filters", "since"}),
    "unsubscribe": frozenset({"id", "type", "channels"}),
    "ping": frozenset({"id", "type"}),
}


def message_id(obj: Any) -> str | None:
    """The `id` to echo on whatever a frame causes, if it has a usable one."""
    if isinstance(obj, dict):
        mid = obj.get("id")
        if isinstance(mid, str) and len(mid) <= MAX_ID_LENGTH:
            return mid
    return None


# A JSON escape of a UTF-16 surrogate: only then can a decoded string hold a lone one.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode(text: str) -> Any:
    """JSON text from a client -> a value whose every string can be encoded again (so
    whatever is echoed can be sent). Raises ProtocolError naming the field."""
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise invalid(None, f"not valid JSON: {problem}") from None
    if _SURROGATE_ESCAPE.search(text):
        where = unencodable(obj)
        if where is not None:
            raise invalid(
                where or None,
                "holds a lone UTF-16 surrogate, which is not text (it cannot be UTF-8)",
            )
    return obj


def unencodable(obj: Any) -> str | None:
    """The path of the first string (value or key) in a decoded JSON value that cannot be
    encoded as UTF-8 ("" for the value itself), or None when every string can."""
    stack: list[tuple[str, Any]] = [("", obj)]
    while stack:  # a loop, not recursion: the value may be nested deeply
        path, value = stack.pop()
        if isinstance(value, str):
            if not is_text(value):
                return path
        elif isinstance(value, dict):
            for key, item in value.items():
                sub = f"{path}.{key}" if path else str(key)
                if not is_text(key):
                    return path or "(a key)"
                stack.append((sub, item))
        elif isinstance(value, list):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(value))
    return None


def is_text(text: str) -> bool:
    """Whether a string can be written out as UTF-8 (echoed, logged): no lone UTF-16
    surrogates, which JSON escapes and argv bytes that are not UTF-8 can carry."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_command(obj: Any) -> Command:
    """Validate one decoded client message. Raises ProtocolError naming the field."""
    if not isinstance(obj, dict):
        raise invalid(None, f"expected a JSON object, got {_json_type(obj)}")
    kind = obj.get("type")
    if "type" not in obj:
        raise invalid("type", "required", valid_types=sorted(COMMAND_FIELDS))
    if not isinstance(kind, str):
        raise invalid("type", f"expected a string, got {_json_type(kind)}")
    if kind not in COMMAND_FIELDS:
        raise invalid("type", f"unknown type '{kind}'", valid_types=sorted(COMMAND_FIELDS))
    mid = obj.get("id")
    if "id" in obj:
        if not isinstance(mid, str):
            raise invalid("id", f"expected a string, got {_json_type(mid)}")
        if len(mid) > MAX_ID_LENGTH:
            raise invalid("id", f"longer than {MAX_ID_LENGTH} characters")
    unknown = sorted(set(obj) - COMMAND_FIELDS[kind])
    if unknown:
        raise invalid(
            unknown[0],
            f"unknown field for '{kind}'",
            allowed_fields=sorted(COMMAND_FIELDS[kind]),
        )
    if kind == "ping":
        return Command(kind, mid)
    channels = _channels(obj)
    if kind == "unsubscribe":
        return Command(kind, mid, channels)
    return Command(kind, mid, channels, _filters(obj), _since(obj, channels))


def _channels(obj: dict[str, Any]) -> tuple[str, ...]:
    raw = obj.get("channels")
    if "channels" not in obj:
        raise invalid("channels", "required: a non-empty list of channel names")
    if not isinstance(raw, list):
        raise invalid("channels", f"expected a list of strings, got {_json_type(raw)}")
    if not raw:
        raise invalid("channels", "must not be empty")
    seen: dict[str, None] = {}
    for i, name in enumerate(raw):
        if not isinstance(name, str):
            raise invalid(f"channels[{i}]", f"expected a string, got {_json_type(name)}")
        seen.setdefault(name)
    # Validate every name before anything changes: subscribe is atomic.
    for name in seen:
        if name not in CHANNELS:
            raise invalid_channel(name)
    return tuple(seen)


def _filters(obj: dict[str, Any]) -> dict[str, str]:
    raw = obj.get("filters", {})
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise invalid("filters", f"expected an object, got {_json_type(raw)}")
    for key, value in raw.items():
        if key not in FILTER_KEYS:
            raise invalid(f"filters.{key}", "unknown filter key", valid_filters=list(FILTER_KEYS))
        if not isinstance(value, str):
            raise invalid(f"filters.{key}", f"expected a string, got {_json_type(value)}")
    return dict(raw)


def _since(obj: dict[str, Any], channels: tuple[str, ...]) -> dict[str, str]:
    raw = obj.get("since") or {}  # null means none, as for filters
    if not isinstance(raw, dict):
        raise invalid("since", f"expected an object of channel -> event id, got {_json_type(raw)}")
    for key, value in raw.items():
        if key not in channels:
            raise invalid(f"since.{key}", "not one of the channels of this subscribe")
        if not isinstance(value, str) or parse_event_id(value) is None:
            raise invalid(f"since.{key}", "expected an event id such as 'evt-42'")
    return dict(raw)


def parse_event_id(value: str) -> int | None:
    if not value.startswith("evt-"):
        return None
    digits = value[4:]
    # ASCII digits only: str.isdigit() also takes "²" and fullwidth "１", which int() reads.
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        return None
    return int(digits)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
