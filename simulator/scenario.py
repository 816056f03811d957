"""Scenarios: the YAML format, declared once; its loader and checks.

A scenario is read with PyYAML's node API so that every value keeps its line. The format
is declared as data (no schema library): for every mapping, its fields and for each field
its type, bounds, choices, default and description (`SCENARIO`, "The format" below).
That one declaration is what the loader checks a file against, and what
simulator/scenario_schema.py turns into the JSON Schema that editors read
(docs/scenario.schema.json), so the two cannot disagree. What involves more than one
field (references between sections, fault targets, an alert's scope against its metric)
is plain code after it ("Cross-field checks"). Every error names the file, the field
path and the line, e.g. ``demo.yaml: experiments[1].target_reduction (line 23): expected
a number between 0 and 1, got 'high'``. docs/scenarios.md documents the format for users.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from simulator.clock import (
    _DURATION,
    MAX_DURATION,
    START_BOUNDS,
    format_duration,
    parse_duration,
    parse_start,
)
from simulator.events import CHANNELS
from simulator.rules import (
    _CONDITION,
    EXPERIMENT_METRICS,
    GLOBAL_METRICS,
    Conditions,
    RuleError,
    parse_conditions,
    scope_of,
)

# Reduction means by template (fraction of data points removed); the original
# platform's documented figures. `baseline` forwards everything.
TEMPLATE_REDUCTION: dict[str, float] = {
    "baseline": 0.0,
    "topk": 0.65,
    "adaptive_filter": 0.70,
    "hybrid": 0.75,
}
DEFAULT_NOISE = 0.03

# Exactly 1/12 USD per million points, so that 1,250,000 mps costs 375.00 USD per hour
# as in the API reference (the reference's rounded figure is 0.0833).
DEFAULT_PRICE_PER_MILLION = 1 / 12

# Close codes a close_connections fault may use (RFC 6455 §7.4; 1005/1006/1015 are never sent).
CLOSE_CODE_RANGES: tuple[tuple[int, int], ...] = (
    (1000, 1001),
    (1008, 1008),
    (1011, 1013),
    (3000, 4999),
)
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")

# Bounds that keep the model's arithmetic finite and a load fast.
MAX_AGENTS = 100_000  # fleet.agents, and agents joining in one fault
MAX_MPS_MEDIAN = 1e7  # per agent; int64 sums stay far from overflow
MAX_PRICE = 1e6  # USD per million points
MAX_RATE_PER_HOUR = 1e6  # churn
MIN_INTERVAL = 0.001  # seconds (1 ms)
MAX_YAML_NODES = 200_000  # distinct YAML nodes in one file
MAX_DELIVERY_FAULT = 3600.0  # seconds: no delivery fault holds the server for longer
MAX_HELD_EVENTS = 100_000  # burst `count`, reorder `window` (the server caps them lower)
MAX_SCENARIO_BYTES = 1 << 20  # a scenario file's size, unless the caller says otherwise
MAX_REPEATS = 100_000  # `times` of a repeating fault
MAX_LABELS = 32  # per group
MAX_GROUPS = 1000
GROUP_PREFIX = "group:"  # a fault's target naming a group of agents
# The moments of an experiment a fault may follow (`after.event`).
EXPERIMENT_MOMENTS = ("created", "started", "completed", "failed", "ended")

# libyaml's parser where PyYAML was built with it (about 10x faster on big files); its
# marks carry the same line numbers as the pure-Python one.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class ScenarioError(Exception):
    """A scenario (or an injected fault) is invalid; str() names the field and line.

    `field` is the field path alone (None when the whole file is at fault) and `problem`
    the message without the file and line, for an HTTP 400 that names the field."""

    def __init__(self, message: str, field: str | None = None, problem: str | None = None):
        super().__init__(message)
        self.field = field
        self.problem = problem if problem is not None else message


@dataclass(frozen=True, slots=True)
class Intervals:
    metrics: float = 10.0
    heartbeat: float = 30.0
    cost: float = 10.0
    progress: float = 30.0


@dataclass(frozen=True, slots=True)
class Churn:
    rate_per_hour: float = 0.0
    downtime: float = 120.0


@dataclass(frozen=True, slots=True)
class Group:
    """Agents that belong together (a service, a region, a zone): the next `agents`
    hosts of the fleet, in order, with labels."""

    name: str
    agents: int
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Fleet:
    agents: int = 150
    hostname_prefix: str = "prod-app"
    versions: tuple[tuple[str, float], ...] = (("1.2.3", 1.0),)
    capabilities: tuple[tuple[str, float], ...] = (
        ("adaptive_filter", 1.0),
        ("topk", 1.0),
        ("hybrid", 1.0),
    )
    mps_median: float = 8000.0
    mps_sigma: float = 0.3
    churn: Churn = field(default_factory=Churn)
    groups: tuple[Group, ...] = ()

    def group_of(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)

    def hostnames(self) -> list[str]:
        width = max(2, len(str(self.agents)))
        return [f"{self.hostname_prefix}-{i + 1:0{width}d}" for i in range(self.agents)]


@dataclass(frozen=True, slots=True)
class Pipeline:
    id: str
    template: str
    reduction: float
    noise: float


@dataclass(frozen=True, slots=True)
class Deployment:
    failure_probability: float = 0.02
    max_failed_fraction: float = 0.2
    seconds_per_agent: float = 3.0
    parallel: int = 1


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    name: str
    baseline: str
    candidate: str
    create_at: float
    start_at: float
    duration: float
    target_reduction: float = 0.6
    max_error_rate: float = 0.01
    max_data_loss: float = 0.01
    group: str | None = None  # its agents are chosen from this group only
    abort_after: float = 60.0
    agents: int = 15
    rollback: bool = True
    deployment: Deployment = field(default_factory=Deployment)
    agent_ids: tuple[str, ...] | None = None  # placed on these agents only (`agents` of them)


@dataclass(frozen=True, slots=True)
class Fault:
    type: str
    at: float  # from the start, or from `after`'s event
    duration: float
    # "global", an experiment's id, an agent's id, "group:<name>", or a list of agent ids
    target: str | tuple[str, ...]
    params: dict[str, Any]
    every: float | None = None  # repeats this often (from its first time)
    times: int | None = None  # this many times in all (None: until the run ends)
    after: tuple[str, str] | None = None  # (experiment id, event): `at` counts from it

    @property
    def delivery(self) -> bool:
        return self.type in DELIVERY_FAULTS


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    condition: str
    metric: str  # the first metric named: the alert's current_value
    op: str
    threshold: float
    for_seconds: float
    severity: str
    scope: str  # "experiments" or "global"
    conditions: Conditions = ()  # the whole condition, `or` of `and`s (rules.holds)


@dataclass(frozen=True, slots=True)
class Traffic:
    """The shape of the fleet's traffic over time (see TRAFFIC for each field)."""

    daily_amplitude: float = 0.2
    peak_hour: float = 14.0
    trend_per_day: float = 0.03
    bursts_per_agent_hour: float = 0.5
    burst_factor: float = 1.6
    burst_duration: float = 90.0
    series_per_mps: float = 0.25
    series_spread: float = 0.35
    headroom: float = 1.8


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    start: float | None
    duration: float | None
    seed: int | None
    intervals: Intervals
    price_per_million_points: float
    fleet: Fleet
    pipelines: tuple[Pipeline, ...]
    experiments: tuple[Experiment, ...]
    faults: tuple[Fault, ...]
    alerts: tuple[AlertRule, ...]
    source: str = "<string>"
    traffic: Traffic = field(default_factory=Traffic)
    price_per_thousand_series: float = 0.0  # USD a month (simulator/cost.py)

    def pipeline(self, pipeline_id: str) -> Pipeline:
        return next(p for p in self.pipelines if p.id == pipeline_id)


# --------------------------------------------------------------------------- loading


def scenarios_dir() -> Path:
    return Path(str(resources.files("simulator") / "scenarios"))


def bundled_scenarios() -> list[tuple[str, str]]:
    """(name, description) of every bundled scenario, sorted by name."""
    out = []
    for path in sorted(scenarios_dir().glob("*.yaml")):
        out.append((path.stem, load_scenario(str(path)).description))
    return out


