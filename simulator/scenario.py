"""Scenarios: the YAML schema, its loader and hand-written validation.

A scenario is read with PyYAML's node API so that every value keeps its line; checks are
plain code (no schema library) and every error names the file, the field path and the
line, e.g. ``demo.yaml: experiments[1].target_reduction (line 23): expected a number
between 0 and 1, got 'high'``. docs/scenarios.md documents the schema for users.
"""

from __future__ import annotations

import difflib
import math
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from simulator.clock import START_BOUNDS, parse_duration, parse_start
from simulator.events import CHANNELS
from simulator.rules import RuleError, parse_condition, scope_of

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

# Faults that change the model, with their parameters and defaults.
SIM_FAULTS: dict[str, dict[str, Any]] = {
    "sudden_drop": {"factor": 0.3, "variant": "candidate"},
    "spike": {"factor": 3.0, "variant": "candidate"},
    "cardinality_explosion": {"factor": 5.0, "ramp": 60.0, "variant": "candidate"},
    "error_surge": {"error_rate": 0.02},
    "agents_leave": {"count": 1, "fraction": 0.0},
    "agent_churn": {"rate_per_hour": 60.0, "downtime": 120.0},
    "agents_join": {"count": 1},
    "cancel": {},
}
# Faults the server acts on (delivery); the engine only schedules them. Their parameters
# and defaults live here, with the rest of the scenario schema, so a scenario file is
# checked whole, with line numbers; phoenix/faults.py carries them out.
DELIVERY_FAULTS: dict[str, dict[str, Any]] = {
    "close_connections": {
        "share": 1.0,
        "user": None,
        "channel": None,
        "code": 1001,
        "abrupt": False,
    },
    "latency": {"delay_ms": 200.0, "jitter_ms": 50.0, "distribution": "normal"},
    "burst": {"count": 100},
    "duplicate": {"probability": 0.1},
    "reorder": {"window": 5},
    "pause_delivery": {},
    "token_expiry_storm": {"share": 1.0},
    "rate_limit_squeeze": {
        "messages_per_second": 5,
        "channels_per_connection": None,
        "connections_per_user": None,
    },
    "server_restart": {},
}
# Delivery faults that only make sense for a while.
TIMED_DELIVERY_FAULTS = frozenset(
    {"latency", "duplicate", "reorder", "pause_delivery", "rate_limit_squeeze", "server_restart"}
)
# Close codes a close_connections fault may use (RFC 6455 §7.4; 1005/1006/1015 are never sent).
FAULT_CLOSE_CODES = (1000, 1001, 1008, 1011, 1012, 1013, *range(3000, 5000))
# Simulation faults aimed at an experiment's series (or "global").
METRIC_FAULTS: frozenset[str] = frozenset(
    {"sudden_drop", "spike", "cardinality_explosion", "error_surge"}
)
AGENT_FAULTS: frozenset[str] = frozenset({"agents_leave", "agent_churn", "agents_join"})
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
    abort_after: float = 60.0
    agents: int = 15
    rollback: bool = True
    deployment: Deployment = field(default_factory=Deployment)


@dataclass(frozen=True, slots=True)
class Fault:
    type: str
    at: float
    duration: float
    target: str
    params: dict[str, Any]

    @property
    def delivery(self) -> bool:
        return self.type in DELIVERY_FAULTS


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    condition: str
    metric: str
    op: str
    threshold: float
    for_seconds: float
    severity: str
    scope: str  # "experiments" or "global"


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


# --------------------------------------------------------------------------- checks


