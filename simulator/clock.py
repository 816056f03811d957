"""Simulated time: RFC 3339 formatting and parsing, durations, and periodic schedules.

Nothing here reads the wall clock. Simulated time is UNIX seconds (float) that the engine
advances in whole-second ticks; the server reuses `rfc3339` for its envelope timestamps.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from fractions import Fraction

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

# The one bound on every way of setting a start (config, CLI, HTTP API, scenario): from
# the UNIX epoch to 9000-01-01. Far enough from datetime's end (year 9999) that no run
# at any allowed speed reaches it, so every timestamp stays formattable.
EARLIEST_START = 0.0  # 1970-01-01T00:00:00Z
LATEST_START = 221845392000.0  # 9000-01-01T00:00:00Z
START_BOUNDS = "between 1970-01-01T00:00:00Z and 9000-01-01T00:00:00Z"
# No duration anywhere (scenario, fault, --duration, step) is longer than this.
MAX_DURATION = 366 * 86400.0


def rfc3339(t: float) -> str:
    """UTC, whole seconds, `Z` suffix: 1705744800.0 -> "2024-01-20T10:00:00Z"."""
    # Floor, not round: an event at 10:00:00.7 happened within the second 10:00:00.
    return datetime.fromtimestamp(math.floor(t), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def timestamp(t: float) -> str:
    """An event's timestamp: `rfc3339` for a whole second (nearly every event), and with
    milliseconds for a time within one (heartbeats at a rate above one per agent per
    second): "2024-01-20T10:00:00.250Z"."""
    ms = round(t * 1000)
    second, rest = divmod(ms, 1000)
    if rest == 0:
        return rfc3339(second)
    return f"{rfc3339(second)[:-1]}.{rest:03d}Z"


def parse_rfc3339(value: str | datetime) -> float:
    """RFC 3339 text (or a datetime, as YAML hands timestamps over) -> UNIX seconds.

    A value without a UTC offset is taken as UTC: scenarios must not depend on the
    machine's time zone.
    """
    if isinstance(value, datetime):
        dt = value
    else:
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_start(value: str | datetime) -> float:
    """A start time (RFC 3339 text, or `now`'s caller resolves that) -> UNIX seconds,
    floored to whole seconds and within START_BOUNDS; ValueError says what is allowed."""
    try:
        t = parse_rfc3339(value)
    except (ValueError, OverflowError, OSError, TypeError):
        raise ValueError(
            f"expected an RFC 3339 time such as 2024-01-20T10:00:00Z, {START_BOUNDS}"
        ) from None
    if not (math.isfinite(t) and EARLIEST_START <= t <= LATEST_START):
        raise ValueError(f"the start must be {START_BOUNDS}")
    return float(math.floor(t))


def parse_duration(value: object) -> float:
    """ "30s", "2m", "1.5h", "1d", "250ms" or a bare number of seconds -> seconds.

    Raises ValueError with a short reason; the scenario loader adds the field path.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '30s', '2m', '1h', '1d'")
    if isinstance(value, int) and abs(value) > MAX_DURATION:
        raise ValueError("expected a duration of at most 366d")  # before float() overflows
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ValueError("expected a duration such as '30s', '2m', '1h', '1d'")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise ValueError("expected a duration such as '30s', '2m', '1h', '1d'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("expected a finite duration that is not negative")
    if seconds > MAX_DURATION:
        raise ValueError("expected a duration of at most 366d")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, for messages and snapshots."""
    for unit in ("d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


class Periodic:
    """How many times a periodic action is due at each tick, for any interval.

    Kept in exact fractions so that a rate change or an interval of 1/3 s never drifts:
    the count per tick depends only on the tick index and the interval history, which is
    what keeps chunked and single-call runs identical.
    """

    __slots__ = ("_interval", "_next")

    def __init__(self, interval: float, first: int = 0) -> None:
        self._interval = _fraction(interval)
        self._next = Fraction(first)

    @property
    def interval(self) -> float:
        return float(self._interval)

    def set_interval(self, interval: float, tick: int) -> None:
        """Use a new interval from now on: the next occurrence is one new interval after
        the last one, but never before the current tick."""
        new = _fraction(interval)
        last = self._next - self._interval
        self._interval = new
        self._next = max(last + new, Fraction(tick))

    def due(self, tick: int) -> int:
        """Number of occurrences in (previous tick, tick]; advances the schedule."""
        if self._next > tick:
            return 0
        count = int((tick - self._next) // self._interval) + 1
        self._next += count * self._interval
        return count


def _fraction(interval: float) -> Fraction:
    if not interval > 0:
        raise ValueError("interval must be positive")
    # Bounded denominator: 0.1 becomes exactly 1/10, not the binary float's fraction.
    return Fraction(interval).limit_denominator(1_000_000)