def load_scenario(name_or_path: str, max_bytes: int = MAX_SCENARIO_BYTES) -> Scenario:
    """A bundled scenario by name (``"demo"``) or a YAML file by path (a regular file of
    at most `max_bytes`)."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml") and "/" not in name_or_path:
        bundled = scenarios_dir() / f"{name_or_path}.yaml"
        if not bundled.is_file():
            names = sorted(p.stem for p in scenarios_dir().glob("*.yaml"))
            raise ScenarioError(
                f"unknown scenario '{excerpt(name_or_path)}'"
                f"{_did_you_mean(name_or_path, names)}; bundled: {', '.join(names)}"
            )
        path = bundled
    return parse_scenario(read_scenario_file(path, max_bytes), source=path.name)


def read_scenario_file(path: Path, max_bytes: int = MAX_SCENARIO_BYTES) -> str:
    """The text of a scenario file. Only a regular file is read, and only up to
    `max_bytes`: a FIFO would block the reader until someone writes to it, and a device
    such as /dev/zero never ends. The checks are made on the opened file, so the path
    cannot be swapped for something else between a check and the read."""
    name = excerpt(path.name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ScenarioError(f"{name}: cannot read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ScenarioError(f"{name}: not a regular file")
        too_big = ScenarioError(
            f"{name}: larger than the limit of {max_bytes} bytes for a scenario file "
            "(simulation.max_scenario_bytes)"
        )
        if info.st_size > max_bytes:
            raise too_big
        chunks, size = [], 0
        while size <= max_bytes:  # the file may have grown since fstat
            chunk = os.read(fd, min(1 << 16, max_bytes + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise too_big
    except OSError as exc:
        raise ScenarioError(f"{name}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{name}: cannot read: not UTF-8 text (byte {exc.start})") from None


def parse_scenario(text: str, source: str = "<string>") -> Scenario:
    """Parse and validate scenario YAML text; `source` prefixes error messages."""
    lines: dict[tuple[Any, ...], int] = {}
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                raise ScenarioError(f"{source}: the file is empty")
            # Before constructing: construction flattens merge keys (`<<`) into the
            # mapping node, which would make an overridden merged key look duplicated.
            _record_lines(node, (), lines, source, set())
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError(f"{source}{where}: invalid YAML: {problem}") from None
    except RecursionError:
        raise ScenarioError(f"{source}: invalid YAML: nested too deeply") from None
    try:
        return _Checker(source, lines).scenario(data)
    except RecursionError:
        raise ScenarioError(f"{source}: nested too deeply (recursive aliases?)") from None


def _record_lines(
    node: yaml.Node,
    path: tuple[Any, ...],
    lines: dict[tuple[Any, ...], int],
    source: str,
    visited: set[int],
) -> None:
    # An alias is the node it names: walk each node once, so recursive aliases end and
    # alias bombs ("billion laughs") cost their size in the file, not their expansion.
    # Paths reached through an alias fall back to the nearest recorded line.
    if id(node) in visited:
        return
    visited.add(id(node))
    if len(visited) > MAX_YAML_NODES:
        raise ScenarioError(f"{source}: too many YAML nodes (more than {MAX_YAML_NODES})")
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[tuple[str, str]] = set()
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                _record_lines(value_node, path + ("<<",), lines, source, visited)
                continue
            key = key_node.value
            # The tag too: `1` (an integer) and `'1'` (a string) are different keys.
            if (key_node.tag, key) in seen:
                where = _path_text(path + (key,))
                raise ScenarioError(
                    f"{source}: {where} (line {key_node.start_mark.line + 1}): duplicate key"
                )
            seen.add((key_node.tag, key))
            # The key's line: that is where a reader looks for the field.
            lines[path + (key,)] = key_node.start_mark.line + 1
            _record_lines(value_node, path + (key,), lines, source, visited)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, path + (i,), lines, source, visited)


# The most of any value or key from the file that a message quotes: a file that is not a
# scenario (a path typed by mistake, or a probe through the admin API) shows no more.
EXCERPT = 40


def excerpt(text: str) -> str:
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "..."


def _path_text(path: tuple[Any, ...]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + excerpt(str(part))
    return out or "(top level)"


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(excerpt(value))
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return excerpt(repr(value))


# --------------------------------------------------------------------------- the format
#
# Each kind of value is a `Spec` with two methods that read the same attributes: `check`
# (at load time: the value as the model wants it, or a ScenarioError naming the field
# and line) and `json_schema` (its JSON Schema, draft 2020-12, for editors). A bound,
# choice or default is written once, in the declaration further down, and both follow it.

Where = tuple[Any, ...]  # a field path: mapping keys and list indexes


def _num(x: float) -> float:
    """A bound or default as JSON shows it best: 1e7 as 10000000, 0.5 as 0.5."""
    if isinstance(x, float) and x.is_integer() and abs(x) < 2**53:
        return int(x)
    return x


def _json(value: Any) -> Any:
    if isinstance(value, float):
        return _num(value)
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value


def _or_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema`, or null (a field whose empty value means its default)."""
    out = dict(schema)
    if isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    elif "anyOf" in out:
        out["anyOf"] = [*out["anyOf"], {"type": "null"}]
    else:
        out = {"anyOf": [schema, {"type": "null"}]}
    return out


class Spec:
    """What one value of a scenario file may be."""

    # Appended to the description of every field of this kind (how to write one).
    hint = ""

    def check(self, checker: _Checker, path: Where, value: Any) -> Any:
        raise NotImplementedError

    def json_schema(self) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True)
class Text(Spec):
    """A string with something in it (not only spaces)."""

    max_length: int | None = None
    too_long: str = ""  # the message for a longer one

    def check(self, checker: _Checker, path: Where, value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise checker.fail(path, f"expected a non-empty string, got {_show(value)}")
        if self.max_length is not None and len(value) > self.max_length:
            raise checker.fail(path, self.too_long)
        return value

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "string", "pattern": r"\S"}
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return out


@dataclass(frozen=True)
class AgentIds(Spec):
    """A list of agent ids, each once (whether they are the fleet's is a cross-field
    check: the fleet is read after)."""

    def check(self, checker: _Checker, path: Where, value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            raise checker.fail(path, f"expected a non-empty list of agent ids, got {_show(value)}")
        if len(value) > MAX_AGENTS:
            raise checker.fail(path, f"expected at most {MAX_AGENTS} agent ids")
        seen: set[str] = set()
        for i, item in enumerate(value):
            agent = Text().check(checker, path + (i,), item)
            if agent in seen:
                raise checker.fail(path + (i,), f"{_show(agent)} is listed twice")
            seen.add(agent)
        return tuple(value)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": Text().json_schema(),
            "minItems": 1,
            "maxItems": MAX_AGENTS,
            "uniqueItems": True,
        }


@dataclass(frozen=True)
class OneOrAgents(Spec):
    """One value of `single`, or a list of agent ids instead."""

    single: Spec
    expect: str  # what `single` takes, for the message when neither fits

    def check(self, checker: _Checker, path: Where, value: Any) -> Any:
        if isinstance(value, list):
            return AgentIds().check(checker, path, value)
        try:
            return self.single.check(checker, path, value)
        except ScenarioError:
            raise checker.fail(
                path, f"expected {self.expect} or a list of agent ids, got {_show(value)}"
            ) from None

    def json_schema(self) -> dict[str, Any]:
        return {"anyOf": [self.single.json_schema(), AgentIds().json_schema()]}