class _Checker:
    """Validates the plain data that YAML produced, with the recorded lines at hand."""

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

    # -- generic helpers

    def mapping(
        self,
        path: tuple[Any, ...],
        value: Any,
        required: tuple[str, ...] = (),
        optional: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected a mapping, got {_show(value)}")
        allowed = set(required) | set(optional)
        for key in value:
            if not isinstance(key, str) or key not in allowed:
                raise self.fail(
                    path + (key,),
                    f"unknown field{_did_you_mean(str(key), allowed)}; "
                    f"allowed: {', '.join(sorted(allowed))}",
                )
        for key in required:
            if key not in value:
                raise self.fail(path, f"missing required field '{key}'")
        return value

    def string(self, path: tuple[Any, ...], value: Any) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(path, f"expected a non-empty string, got {_show(value)}")
        return value

    def number(
        self,
        path: tuple[Any, ...],
        value: Any,
        lo: float | None = None,
        hi: float | None = None,
        what: str = "a number",
    ) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            # An int is compared as it is: a 400-digit one does not fit a float.
            finite = isinstance(value, int) or math.isfinite(value)
            ok = finite and (lo is None or value >= lo) and (hi is None or value <= hi)
            ok = ok and abs(value) <= 1e300
        if not ok:
            raise self.fail(path, f"expected {what}, got {_show(value)}")
        return float(value)

    def integer(self, path: tuple[Any, ...], value: Any, lo: int = 0, what: str = "") -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < lo:
            raise self.fail(path, f"expected {what or f'an integer >= {lo}'}, got {_show(value)}")
        return value

    def duration(self, path: tuple[Any, ...], value: Any, positive: bool = False) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise self.fail(path, f"{exc}, got {_show(value)}") from None
        if positive and seconds <= 0:
            raise self.fail(path, f"expected a positive duration, got {_show(value)}")
        return seconds

    def boolean(self, path: tuple[Any, ...], value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_show(value)}")
        return value

    def weights(self, path: tuple[Any, ...], value: Any) -> tuple[tuple[str, float], ...]:
        """A list of names (all equal) or a mapping name -> weight/probability."""
        if isinstance(value, list):
            if not value:
                raise self.fail(path, "expected at least one entry")
            return tuple((self.string(path + (i,), v), 1.0) for i, v in enumerate(value))
        if isinstance(value, dict):
            if not value:
                raise self.fail(path, "expected at least one entry")
            return tuple(
                (str(k), self.number(path + (k,), v, 0.0, 1.0, "a number between 0 and 1"))
                for k, v in value.items()
            )
        raise self.fail(path, f"expected a list or a mapping, got {_show(value)}")

    # -- the document

    def scenario(self, data: Any) -> Scenario:
        top = self.mapping(
            (),
            data,
            required=("name",),
            optional=(
                "description",
                "start",
                "duration",
                "seed",
                "intervals",
                "price_per_million_points",
                "fleet",
                "pipelines",
                "experiments",
                "faults",
                "alerts",
            ),
        )
        name = self.string(("name",), top["name"])
        description = ""
        if "description" in top:
            description = " ".join(self.string(("description",), top["description"]).split())
        start = None
        if top.get("start") is not None:
            raw = top["start"]
            try:
                if not isinstance(raw, str | datetime):
                    raise ValueError(
                        f"expected an RFC 3339 time such as 2024-01-20T10:00:00Z, {START_BOUNDS}"
                    )
                start = parse_start(raw)
            except ValueError as exc:
                raise self.fail(("start",), f"{exc}, got {_show(raw)}") from None
        duration = None
        if top.get("duration") is not None:
            duration = self.duration(("duration",), top["duration"], positive=True)
        seed = None
        if top.get("seed") is not None:
            seed = self.integer(("seed",), top["seed"], 0, "a seed (an integer >= 0)")
        intervals = self.intervals(top.get("intervals", {}))
        price = DEFAULT_PRICE_PER_MILLION
        if "price_per_million_points" in top:
            price = self.number(
                ("price_per_million_points",),
                top["price_per_million_points"],
                0.0,
                MAX_PRICE,
                f"a price in USD between 0 and {MAX_PRICE:g}",
            )
        fleet = self.fleet(top.get("fleet", {}))
        pipelines = self.pipelines(top.get("pipelines", []))
        experiments = self.experiments(top.get("experiments", []), pipelines, fleet)
        faults = tuple(
            self.fault(("faults", i), f, experiments, fleet, with_at=True)
            for i, f in enumerate(self.sequence(("faults",), top.get("faults", [])))
        )
        alerts = tuple(
            self.alert(("alerts", i), a)
            for i, a in enumerate(self.sequence(("alerts",), top.get("alerts", [])))
        )
        return Scenario(
            name=name,
            description=description,
            start=start,
            duration=duration,
            seed=seed,
            intervals=intervals,
            price_per_million_points=price,
            fleet=fleet,
            pipelines=pipelines,
            experiments=experiments,
            faults=tuple(sorted(faults, key=lambda f: f.at)),
            alerts=alerts,
            source=self.source,
        )

    def sequence(self, path: tuple[Any, ...], value: Any) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {_show(value)}")
        return value

    def intervals(self, value: Any) -> Intervals:
        path = ("intervals",)
        m = self.mapping(
            path,
            {} if value is None else value,
            optional=("metrics", "heartbeat", "cost", "progress"),
        )
        kwargs = {}
        for k, v in m.items():
            seconds = self.duration(path + (k,), v, positive=True)
            if k == "heartbeat" and seconds < MIN_INTERVAL:
                raise self.fail(
                    path + (k,), f"expected an interval of at least 1ms, got {_show(v)}"
                )
            if k != "heartbeat" and seconds < 1.0:
                # A metrics or cost update is a snapshot of a tick: two in one tick
                # would be the same numbers twice. Only heartbeats spread within a tick.
                raise self.fail(
                    path + (k,),
                    f"expected an interval of at least 1s (one per tick), got {_show(v)}",
                )
            kwargs[k] = seconds
        return Intervals(**kwargs)

    def fleet(self, value: Any) -> Fleet:
        path = ("fleet",)
        m = self.mapping(
            path,
            {} if value is None else value,
            optional=("agents", "hostname_prefix", "versions", "capabilities", "mps", "churn"),
        )
        kwargs: dict[str, Any] = {}
        if "agents" in m:
            kwargs["agents"] = self.integer(
                path + ("agents",), m["agents"], 1, f"a number of agents from 1 to {MAX_AGENTS}"
            )
            if kwargs["agents"] > MAX_AGENTS:
                raise self.fail(
                    path + ("agents",),
                    f"expected a number of agents from 1 to {MAX_AGENTS}, got {m['agents']}",
                )
        if "hostname_prefix" in m:
            kwargs["hostname_prefix"] = self.string(
                path + ("hostname_prefix",), m["hostname_prefix"]
            )
        if "versions" in m:
            kwargs["versions"] = self.weights(path + ("versions",), m["versions"])
        if "capabilities" in m:
            caps = self.weights(path + ("capabilities",), m["capabilities"])
            for cap, _ in caps:
                if cap not in TEMPLATE_REDUCTION or cap == "baseline":
                    known = [t for t in TEMPLATE_REDUCTION if t != "baseline"]
                    raise self.fail(
                        path + ("capabilities",),
                        f"unknown capability '{cap}'{_did_you_mean(cap, known)}; "
                        f"known: {', '.join(known)}",
                    )
            kwargs["capabilities"] = caps
        if "mps" in m:
            mp = path + ("mps",)
            mps = self.mapping(mp, m["mps"], optional=("median", "sigma"))
            if "median" in mps:
                kwargs["mps_median"] = self.number(
                    mp + ("median",),
                    mps["median"],
                    1.0,
                    MAX_MPS_MEDIAN,
                    f"a rate between 1 and {MAX_MPS_MEDIAN:g}",
                )
            if "sigma" in mps:
                kwargs["mps_sigma"] = self.number(
                    mp + ("sigma",), mps["sigma"], 0.0, 3.0, "a number between 0 and 3"
                )
        if "churn" in m:
            cp = path + ("churn",)
            churn = self.mapping(cp, m["churn"], optional=("rate_per_hour", "downtime"))
            ck: dict[str, Any] = {}
            if "rate_per_hour" in churn:
                ck["rate_per_hour"] = self.number(
                    cp + ("rate_per_hour",),
                    churn["rate_per_hour"],
                    0.0,
                    MAX_RATE_PER_HOUR,
                    f"a rate between 0 and {MAX_RATE_PER_HOUR:g}",
                )
            if "downtime" in churn:
                ck["downtime"] = self.duration(cp + ("downtime",), churn["downtime"], positive=True)
            kwargs["churn"] = Churn(**ck)
        return Fleet(**kwargs)

    def pipelines(self, value: Any) -> tuple[Pipeline, ...]:
        out: list[Pipeline] = []
        for i, item in enumerate(self.sequence(("pipelines",), value)):
            path = ("pipelines", i)
            m = self.mapping(
                path, item, required=("id", "template"), optional=("reduction", "noise")
            )
            pid = self.string(path + ("id",), m["id"])
            if any(p.id == pid for p in out):
                raise self.fail(path + ("id",), f"duplicate pipeline id '{pid}'")
            template = self.string(path + ("template",), m["template"])
            if template not in TEMPLATE_REDUCTION:
                raise self.fail(
                    path + ("template",),
                    f"unknown template '{template}'{_did_you_mean(template, TEMPLATE_REDUCTION)}; "
                    f"known: {', '.join(TEMPLATE_REDUCTION)}",
                )
            reduction = TEMPLATE_REDUCTION[template]
            noise = 0.0 if template == "baseline" else DEFAULT_NOISE
            if "reduction" in m:
                reduction = self.number(
                    path + ("reduction",), m["reduction"], 0.0, 0.99, "a number between 0 and 0.99"
                )
            if "noise" in m:
                noise = self.number(
                    path + ("noise",), m["noise"], 0.0, 0.5, "a number between 0 and 0.5"
                )
            out.append(Pipeline(pid, template, reduction, noise))
        return tuple(out)

    def experiments(
        self, value: Any, pipelines: tuple[Pipeline, ...], fleet: Fleet
    ) -> tuple[Experiment, ...]:
        out: list[Experiment] = []
        ids = [p.id for p in pipelines]
        for i, item in enumerate(self.sequence(("experiments",), value)):
            path = ("experiments", i)
            m = self.mapping(
                path,
                item,
                required=("id", "baseline", "candidate", "duration"),
                optional=(
                    "name",
                    "create_at",
                    "start_at",
                    "target_reduction",
                    "max_error_rate",
                    "abort_after",
                    "agents",
                    "rollback",
                    "deployment",
                ),
            )
            eid = self.string(path + ("id",), m["id"])
            if any(e.id == eid for e in out):
                raise self.fail(path + ("id",), f"duplicate experiment id '{eid}'")
            refs = {}
            for variant in ("baseline", "candidate"):
                ref = self.string(path + (variant,), m[variant])
                if ref not in ids:
                    raise self.fail(
                        path + (variant,),
                        f"no pipeline with id '{ref}'{_did_you_mean(ref, ids)}",
                    )
                refs[variant] = ref
            create_at = self.duration(path + ("create_at",), m.get("create_at", 0))
            start_at = self.duration(path + ("start_at",), m.get("start_at", create_at))
            if start_at < create_at:
                raise self.fail(path + ("start_at",), "must not be before create_at")
            kwargs: dict[str, Any] = {}
            if "target_reduction" in m:
                kwargs["target_reduction"] = self.number(
                    path + ("target_reduction",),
                    m["target_reduction"],
                    0.0,
                    1.0,
                    "a number between 0 and 1",
                )
            if "max_error_rate" in m:
                kwargs["max_error_rate"] = self.number(
                    path + ("max_error_rate",),
                    m["max_error_rate"],
                    0.0,
                    1.0,
                    "a number between 0 and 1",
                )
            if "abort_after" in m:
                kwargs["abort_after"] = self.duration(path + ("abort_after",), m["abort_after"])
            if "agents" in m:
                kwargs["agents"] = self.integer(
                    path + ("agents",), m["agents"], 1, "a number of agents >= 1"
                )
                if kwargs["agents"] > fleet.agents:
                    raise self.fail(
                        path + ("agents",),
                        f"the fleet has only {fleet.agents} agents, got {kwargs['agents']}",
                    )
            if "rollback" in m:
                kwargs["rollback"] = self.boolean(path + ("rollback",), m["rollback"])
            if "deployment" in m:
                kwargs["deployment"] = self.deployment(path + ("deployment",), m["deployment"])
            name = self.string(path + ("name",), m["name"]) if "name" in m else eid
            out.append(
                Experiment(
                    id=eid,
                    name=name,
                    baseline=refs["baseline"],
                    candidate=refs["candidate"],
                    create_at=create_at,
                    start_at=start_at,
                    duration=self.duration(path + ("duration",), m["duration"], positive=True),
                    **kwargs,
                )
            )
        return tuple(out)

    def deployment(self, path: tuple[Any, ...], value: Any) -> Deployment:
        m = self.mapping(
            path,
            value,
            optional=(
                "failure_probability",
                "max_failed_fraction",
                "seconds_per_agent",
                "parallel",
            ),
        )
        kwargs: dict[str, Any] = {}
        for key in ("failure_probability", "max_failed_fraction"):
            if key in m:
                kwargs[key] = self.number(
                    path + (key,), m[key], 0.0, 1.0, "a number between 0 and 1"
                )
        if "seconds_per_agent" in m:
            kwargs["seconds_per_agent"] = self.duration(
                path + ("seconds_per_agent",), m["seconds_per_agent"], positive=True
            )
        if "parallel" in m:
            kwargs["parallel"] = self.integer(
                path + ("parallel",), m["parallel"], 1, "an integer >= 1"
            )
        return Deployment(**kwargs)

    def fault(
        self,
        path: tuple[Any, ...],
        value: Any,
        experiments: tuple[Experiment, ...],
        fleet: Fleet,
        with_at: bool,
    ) -> Fault:
        optional = ("duration", "target", "params")
        m = self.mapping(
            path,
            value,
            required=("type", "at") if with_at else ("type",),
            optional=optional if with_at else optional + ("at",),
        )
        if not with_at and "at" in m:
            raise self.fail(path + ("at",), "an injected fault happens now: remove 'at'")
        ftype = self.string(path + ("type",), m["type"])
        known = sorted(set(SIM_FAULTS) | set(DELIVERY_FAULTS))
        if ftype not in known:
            raise self.fail(
                path + ("type",),
                f"unknown fault type '{ftype}'{_did_you_mean(ftype, known)}; "
                f"known: {', '.join(known)}",
            )
        at = self.duration(path + ("at",), m["at"]) if with_at else 0.0
        duration = self.duration(path + ("duration",), m["duration"]) if "duration" in m else 0.0
        raw_params = m.get("params")
        if raw_params is None:
            raw_params = {}
        if not isinstance(raw_params, dict):
            raise self.fail(path + ("params",), f"expected a mapping, got {_show(raw_params)}")
        params: dict[str, Any] = {}
        if ftype in DELIVERY_FAULTS:
            if "target" in m:
                raise self.fail(path + ("target",), f"a '{ftype}' fault has no target")
            spec = DELIVERY_FAULTS[ftype]
            for key, v in raw_params.items():
                if key not in spec:
                    allowed = ", ".join(spec) or "none"
                    raise self.fail(
                        path + ("params", key),
                        f"unknown parameter{_did_you_mean(str(key), list(spec))}; "
                        f"allowed: {allowed}",
                    )
                params[key] = self.delivery_param(path + ("params", key), key, v)
            if ftype in TIMED_DELIVERY_FAULTS and duration <= 0:
                raise self.fail(path + ("duration",), f"a '{ftype}' fault needs a duration")
            if duration > MAX_DELIVERY_FAULT:
                raise self.fail(
                    path + ("duration",),
                    f"a delivery fault lasts at most 1h, got {_show(m['duration'])}",
                )
            return Fault(ftype, at, duration, "", {**spec, **params})
        defaults = SIM_FAULTS[ftype]
        for key, v in raw_params.items():
            ppath = path + ("params", key)
            if key not in defaults:
                allowed = ", ".join(defaults) or "none"
                raise self.fail(
                    ppath,
                    f"unknown parameter{_did_you_mean(str(key), list(defaults))}; "
                    f"allowed: {allowed}",
                )
            params[key] = self.fault_param(ppath, ftype, key, v)
        params = {**defaults, **params}
        target = m.get("target", "global")
        target = self.string(path + ("target",), target)
        exp_ids = [e.id for e in experiments]
        if ftype in METRIC_FAULTS or ftype == "cancel":
            allowed_targets = exp_ids if ftype == "cancel" else ["global", *exp_ids]
            what = "an experiment id" if ftype == "cancel" else "global or an experiment id"
            if target not in allowed_targets:
                raise self.fail(
                    path + ("target",),
                    f"expected {what}{_did_you_mean(target, allowed_targets)}, got {_show(target)}",
                )
            if ftype in METRIC_FAULTS and duration <= 0:
                raise self.fail(path, f"a '{ftype}' fault needs a positive 'duration'")
        elif ftype in AGENT_FAULTS:
            if target != "global" and (ftype != "agents_leave" or not _is_agent(fleet, target)):
                raise self.fail(
                    path + ("target",),
                    "expected 'global' or (for agents_leave) an agent id such as "
                    f"'{_agent_id(fleet, 1)}', got {_show(target)}",
                )
            if ftype == "agent_churn" and duration <= 0:
                raise self.fail(path, "an 'agent_churn' fault needs a positive 'duration'")
        return Fault(ftype, at, duration, target, params)

    def delivery_param(self, path: tuple[Any, ...], key: str, v: Any) -> Any:
        if key in ("share", "probability"):
            return self.number(path, v, 0.0, 1.0, "a number between 0 and 1")
        if key in ("delay_ms", "jitter_ms"):
            return self.number(path, v, 0.0, 600_000.0, "milliseconds between 0 and 600000")
        if key == "distribution":
            if v not in ("normal", "uniform", "exponential"):
                raise self.fail(path, f"expected normal, uniform or exponential, got {_show(v)}")
            return v
        if key == "code":
            if not isinstance(v, int) or isinstance(v, bool) or v not in FAULT_CLOSE_CODES:
                raise self.fail(
                    path,
                    "expected a close code 1000, 1001, 1008, 1011-1013 or 3000-4999, "
                    f"got {_show(v)}",
                )
            return v
        if key == "abrupt":
            return self.boolean(path, v)
        if key == "user":
            user = self.string(path, v)
            if len(user) > 256:
                raise self.fail(path, "expected a user (a token's sub) of at most 256 characters")
            return user
        if key == "channel":
            if v not in CHANNELS:
                raise self.fail(path, f"expected one of {', '.join(CHANNELS)}, got {_show(v)}")
            return v
        if key in ("count", "window"):
            lo = 1 if key == "count" else 2
            what = f"a number of events from {lo} to {MAX_HELD_EVENTS}"
            n = self.integer(path, v, lo, what)
            if n > MAX_HELD_EVENTS:
                raise self.fail(path, f"expected {what}, got {_show(v)}")
            return n
        if key == "messages_per_second":
            return self.number(path, v, 0.001, 1_000_000.0, "a rate > 0")
        return self.integer(path, v, 1, "a whole number >= 1")

    def fault_param(self, path: tuple[Any, ...], ftype: str, key: str, v: Any) -> Any:
        if key == "variant":
            if v not in ("baseline", "candidate"):
                raise self.fail(path, f"expected 'baseline' or 'candidate', got {_show(v)}")
            return v
        if key in ("ramp", "downtime"):
            return self.duration(path, v)
        if key == "count":
            count = self.integer(path, v, 0, f"a number of agents from 0 to {MAX_AGENTS}")
            if count > MAX_AGENTS:
                raise self.fail(
                    path, f"expected a number of agents from 0 to {MAX_AGENTS}, got {v}"
                )
            return count
        if key == "rate_per_hour":
            return self.number(
                path, v, 0.0, MAX_RATE_PER_HOUR, f"a rate between 0 and {MAX_RATE_PER_HOUR:g}"
            )
        if key in ("fraction", "error_rate"):
            return self.number(path, v, 0.0, 1.0, "a number between 0 and 1")
        if key == "factor":
            lo = 0.0 if ftype == "sudden_drop" else 1.0
            hi = 1.0 if ftype == "sudden_drop" else 1000.0
            return self.number(path, v, lo, hi, f"a factor between {lo:g} and {hi:g}")
        return self.number(path, v, 0.0, None, "a number >= 0")

    def alert(self, path: tuple[Any, ...], value: Any) -> AlertRule:
        m = self.mapping(
            path, value, required=("name", "condition"), optional=("for", "severity", "scope")
        )
        name = self.string(path + ("name",), m["name"])
        condition = self.string(path + ("condition",), m["condition"])
        try:
            metric, op, threshold = parse_condition(condition)
        except RuleError as exc:
            raise self.fail(path + ("condition",), str(exc)) from None
        for_seconds = self.duration(path + ("for",), m["for"]) if "for" in m else 0.0
        severity = m.get("severity", "warning")
        if severity not in SEVERITIES:
            raise self.fail(
                path + ("severity",),
                f"expected one of {', '.join(SEVERITIES)}, got {_show(severity)}",
            )
        scope = scope_of(metric)
        if "scope" in m and m["scope"] != scope:
            raise self.fail(
                path + ("scope",),
                f"metric '{metric}' is {'per experiment' if scope == 'experiments' else 'global'}: "
                f"expected '{scope}', got {_show(m['scope'])}",
            )
        return AlertRule(
            name, " ".join(condition.split()), metric, op, threshold, for_seconds, severity, scope
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
    """Validate one fault given at run time (the scenario schema minus `at`)."""
    return _Checker(source, {}).fault(
        (), value, scenario.experiments, scenario.fleet, with_at=False
    )