@dataclass(frozen=True)
class Number(Spec):
    """A number from `minimum` to `maximum`, both included; read as a float."""

    minimum: float
    maximum: float
    expect: str = ""  # "expected <expect>, got ..."; by default "a number between ..."

    def check(self, checker: _Checker, path: Where, value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            # An int is compared as it is: a 400-digit one does not fit a float.
            finite = isinstance(value, int) or math.isfinite(value)
            ok = finite and self.minimum <= value <= self.maximum
        if not ok:
            what = self.expect or f"a number between {self.minimum:g} and {self.maximum:g}"
            raise checker.fail(path, f"expected {what}, got {_show(value)}")
        return float(value)

    def json_schema(self) -> dict[str, Any]:
        return {"type": "number", "minimum": _num(self.minimum), "maximum": _num(self.maximum)}


@dataclass(frozen=True)
class Integer(Spec):
    """A whole number (written as one: 3, not 3.0) from `minimum` to `maximum`."""

    minimum: int
    maximum: int | None = None
    expect: str = ""  # by default "an integer >= <minimum>" or "an integer from ... to ..."

    def check(self, checker: _Checker, path: Where, value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= self.minimum
        if not ok or (self.maximum is not None and value > self.maximum):
            what = self.expect or (
                f"an integer >= {self.minimum}"
                if self.maximum is None
                else f"an integer from {self.minimum} to {self.maximum}"
            )
            raise checker.fail(path, f"expected {what}, got {_show(value)}")
        return int(value)

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "integer", "minimum": self.minimum}
        if self.maximum is not None:
            out["maximum"] = self.maximum
        return out


@dataclass(frozen=True)
class Boolean(Spec):
    def check(self, checker: _Checker, path: Where, value: Any) -> bool:
        if not isinstance(value, bool):
            raise checker.fail(path, f"expected true or false, got {_show(value)}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "boolean"}


@dataclass(frozen=True)
class Choice(Spec):
    """One of a few names."""

    choices: tuple[str, ...]
    # A name for what is chosen ("template"): a wrong one is "unknown template 'x'" with
    # the list; without a noun it is "expected <expect>, got 'x'".
    noun: str = ""
    expect: str = ""  # by default "one of a, b, c"

    def check(self, checker: _Checker, path: Where, value: Any) -> str:
        if self.noun:
            Text().check(checker, path, value)
            if value not in self.choices:
                raise checker.fail(
                    path,
                    f"unknown {self.noun} '{excerpt(value)}'"
                    f"{_did_you_mean(value, self.choices)}; known: {', '.join(self.choices)}",
                )
        elif not isinstance(value, str) or value not in self.choices:
            what = self.expect or f"one of {', '.join(self.choices)}"
            hint = _did_you_mean(value, self.choices) if isinstance(value, str) else ""
            raise checker.fail(path, f"expected {what}, got {_show(value)}{hint}")
        return value

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": list(self.choices)}


@dataclass(frozen=True)
class Codes(Spec):
    """An integer within one of a few ranges (both ends included)."""

    ranges: tuple[tuple[int, int], ...]
    noun: str  # "a close code"

    def check(self, checker: _Checker, path: Where, value: Any) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if not ok or not any(lo <= value <= hi for lo, hi in self.ranges):
            parts = [
                str(lo) if lo == hi else f"{lo}, {hi}" if hi == lo + 1 else f"{lo}-{hi}"
                for lo, hi in self.ranges
            ]
            listed = ", ".join(parts[:-1]) + " or " + parts[-1] if len(parts) > 1 else parts[0]
            raise checker.fail(path, f"expected {self.noun} {listed}, got {_show(value)}")
        return int(value)

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "integer",
            "anyOf": [
                {"const": lo} if lo == hi else {"minimum": lo, "maximum": hi}
                for lo, hi in self.ranges
            ],
        }


# The duration parser's own expression (ECMA-262 reads it as Python does), so the schema
# admits exactly the spellings parse_duration does. A positive one has a digit other
# than 0 in its number (the lookahead stops at the unit, which has no digits).
_DURATION_PATTERN = _DURATION.pattern
_POSITIVE_DURATION_PATTERN = "^(?=\\s*[0-9.]*[1-9])" + _DURATION.pattern.removeprefix("^")


@dataclass(frozen=True)
class Duration(Spec):
    """Seconds, or a string with a unit (parse_duration); read as seconds."""

    positive: bool = False
    minimum: float = 0.0
    too_short: str = ""  # the message below `minimum`
    maximum: float = MAX_DURATION
    too_long: str = ""  # the message above `maximum` (parse_duration has its own at 366d)

    hint = "A duration: seconds, or a number with a unit (250ms, 30s, 2m, 1.5h, 1d)."

    def check(self, checker: _Checker, path: Where, value: Any) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise checker.fail(path, f"{exc}, got {_show(value)}") from None
        if self.positive and seconds <= 0:
            raise checker.fail(path, f"expected a positive duration, got {_show(value)}")
        if seconds < self.minimum:
            raise checker.fail(path, f"{self.too_short}, got {_show(value)}")
        if seconds > self.maximum:
            raise checker.fail(path, f"{self.too_long}, got {_show(value)}")
        return seconds

    def json_schema(self) -> dict[str, Any]:
        # A string's value against the bounds is beyond a pattern: the loader checks it.
        number: dict[str, Any] = {"type": "number"}
        if self.minimum > 0:
            number["minimum"] = _num(self.minimum)
        elif self.positive:
            number["exclusiveMinimum"] = 0
        else:
            number["minimum"] = 0
        number["maximum"] = _num(min(self.maximum, MAX_DURATION))
        pattern = _POSITIVE_DURATION_PATTERN if self.positive else _DURATION_PATTERN
        return {"anyOf": [number, {"type": "string", "pattern": pattern}]}


@dataclass(frozen=True)
class Start(Spec):
    """An RFC 3339 time within START_BOUNDS; read as UNIX seconds."""

    hint = "RFC 3339, e.g. 2024-01-20T10:00:00Z; UTC when it has no offset."

    def check(self, checker: _Checker, path: Where, value: Any) -> float:
        try:
            # YAML hands an unquoted timestamp over as a datetime.
            if not isinstance(value, str | datetime):
                raise ValueError(
                    f"expected an RFC 3339 time such as 2024-01-20T10:00:00Z, {START_BOUNDS}"
                )
            return parse_start(value)
        except ValueError as exc:
            raise checker.fail(path, f"{exc}, got {_show(value)}") from None

    def json_schema(self) -> dict[str, Any]:
        # No "format": editors would hold it to RFC 3339 strictly, and the loader also
        # takes a time without an offset (as UTC). The range is the loader's to check.
        return {"type": "string", "examples": ["2024-01-20T10:00:00Z"]}


# rules._CONDITION without its group names (ECMA-262 spells them differently), behind a
# lookahead that admits the known metrics only.
_CONDITION_PATTERN = (
    "^(?=\\s*(?:"
    + "|".join(EXPERIMENT_METRICS + GLOBAL_METRICS)
    + ")(?![A-Za-z0-9_]))"
    + re.sub(r"\(\?P<\w+>", "(", _CONDITION.pattern).removeprefix("^")
)


# Comparisons joined by `and` / `or` (rules.parse_conditions): the comparison pattern
# without its anchors, then any number of joiner + comparison. (The scope rule, one
# kind of metric per condition, and the count are the loader's alone.)
_ONE = _CONDITION_PATTERN.removeprefix("^").removesuffix("$")
_CONDITIONS_PATTERN = f"^{_ONE}(?:\\s+(?:and|or)\\s+{_ONE})*$"


@dataclass(frozen=True)
class Condition(Spec):
    """An alert condition: `<metric> <op> <number>`, or several joined by `and` / `or`
    (rules.parse_conditions)."""

    def check(self, checker: _Checker, path: Where, value: Any) -> str:
        text = Text().check(checker, path, value)
        try:
            parse_conditions(text)
        except RuleError as exc:
            raise checker.fail(path, str(exc)) from None
        return text

    def json_schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": _CONDITIONS_PATTERN}


@dataclass(frozen=True)
class Labels(Spec):
    """A mapping of label name -> text, e.g. {service: checkout, region: eu-west-1}."""

    def check(self, checker: _Checker, path: Where, value: Any) -> tuple[tuple[str, str], ...]:
        if not isinstance(value, dict):
            raise checker.fail(path, f"expected a mapping of label -> text, got {_show(value)}")
        if len(value) > MAX_LABELS:
            raise checker.fail(path, f"at most {MAX_LABELS} labels")
        text = Text(64, "expected at most 64 characters")
        return tuple(
            (text.check(checker, path + (k,), str(k)), text.check(checker, path + (k,), v))
            for k, v in value.items()
        )

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "maxProperties": MAX_LABELS,
            "additionalProperties": {"type": "string", "pattern": r"\S", "maxLength": 64},
        }


@dataclass(frozen=True)
class Weights(Spec):
    """A list of names (all alike) or a mapping name -> weight from 0 to 1."""

    name: Text | Choice = Text()
    weight: Number = Number(0.0, 1.0)
    weight_doc: str = ""  # what one weight is (shown for each name a Choice allows)

    def check(self, checker: _Checker, path: Where, value: Any) -> tuple[tuple[str, float], ...]:
        if isinstance(value, list | dict) and not value:
            raise checker.fail(path, "expected at least one entry")
        if isinstance(value, list):
            return tuple(
                (self.name.check(checker, path + (i,), v), 1.0) for i, v in enumerate(value)
            )
        if isinstance(value, dict):
            return tuple(
                (
                    self.name.check(checker, path + (k,), str(k)),
                    self.weight.check(checker, path + (k,), v),
                )
                for k, v in value.items()
            )
        raise checker.fail(path, f"expected a list or a mapping, got {_show(value)}")

    def json_schema(self) -> dict[str, Any]:
        listed = {"type": "array", "minItems": 1, "items": self.name.json_schema()}
        mapped: dict[str, Any] = {"type": "object", "minProperties": 1}
        if isinstance(self.name, Choice):
            # Named properties: an editor completes them.
            mapped["properties"] = {
                c: {"description": self.weight_doc, **self.weight.json_schema()}
                for c in self.name.choices
            }
            mapped["additionalProperties"] = False
        else:
            mapped["propertyNames"] = self.name.json_schema()
            mapped["additionalProperties"] = self.weight.json_schema()
        return {"anyOf": [listed, mapped]}


@dataclass(frozen=True)
class Field:
    """One key of a mapping."""

    spec: Spec
    doc: str
    required: bool = False
    # What an absent field means, written as in a file (and checked like one). None:
    # nothing, or what the cross-field code works out (`doc` says what).
    default: Any = None
    nullable: bool = False  # an empty value (`fleet:`) means the default

    def json_schema(self) -> dict[str, Any]:
        doc = f"{self.doc} {self.spec.hint}" if self.spec.hint else self.doc
        out = {"description": doc, **self.spec.json_schema()}
        if self.nullable:
            out = _or_null(out)
        if self.default is not None:
            out["default"] = _json(self.default)
        return out


class Values(dict[str, Any]):
    """A checked mapping: every field, absent ones at their default (or None); `given`
    names the fields the file set."""

    given: frozenset[str] = frozenset()


def _keys(
    checker: _Checker,
    path: Where,
    value: Any,
    allowed: Collection[str],
    required: Iterable[str],
    noun: str,
) -> dict[Any, Any]:
    if not isinstance(value, dict):
        raise checker.fail(path, f"expected a mapping, got {_show(value)}")
    for key in value:
        if not isinstance(key, str) or key not in allowed:
            raise checker.fail(
                path + (key,),
                f"unknown {noun}{_did_you_mean(str(key), allowed)}; "
                f"allowed: {', '.join(sorted(allowed)) or 'none'}",
            )
    for key in required:
        if key not in value:
            raise checker.fail(path, f"missing required {noun} '{key}'")
    return value


@dataclass(frozen=True)
class Mapping(Spec):
    """Named fields, no others."""

    fields: dict[str, Field]
    noun: str = "field"

    def check(self, checker: _Checker, path: Where, value: Any, fill: bool = True) -> Values:
        """The checked fields; with `fill`, absent ones too, at their defaults."""
        required = [name for name, f in self.fields.items() if f.required]
        given = _keys(checker, path, value, self.fields, required, self.noun)
        out = Values()
        for name, f in self.fields.items():
            v = given.get(name)
            if name in given and not (v is None and f.nullable):
                out[name] = f.spec.check(checker, path + (name,), v)
            elif fill:
                d = f.default
                out[name] = None if d is None else f.spec.check(checker, path + (name,), d)
        out.given = frozenset(given)
        return out

    def json_schema(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "object",
            "properties": {name: f.json_schema() for name, f in self.fields.items()},
        }
        required = [name for name, f in self.fields.items() if f.required]
        if required:
            out["required"] = required
        out["additionalProperties"] = False
        return out


@dataclass(frozen=True)
class ListOf(Spec):
    item: Spec

    def check(self, checker: _Checker, path: Where, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise checker.fail(path, f"expected a list, got {_show(value)}")
        return [self.item.check(checker, path + (i,), v) for i, v in enumerate(value)]

    def json_schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.json_schema()}


# What a fault may aim at, by type.
Target = Literal["none", "global", "global or experiment", "experiment", "global or agent"]
# Faults that may hit a set of agents (`target: group:<name>`, or a list of agent ids):
# their rates, their series, or some of them leaving.
GROUP_FAULTS = frozenset({"sudden_drop", "spike", "cardinality_explosion", "agents_leave"})

TARGET_DOCS: dict[str, str] = {
    "global": "Only `global` (the default): the whole fleet.",
    "global or experiment": (
        "An experiment id; an agent id, `group:<name>` (a group of fleet.groups) or a "
        "list of agent ids (none of these for error_surge); or `global` (the default): "
        "the whole fleet."
    ),
    "experiment": "The id of the experiment.",
    "global or agent": (
        "`global` (the default): agents drawn at random; `group:<name>`: drawn from that "
        "group of fleet.groups; one agent's id, such as agent-prod-app-001 "
        "(`agent-<hostname>`); or a list of agent ids: those of them online."
    ),
}


@dataclass(frozen=True)
class FaultType:
    doc: str
    params: dict[str, Field]
    delivery: bool = False  # the server carries it out; otherwise it changes the model
    target: Target = "global"
    needs_duration: bool = False

    @property
    def parameters(self) -> Mapping:
        return Mapping(self.params, noun="parameter")

    @property
    def duration(self) -> Duration:
        if not self.delivery:
            return Duration(positive=self.needs_duration)
        return Duration(
            positive=self.needs_duration,
            maximum=MAX_DELIVERY_FAULT,
            too_long=f"a delivery fault lasts at most {format_duration(MAX_DELIVERY_FAULT)}",
        )

    def defaults(self) -> dict[str, Any]:
        return {name: f.default for name, f in self.params.items()}


def _ramp(default: float) -> Field:
    return Field(Duration(), "Time to reach the full factor, and to leave it.", default=default)


def _variant() -> Field:
    return Field(
        Choice(("baseline", "candidate"), expect="'baseline' or 'candidate'"),
        "Which variant of the target experiment it hits (a global target: every agent).",
        default="candidate",
    )


def _agent_count(doc: str) -> Field:
    spec = Integer(0, MAX_AGENTS, f"a number of agents from 0 to {MAX_AGENTS}")
    return Field(spec, doc, default=1)


def _held(lo: int) -> Integer:
    return Integer(lo, MAX_HELD_EVENTS, f"a number of events from {lo} to {MAX_HELD_EVENTS}")


_DELAY = Number(0.0, 600_000.0, "milliseconds between 0 and 600000")
_PER_SECOND = "a rate > 0"
_LIMIT = Integer(1, expect="a whole number >= 1")

# Every fault type: its parameters (with their defaults) and what it takes. Simulation
# faults first, then delivery faults, which phoenix/faults.py carries out.
FAULT_TYPES: dict[str, FaultType] = {
    "sudden_drop": FaultType(
        "The variant's rate (or every agent's rate) times `factor`.",
        {
            "factor": Field(
                Number(0.0, 1.0, "a factor between 0 and 1"), "Rate multiplier.", default=0.3
            ),
            "ramp": _ramp(5.0),
            "variant": _variant(),
        },
        target="global or experiment",
        needs_duration=True,
    ),
    "spike": FaultType(
        "The variant's rate (or every agent's rate) times `factor`.",
        {
            "factor": Field(
                Number(1.0, 1000.0, "a factor between 1 and 1000"), "Rate multiplier.", default=3.0
            ),
            "ramp": _ramp(20.0),
            "variant": _variant(),
        },
        target="global or experiment",
        needs_duration=True,
    ),
    "cardinality_explosion": FaultType(
        "Series grow to `factor` times over `ramp`.",
        {
            "factor": Field(
                Number(1.0, 1000.0, "a factor between 1 and 1000"),
                "Series multiplier.",
                default=5.0,
            ),
            "ramp": _ramp(60.0),
            "variant": _variant(),
        },
        target="global or experiment",
        needs_duration=True,
    ),
    "error_surge": FaultType(
        "The error rate of the variant (the candidate's is the experiment's `error_rate`, "
        "the one it is judged on; the baseline's is `baseline_error_rate`) jumps to "
        "`error_rate`.",
        {
            "error_rate": Field(Number(0.0, 1.0), "The error rate while it lasts.", default=0.02),
            "variant": _variant(),
        },
        target="global or experiment",
        needs_duration=True,
    ),
    "agents_leave": FaultType(
        "`count` random agents (or `fraction` of the online fleet), from the target group "
        "if one is given, or the target agents that are online, disconnect; they come "
        "back after `duration` (never without one).",
        {
            "count": _agent_count("How many agents leave."),
            "fraction": Field(
                Number(0.0, 1.0),
                "Share of the online fleet that leaves (instead of count).",
                default=0.0,
            ),
        },
        target="global or agent",
    ),
    "agent_churn": FaultType(
        "Extra churn while it lasts.",
        {
            "rate_per_hour": Field(
                Number(0.0, MAX_RATE_PER_HOUR, f"a rate between 0 and {MAX_RATE_PER_HOUR:g}"),
                "Agents leaving per hour, fleet-wide.",
                default=60.0,
            ),
            "downtime": Field(Duration(), "Mean time away.", default=120.0),
        },
        needs_duration=True,
    ),
    "agents_join": FaultType(
        f"New hosts join the fleet for good (it never grows past {MAX_AGENTS} agents).",
        {"count": _agent_count("How many agents join.")},
    ),
    "cancel": FaultType("Cancels the target experiment.", {}, target="experiment"),
    "close_connections": FaultType(
        "Close a seeded share of the connections (of one user, or one channel's "
        "subscribers) with `code`, or drop them with no close frame.",
        {
            "share": Field(Number(0.0, 1.0), "Share of the connections closed.", default=1.0),
            "user": Field(
                Text(256, "expected a user (a token's sub) of at most 256 characters"),
                "Only this user's connections (a token's sub).",
            ),
            "channel": Field(Choice(CHANNELS), "Only the subscribers of this channel."),
            "code": Field(
                Codes(CLOSE_CODE_RANGES, "a close code"), "WebSocket close code.", default=1001
            ),
            "abrupt": Field(Boolean(), "Drop the connections with no close frame.", default=False),
        },
        delivery=True,
        target="none",
    ),
    "latency": FaultType(
        "Every frame is held that long before sending (order kept).",
        {
            "delay_ms": Field(_DELAY, "Mean delay, in milliseconds.", default=200.0),
            "jitter_ms": Field(_DELAY, "Spread of the delay, in milliseconds.", default=50.0),
            "distribution": Field(
                Choice(
                    ("normal", "uniform", "exponential"), expect="normal, uniform or exponential"
                ),
                "Distribution of the delay.",
                default="normal",
            ),
        },
        delivery=True,
        target="none",
        needs_duration=True,
    ),
    "burst": FaultType(
        "Hold events until `count` have gathered, then deliver them at once.",
        {"count": Field(_held(1), "Events held before a burst.", default=100)},
        delivery=True,
        target="none",
    ),
    "duplicate": FaultType(
        "Deliver events twice (same id).",
        {
            "probability": Field(
                Number(0.0, 1.0), "Chance that an event is sent twice.", default=0.1
            )
        },
        delivery=True,
        target="none",
        needs_duration=True,
    ),
    "reorder": FaultType(
        "Shuffle events within windows of `window` events.",
        {"window": Field(_held(2), "Events per shuffled window.", default=5)},
        delivery=True,
        target="none",
        needs_duration=True,
    ),
    "pause_delivery": FaultType(
        "Hold every event, then flood them in order at the end.",
        {},
        delivery=True,
        target="none",
        needs_duration=True,
    ),
    "token_expiry_storm": FaultType(
        "Close a share of the connections as expired (4001); while it lasts, tokens issued "
        "before it are refused as expired.",
        {"share": Field(Number(0.0, 1.0), "Share of the connections closed.", default=1.0)},
        delivery=True,
        target="none",
    ),
    "rate_limit_squeeze": FaultType(
        "Lower the limits for a while.",
        {
            "messages_per_second": Field(
                Number(0.001, 1_000_000.0, _PER_SECOND), "Commands per second.", default=5
            ),
            "channels_per_connection": Field(_LIMIT, "Channels one connection may subscribe to."),
            "connections_per_user": Field(_LIMIT, "Connections one user may hold."),
        },
        delivery=True,
        target="none",
        needs_duration=True,
    ),
    "server_restart": FaultType(
        "Close everyone with 1012 and refuse /ws with 503 until it ends (`duration` is "
        "the downtime).",
        {},
        delivery=True,
        target="none",
        needs_duration=True,
    ),
}

# Faults that change the model and faults the server acts on, with their parameters'
# defaults (phoenix/faults.py reads DELIVERY_FAULTS).
SIM_FAULTS: dict[str, dict[str, Any]] = {
    name: kind.defaults() for name, kind in FAULT_TYPES.items() if not kind.delivery
}
DELIVERY_FAULTS: dict[str, dict[str, Any]] = {
    name: kind.defaults() for name, kind in FAULT_TYPES.items() if kind.delivery
}

FAULT_FIELDS: dict[str, Field] = {
    "at": Field(Duration(), "When it happens: an offset from the start of the run.", required=True),
    "type": Field(
        Choice(tuple(sorted(FAULT_TYPES)), noun="fault type"),
        "What goes wrong. Simulation faults change the model: "
        + ", ".join(n for n, k in FAULT_TYPES.items() if not k.delivery)
        + ". Delivery faults are carried out by the server: "
        + ", ".join(n for n, k in FAULT_TYPES.items() if k.delivery)
        + ".",
        required=True,
    ),
    "duration": Field(
        Duration(),
        "How long it lasts. Some types need one; a delivery fault lasts at most "
        f"{format_duration(MAX_DELIVERY_FAULT)}.",
        default=0,
    ),
    "target": Field(
        OneOrAgents(Text(), "a non-empty string"),
        "What it hits, by type: an experiment id, an agent id, `group:<name>`, a list of "
        "agent ids, or global. Delivery faults take none.",
    ),
    "params": Field(Mapping({}), "The type's parameters (each has a default).", nullable=True),
    "every": Field(
        Duration(positive=True, minimum=1.0, too_short="expected at least 1s"),
        "Repeat the fault this often, from its first time (a fault with a duration "
        "longer than this overlaps itself). Until the run ends, or `times` times.",
        nullable=True,
    ),
    "times": Field(
        Integer(1, MAX_REPEATS, f"a count from 1 to {MAX_REPEATS}"),
        "With `every`: how many times in all.",
        nullable=True,
    ),
    "after": Field(
        Mapping(
            {
                "experiment": Field(
                    Text(), "The experiment whose event starts the clock.", required=True
                ),
                "event": Field(
                    Choice(EXPERIMENT_MOMENTS, noun="experiment event"),
                    "Which moment of it: created, started (running), completed, failed, "
                    "or ended (completed or failed).",
                    default="started",
                ),
            }
        ),
        "Count `at` from a moment of an experiment instead of from the start: "
        "`{experiment: exp-790, event: started}` with `at: 2m` is two minutes after "
        "exp-790 starts running. If that never happens, neither does the fault.",
        nullable=True,
    ),
}


@dataclass(frozen=True)
class FaultSpec(Spec):
    """A fault: common fields, then what its `type` takes (FAULT_TYPES)."""

    scheduled: bool = True  # in a scenario's schedule (with `at`), not injected now

    def check(self, checker: _Checker, path: Where, value: Any) -> dict[str, Any]:
        required = ("type", "at") if self.scheduled else ("type",)
        m = _keys(checker, path, value, FAULT_FIELDS, required, "field")
        if not self.scheduled and "at" in m:
            raise checker.fail(path + ("at",), "an injected fault happens now: remove 'at'")
        ftype = FAULT_FIELDS["type"].spec.check(checker, path + ("type",), m["type"])
        kind = FAULT_TYPES[ftype]
        at = (
            FAULT_FIELDS["at"].spec.check(checker, path + ("at",), m["at"])
            if self.scheduled
            else 0.0
        )
        duration = 0.0
        if "duration" in m:
            duration = kind.duration.check(checker, path + ("duration",), m["duration"])
        elif kind.needs_duration:
            raise checker.fail(path + ("duration",), f"a fault of type '{ftype}' needs a duration")
        target = None
        if "target" in m:
            if kind.target == "none":
                raise checker.fail(path + ("target",), f"a '{ftype}' fault has no target")
            target = FAULT_FIELDS["target"].spec.check(checker, path + ("target",), m["target"])
        elif kind.target == "experiment":
            raise checker.fail(
                path + ("target",), f"a fault of type '{ftype}' needs a target (an experiment id)"
            )
        given = m.get("params")
        params = kind.parameters.check(
            checker, path + ("params",), {} if given is None else given, fill=False
        )
        repeat: dict[str, Any] = {}
        for key in ("every", "times", "after"):
            if m.get(key) is None:
                continue
            if not self.scheduled:
                raise checker.fail(path + (key,), f"an injected fault happens now: remove '{key}'")
            repeat[key] = FAULT_FIELDS[key].spec.check(checker, path + (key,), m[key])
        if "times" in repeat and "every" not in repeat:
            raise checker.fail(path + ("times",), "'times' repeats a fault: give 'every' too")
        # The defaults as they are (not read through their specs): the server and the
        # events show them as written in FAULT_TYPES.
        return {
            "type": ftype,
            "at": at,
            "duration": duration,
            "target": target,
            "params": {**kind.defaults(), **params},
            **repeat,
        }

    def json_schema(self) -> dict[str, Any]:
        properties = {name: f.json_schema() for name, f in FAULT_FIELDS.items()}
        # Which parameters are allowed depends on the type: the branches below say.
        properties["params"] = {
            "description": FAULT_FIELDS["params"].doc,
            "type": ["object", "null"],
        }
        if not self.scheduled:
            for key in ("at", "every", "times", "after"):
                del properties[key]
        branches = []
        for name, kind in FAULT_TYPES.items():
            then: dict[str, Any] = {
                "params": {
                    "description": kind.doc + (" Needs a duration." if kind.needs_duration else ""),
                    **_or_null(kind.parameters.json_schema()),
                }
            }
            if kind.duration != FAULT_FIELDS["duration"].spec:
                then["duration"] = kind.duration.json_schema()
            if kind.target == "none":
                then["target"] = False
            elif kind.target == "global":
                then["target"] = {"description": TARGET_DOCS["global"], "const": "global"}
            else:
                then["target"] = {"description": TARGET_DOCS[kind.target]}
                if name not in GROUP_FAULTS:  # one name, never a list of agents
                    then["target"]["type"] = "string"
                if kind.target != "experiment":
                    then["target"]["default"] = "global"
            needs = ["duration"] if kind.needs_duration else []
            if kind.target == "experiment":
                needs.append("target")
            branch: dict[str, Any] = {"properties": then}
            if needs:
                branch["required"] = needs
            branches.append(
                {
                    "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
                    "then": branch,
                }
            )
        return {
            "type": "object",
            "properties": properties,
            "required": ["at", "type"] if self.scheduled else ["type"],
            "additionalProperties": False,
            "allOf": branches,
        }


FAULT = FaultSpec()
INJECTED_FAULT = FaultSpec(scheduled=False)

_PER_TICK = "expected an interval of at least 1s (one per tick)"

INTERVALS = Mapping(
    {
        "metrics": Field(
            Duration(positive=True, minimum=1.0, too_short=_PER_TICK),
            "How often `metrics.update` is emitted (anomaly detection and alert rules run "
            "on each sample); at least 1s.",
            default="10s",
        ),
        "heartbeat": Field(
            Duration(
                positive=True,
                minimum=MIN_INTERVAL,
                too_short="expected an interval of at least 1ms",
            ),
            "How often each agent sends `agent.heartbeat`, spread evenly over the "
            "interval; at least 1ms.",
            default="30s",
        ),
        "cost": Field(
            Duration(positive=True, minimum=1.0, too_short=_PER_TICK),
            "How often `cost.update` is emitted; at least 1s.",
            default="10s",
        ),
        "progress": Field(
            Duration(positive=True, minimum=1.0, too_short=_PER_TICK),
            "How often `experiment.updated` is emitted while an experiment runs; at least 1s.",
            default="30s",
        ),
    }
)

_CAPABILITIES = tuple(t for t in TEMPLATE_REDUCTION if t != "baseline")

FLEET = Mapping(
    {
        "agents": Field(
            Integer(1, MAX_AGENTS, f"a number of agents from 1 to {MAX_AGENTS}"),
            "Number of agents at the start. Their ids are `agent-<hostname>`.",
            default=150,
        ),
        "hostname_prefix": Field(
            Text(), "Hostnames are `<prefix>-001`, `<prefix>-002`, ...", default="prod-app"
        ),
        "versions": Field(
            Weights(),
            "Agent versions: a list (equally likely) or a mapping version -> weight.",
            default=["1.2.3"],
        ),
        "capabilities": Field(
            Weights(
                Choice(_CAPABILITIES, noun="capability"),
                weight_doc="Probability that an agent can run this template.",
            ),
            "Templates the agents can run: a list (every agent has them) or a mapping "
            "template -> probability that an agent has it. An agent runs a pipeline only "
            "if it has the pipeline's template.",
            default=["adaptive_filter", "topk", "hybrid"],
        ),
        "mps": Field(
            Mapping(
                {
                    "median": Field(
                        Number(1.0, MAX_MPS_MEDIAN, f"a rate between 1 and {MAX_MPS_MEDIAN:g}"),
                        "Median metrics per second per agent.",
                        default=8000,
                    ),
                    "sigma": Field(
                        Number(0.0, 3.0),
                        "Spread of the lognormal (0: every agent alike).",
                        default=0.3,
                    ),
                }
            ),
            "Metrics per second per agent (lognormal).",
            default={},
        ),
        "groups": Field(
            ListOf(
                Mapping(
                    {
                        "name": Field(
                            Text(64, "expected at most 64 characters"),
                            "The group's name; faults target it as `group:<name>`, "
                            "experiments with `group: <name>`.",
                            required=True,
                        ),
                        "agents": Field(
                            Integer(1, MAX_AGENTS, f"a number of agents from 1 to {MAX_AGENTS}"),
                            "How many hosts: the next ones of the fleet, in order.",
                            required=True,
                        ),
                        "labels": Field(
                            Labels(),
                            "Labels shown with its agents, e.g. {service: checkout, "
                            "region: eu-west-1}.",
                            default={},
                        ),
                    }
                )
            ),
            "Agents that belong together (a service, a region, a zone), in order: the "
            "first group is the first hosts. Agents after the last group belong to none.",
            default=[],
            nullable=True,
        ),
        "churn": Field(
            Mapping(
                {
                    "rate_per_hour": Field(
                        Number(
                            0.0, MAX_RATE_PER_HOUR, f"a rate between 0 and {MAX_RATE_PER_HOUR:g}"
                        ),
                        "Agents leaving per hour, fleet-wide (Poisson).",
                        default=0,
                    ),
                    "downtime": Field(
                        Duration(positive=True),
                        "Mean time away (exponential, at least 10s); they come back.",
                        default="2m",
                    ),
                }
            ),
            "Agents leaving and coming back all the time.",
            default={},
        ),
    }
)

PIPELINE = Mapping(
    {
        "id": Field(Text(), "The id experiments refer to.", required=True),
        "template": Field(
            Choice(tuple(TEMPLATE_REDUCTION), noun="template"),
            "What the pipeline does to the data points.",
            required=True,
        ),
        "reduction": Field(
            Number(0.0, 0.99),
            "Mean fraction of points removed. Default by template: "
            + ", ".join(f"{t} {r:g}" for t, r in TEMPLATE_REDUCTION.items())
            + ".",
        ),
        "noise": Field(
            Number(0.0, 0.5),
            f"Spread of that fraction between experiments (default {DEFAULT_NOISE:g}; 0 for "
            "baseline).",
        ),
    }
)

DEPLOYMENT = Mapping(
    {
        "failure_probability": Field(
            Number(0.0, 1.0), "Chance that the deployment to one agent fails.", default=0.02
        ),
        "max_failed_fraction": Field(
            Number(0.0, 1.0),
            "A deployment with a larger share of failed agents fails, and the experiment too.",
            default=0.2,
        ),
        "seconds_per_agent": Field(
            Duration(positive=True), "Time to deploy to one agent.", default="3s"
        ),
        "parallel": Field(Integer(1), "Agents deployed to at once.", default=1),
    }
)

EXPERIMENT = Mapping(
    {
        "id": Field(Text(), "The experiment's id (faults and events name it).", required=True),
        "name": Field(Text(), "Display name (default: the id)."),
        "baseline": Field(Text(), "The id of the baseline pipeline.", required=True),
        "candidate": Field(Text(), "The id of the candidate pipeline.", required=True),
        "create_at": Field(
            Duration(), "When `experiment.created` happens: an offset from the start.", default=0
        ),
        "start_at": Field(
            Duration(),
            "When it starts (initializing, then deploying): an offset from the start, not "
            "before create_at (the default).",
        ),
        "duration": Field(Duration(positive=True), "Time spent running.", required=True),
        "target_reduction": Field(
            Number(0.0, 1.0), "The candidate wins with at least this mean reduction.", default=0.6
        ),
        "max_error_rate": Field(
            Number(0.0, 1.0),
            "The candidate wins with at most this mean error rate; above it for abort_after, "
            "the experiment fails.",
            default=0.01,
        ),
        "group": Field(
            Text(),
            "Choose the experiment's agents from this group of the fleet only.",
            nullable=True,
        ),
        "max_data_loss": Field(
            Number(0.0, 1.0),
            "The candidate wins with at most this mean share of its points lost (a "
            "sudden_drop on it is data loss, not reduction); above it for abort_after, the "
            "experiment fails. The original platform's criterion.",
            default=0.01,
        ),
        "abort_after": Field(
            Duration(),
            "How long the error rate (or the data loss) may stay above its limit.",
            default="60s",
        ),
        "agents": Field(
            OneOrAgents(Integer(1, MAX_AGENTS), f"a number of agents from 1 to {MAX_AGENTS}"),
            "Agents both variants are deployed to: how many (at most the fleet's), chosen "
            "among those that can run both pipelines, or a list of agent ids (those of "
            "them that can).",
            default=15,
        ),
        "rollback": Field(Boolean(), "Roll back when the experiment fails.", default=True),
        "deployment": Field(DEPLOYMENT, "How the variants are deployed.", default={}),
    }
)

ALERT = Mapping(
    {
        "name": Field(Text(), "The alert's name.", required=True),
        "condition": Field(
            Condition(),
            "`<metric> <op> <number>`, e.g. `error_rate > 0.01`. Per-experiment metrics: "
            + ", ".join(EXPERIMENT_METRICS)
            + "; global metrics: "
            + ", ".join(GLOBAL_METRICS)
            + ". Operators: > >= < <= == !=.",
            required=True,
        ),
        "for": Field(Duration(), "How long the condition holds before the alert fires.", default=0),
        "severity": Field(Choice(SEVERITIES), "The alert's severity.", default="warning"),
        "scope": Field(
            Choice(("experiments", "global")),
            "Follows from the metric; if given, it must agree with it.",
        ),
    }
)

TRAFFIC = Mapping(
    {
        "daily_amplitude": Field(
            Number(0.0, 0.9, "a fraction between 0 and 0.9"),
            "How far the fleet's rate swings over a day, as a fraction of its mean: 0.2 is "
            "20% above at the peak hour and 20% below twelve hours later.",
            default=0.2,
        ),
        "peak_hour": Field(
            Number(0.0, 24.0, "an hour between 0 and 24 (UTC)"),
            "Hour of the day (UTC, simulated time) when traffic peaks.",
            default=14.0,
        ),
        "trend_per_day": Field(
            Number(-0.5, 0.5, "a fraction between -0.5 and 0.5"),
            "Growth of the fleet's rate per simulated day (0.03: 3% a day), counted from "
            "the start.",
            default=0.03,
        ),
        "bursts_per_agent_hour": Field(
            Number(0.0, 60.0, "a rate between 0 and 60"),
            "How often an agent's traffic bursts (a batch job, a retry storm), per agent and hour.",
            default=0.5,
        ),
        "burst_factor": Field(
            Number(1.0, 10.0, "a factor between 1 and 10"),
            "An agent's rate times this during a burst.",
            default=1.6,
        ),
        "burst_duration": Field(Duration(positive=True), "How long a burst lasts.", default=90.0),
        "series_per_mps": Field(
            Number(0.001, 100.0, "a ratio between 0.001 and 100"),
            "Active series per data point per second, on average over the fleet.",
            default=0.25,
        ),
        "series_spread": Field(
            Number(0.0, 2.0, "a spread between 0 and 2"),
            "How much that ratio differs between agents (the sigma of a log-normal).",
            default=0.35,
        ),
        "headroom": Field(
            Number(1.05, 10.0, "a factor between 1.05 and 10"),
            "An agent's capacity over its usual rate, on average: CPU and memory follow the "
            "load against it, so a burst at a peak hour makes a small agent `degraded` "
            "(CPU over 85% or memory over 90%) or `unhealthy` (over 97%).",
            default=1.8,
        ),
    }
)

SCENARIO = Mapping(
    {
        "name": Field(Text(), "Short name.", required=True),
        "description": Field(Text(), "Shown in scenario lists."),
        "start": Field(
            Start(),
            "When the run starts, between 1970-01-01 and 9000-01-01. Without it the caller "
            "gives a start (the server uses now).",
            nullable=True,
        ),
        "duration": Field(
            Duration(positive=True),
            "The run stops advancing after this long (default: it runs forever).",
            nullable=True,
        ),
        "seed": Field(
            Integer(0, expect="a seed (an integer >= 0)"),
            "Default seed (0 when absent); the caller may override it.",
            nullable=True,
        ),
        "intervals": Field(
            INTERVALS, "How often periodic events are emitted.", default={}, nullable=True
        ),
        "price_per_million_points": Field(
            Number(0.0, MAX_PRICE, f"a price in USD between 0 and {MAX_PRICE:g}"),
            "USD per million data points ingested.",
            default=DEFAULT_PRICE_PER_MILLION,
        ),
        "price_per_thousand_series": Field(
            Number(0.0, MAX_PRICE, f"a price in USD between 0 and {MAX_PRICE:g}"),
            "USD per 1,000 active series a month (720 hours), on top of the points: "
            "cost then follows cardinality, so an explosion costs money and fixing it "
            "saves some. 0 (the default): points alone, as in the API reference.",
            default=0.0,
        ),
        "fleet": Field(FLEET, "The agents.", default={}, nullable=True),
        "pipelines": Field(
            ListOf(PIPELINE), "Pipelines experiments can compare.", default=[], nullable=True
        ),
        "experiments": Field(
            ListOf(EXPERIMENT), "A/B experiments of two pipelines.", default=[], nullable=True
        ),
        "faults": Field(
            ListOf(FAULT), "Things that go wrong, at given times.", default=[], nullable=True
        ),
        "alerts": Field(ListOf(ALERT), "Alert rules.", default=[], nullable=True),
        "traffic": Field(
            TRAFFIC,
            "The shape of the traffic over time: a daily cycle, a trend, bursts, series "
            "per point and the agents' headroom.",
            default={},
            nullable=True,
        ),
    }
)


# --------------------------------------------------------------------------- cross-field checks


class _Checker:
    """Checks the plain data that YAML produced against `SCENARIO`, then what involves
    more than one field, with the recorded lines at hand."""

    def __init__(self, source: str, lines: dict[tuple[Any, ...], int]) -> None:
        self.source = source
        self.lines = lines

    def fail(self, path: tuple[Any, ...], message: str) -> ScenarioError:
        probe = path
        while probe and probe not in self.lines:
            probe = probe[:-1]
        line = self.lines.get(probe)
        where = f" (line {line})" if line is not None else ""
        field = _path_text(path) if path else None
        return ScenarioError(f"{self.source}: {_path_text(path)}{where}: {message}", field, message)

    def scenario(self, data: Any) -> Scenario:
        top = SCENARIO.check(self, (), data)
        f = top["fleet"]
        fleet = Fleet(
            agents=f["agents"],
            hostname_prefix=f["hostname_prefix"],
            versions=f["versions"],
            capabilities=f["capabilities"],
            mps_median=f["mps"]["median"],
            mps_sigma=f["mps"]["sigma"],
            churn=Churn(**f["churn"]),
            groups=self.groups(f["groups"], f["agents"]),
        )
        pipelines = self.pipelines(top["pipelines"])
        experiments = self.experiments(top["experiments"], pipelines, fleet)
        faults = tuple(
            self.fault(("faults", i), fault, experiments, fleet)
            for i, fault in enumerate(top["faults"])
        )
        alerts = tuple(self.alert(("alerts", i), a) for i, a in enumerate(top["alerts"]))
        return Scenario(
            name=top["name"],
            description=" ".join((top["description"] or "").split()),
            start=top["start"],
            duration=top["duration"],
            seed=top["seed"],
            intervals=Intervals(**top["intervals"]),
            price_per_million_points=top["price_per_million_points"],
            fleet=fleet,
            pipelines=pipelines,
            experiments=experiments,
            faults=tuple(sorted(faults, key=lambda fault: fault.at)),
            alerts=alerts,
            source=self.source,
            traffic=Traffic(**top["traffic"]),
            price_per_thousand_series=top["price_per_thousand_series"],
        )

    def groups(self, items: list[Values], agents: int) -> tuple[Group, ...]:
        out: list[Group] = []
        taken = 0
        for i, g in enumerate(items):
            path = ("fleet", "groups", i)
            if len(out) >= MAX_GROUPS:
                raise self.fail(path, f"at most {MAX_GROUPS} groups")
            if any(x.name == g["name"] for x in out):
                raise self.fail(path + ("name",), f"duplicate group '{excerpt(g['name'])}'")
            taken += g["agents"]
            if taken > agents:
                raise self.fail(
                    path + ("agents",),
                    f"the groups take {taken} agents, more than the fleet's {agents}",
                )
            out.append(Group(g["name"], g["agents"], g["labels"]))
        return tuple(out)

    def pipelines(self, items: list[Values]) -> tuple[Pipeline, ...]:
        out: list[Pipeline] = []
        for i, p in enumerate(items):
            if any(q.id == p["id"] for q in out):
                raise self.fail(
                    ("pipelines", i, "id"), f"duplicate pipeline id '{excerpt(p['id'])}'"
                )
            template = p["template"]
            reduction = TEMPLATE_REDUCTION[template] if p["reduction"] is None else p["reduction"]
            noise = p["noise"]
            if noise is None:
                noise = 0.0 if template == "baseline" else DEFAULT_NOISE
            out.append(Pipeline(p["id"], template, reduction, noise))
        return tuple(out)

    def experiments(
        self, items: list[Values], pipelines: tuple[Pipeline, ...], fleet: Fleet
    ) -> tuple[Experiment, ...]:
        out: list[Experiment] = []
        ids = [p.id for p in pipelines]
        for i, e in enumerate(items):
            path = ("experiments", i)
            if any(x.id == e["id"] for x in out):
                raise self.fail(path + ("id",), f"duplicate experiment id '{excerpt(e['id'])}'")
            for variant in ("baseline", "candidate"):
                ref = e[variant]
                if ref not in ids:
                    raise self.fail(
                        path + (variant,),
                        f"no pipeline with id '{excerpt(ref)}'{_did_you_mean(ref, ids)}",
                    )
            start_at = e["create_at"] if e["start_at"] is None else e["start_at"]
            if start_at < e["create_at"]:
                raise self.fail(path + ("start_at",), "must not be before create_at")
            agent_ids = None
            if isinstance(e["agents"], tuple):
                agent_ids = e["agents"]
                self.agent_ids(path + ("agents",), agent_ids, fleet)
                if e["group"] is not None:
                    raise self.fail(
                        path + ("group",), "give either a group or a list of agents, not both"
                    )
            # Only a number the file gives: the default asks for what the fleet has.
            elif "agents" in e.given and e["agents"] > fleet.agents:
                raise self.fail(
                    path + ("agents",),
                    f"the fleet has only {fleet.agents} agents, got {e['agents']}",
                )
            if e["group"] is not None and fleet.group_of(e["group"]) is None:
                names = [g.name for g in fleet.groups]
                raise self.fail(
                    path + ("group",),
                    f"no group '{excerpt(e['group'])}' in fleet.groups"
                    f"{_did_you_mean(e['group'], names)}",
                )
            out.append(
                Experiment(
                    id=e["id"],
                    name=e["id"] if e["name"] is None else e["name"],
                    baseline=e["baseline"],
                    candidate=e["candidate"],
                    create_at=e["create_at"],
                    start_at=start_at,
                    duration=e["duration"],
                    target_reduction=e["target_reduction"],
                    max_error_rate=e["max_error_rate"],
                    max_data_loss=e["max_data_loss"],
                    group=e["group"],
                    abort_after=e["abort_after"],
                    agents=e["agents"] if agent_ids is None else len(agent_ids),
                    rollback=e["rollback"],
                    deployment=Deployment(**e["deployment"]),
                    agent_ids=agent_ids,
                )
            )
        return tuple(out)

    def fault(
        self,
        path: tuple[Any, ...],
        f: dict[str, Any],
        experiments: tuple[Experiment, ...],
        fleet: Fleet,
    ) -> Fault:
        """A fault that FaultSpec checked, against the experiments and the fleet."""
        ftype = f["type"]
        kind = FAULT_TYPES[ftype]
        after = None
        if f.get("after") is not None:
            exp_ids = [e.id for e in experiments]
            name = f["after"]["experiment"]
            if name not in exp_ids:
                raise self.fail(
                    path + ("after", "experiment"),
                    f"no experiment with id {_show(name)}{_did_you_mean(name, exp_ids)}",
                )
            after = (name, f["after"]["event"])
        repeat: dict[str, Any] = {"every": f.get("every"), "times": f.get("times"), "after": after}
        if kind.target == "none":
            return Fault(ftype, f["at"], f["duration"], "", f["params"], **repeat)
        target = "global" if f["target"] is None else f["target"]
        if isinstance(target, tuple):
            if ftype not in GROUP_FAULTS:
                raise self.fail(
                    path + ("target",),
                    f"a list of agents is a target of {', '.join(sorted(GROUP_FAULTS))} "
                    f"only, not of '{ftype}'",
                )
            self.agent_ids(path + ("target",), target, fleet)
            return Fault(ftype, f["at"], f["duration"], target, f["params"], **repeat)
        if target.startswith(GROUP_PREFIX) and ftype in GROUP_FAULTS:
            name = target.removeprefix(GROUP_PREFIX)
            if fleet.group_of(name) is None:
                names = [g.name for g in fleet.groups]
                raise self.fail(
                    path + ("target",),
                    f"no group '{excerpt(name)}' in fleet.groups{_did_you_mean(name, names)}",
                )
            return Fault(ftype, f["at"], f["duration"], target, f["params"], **repeat)
        if kind.target in ("experiment", "global or experiment"):
            exp_ids = [e.id for e in experiments]
            allowed = exp_ids if kind.target == "experiment" else ["global", *exp_ids]
            what = (
                "an experiment id" if kind.target == "experiment" else "global or an experiment id"
            )
            if ftype in GROUP_FAULTS:
                if target not in allowed and _is_agent(fleet, target):
                    # One agent: a list of one (what it hits is the same).
                    return Fault(ftype, f["at"], f["duration"], (target,), f["params"], **repeat)
                what = "global, an experiment id, an agent id, group:<name> or a list of agent ids"
            if target not in allowed:
                raise self.fail(
                    path + ("target",),
                    f"expected {what}{_did_you_mean(target, allowed)}, got {_show(target)}",
                )
        elif target != "global" and (
            kind.target != "global or agent" or not _is_agent(fleet, target)
        ):
            takes_agents = ", ".join(
                n for n, k in FAULT_TYPES.items() if k.target == "global or agent"
            )
            raise self.fail(
                path + ("target",),
                f"expected 'global' or (for {takes_agents}) an agent id such as "
                f"'{_agent_id(fleet, 1)}', got {_show(target)}",
            )
        return Fault(ftype, f["at"], f["duration"], target, f["params"], **repeat)

    def alert(self, path: tuple[Any, ...], a: Values) -> AlertRule:
        condition = a["condition"]
        conditions = parse_conditions(condition)  # it parsed when checked
        metric, op, threshold = conditions[0][0]
        scope = scope_of(metric)
        if a["scope"] is not None and a["scope"] != scope:
            raise self.fail(
                path + ("scope",),
                f"metric '{metric}' is {'per experiment' if scope == 'experiments' else 'global'}: "
                f"expected '{scope}', got {_show(a['scope'])}",
            )
        return AlertRule(
            a["name"],
            " ".join(condition.split()),
            metric,
            op,
            threshold,
            a["for"],
            a["severity"],
            scope,
            conditions,
        )

    def agent_ids(self, path: tuple[Any, ...], ids: tuple[str, ...], fleet: Fleet) -> None:
        """Each of a list of agent ids is one of the fleet's starting agents."""
        for i, agent in enumerate(ids):
            if not _is_agent(fleet, agent):
                raise self.fail(
                    path + (i,),
                    f"expected an agent id such as '{_agent_id(fleet, 1)}' (from 1 to "
                    f"{fleet.agents}), got {_show(agent)}",
                )


def _agent_id(fleet: Fleet, number: int) -> str:
    width = max(2, len(str(fleet.agents)))
    return f"agent-{fleet.hostname_prefix}-{number:0{width}d}"


def _is_agent(fleet: Fleet, target: str) -> bool:
    """Whether `target` is the id of one of the fleet's starting agents (parsed, not
    looked up: a large fleet's id set is costly to build)."""
    prefix = f"agent-{fleet.hostname_prefix}-"
    if not target.startswith(prefix):
        return False
    digits = target[len(prefix) :]
    width = max(2, len(str(fleet.agents)))
    if len(digits) != width or not (digits.isascii() and digits.isdigit()):
        return False
    return 1 <= int(digits) <= fleet.agents


def check_fault(value: Any, scenario: Scenario, source: str = "fault") -> Fault:
    """Validate one fault given at run time (the scenario's fault format minus `at`)."""
    checker = _Checker(source, {})
    checked = INJECTED_FAULT.check(checker, (), value)
    return checker.fault((), checked, scenario.experiments, scenario.fleet)
