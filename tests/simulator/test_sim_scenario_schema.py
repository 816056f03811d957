"""The published JSON Schema and the loader agree: both come from one declaration
(`simulator.scenario.SCENARIO`), and the cases below come from it too, so a new field,
bound or choice is covered without writing a test for it."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator

from simulator.clock import MAX_DURATION, format_duration
from simulator.rules import EXPERIMENT_METRICS, GLOBAL_METRICS
from simulator.scenario import (
    DEFAULT_PRICE_PER_MILLION,
    FAULT_FIELDS,
    FAULT_TYPES,
    MAX_AGENTS,
    SCENARIO,
    Boolean,
    Choice,
    Codes,
    Condition,
    Deployment,
    Duration,
    Experiment,
    FaultSpec,
    Field,
    Fleet,
    Integer,
    Intervals,
    Labels,
    ListOf,
    Mapping,
    Number,
    OneOrAgents,
    ScenarioError,
    Spec,
    Start,
    Text,
    Traffic,
    Weights,
    _path_text,
    parse_scenario,
)
from simulator.scenario_schema import PUBLISHED, REGENERATE, render, scenario_json_schema

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_COMMENT = "# yaml-language-server: $schema=../../docs/scenario.schema.json"
VALIDATOR = Draft202012Validator(scenario_json_schema())
# yaml-language-server (VS Code's YAML extension) validates as draft-07 does: the schema
# keeps to the keywords both drafts share, and these tests hold both to the same verdicts.
DRAFT7 = Draft7Validator(scenario_json_schema())


def test_the_published_schema_is_the_generated_one():
    published = (ROOT / PUBLISHED).read_text(encoding="utf-8")
    if published != render():
        pytest.fail(f"{PUBLISHED} is stale: regenerate it with `{REGENERATE}`", pytrace=False)
    Draft202012Validator.check_schema(json.loads(published))
    Draft7Validator.check_schema(json.loads(published))


def test_the_module_prints_it_and_nothing_else():
    res = subprocess.run(
        [sys.executable, "-m", "simulator.scenario_schema"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert res.stdout == render()
    assert res.stderr == ""  # no runpy warning about a module imported twice


def test_every_field_is_described():
    def walk(node: Any, where: str) -> Iterator[str]:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                in_branch = "allOf" in where  # a fault type's branch refines a described field
                if sub is not False and "description" not in sub and not in_branch:
                    yield f"{where}.{name}"
            for key, sub in node.items():
                yield from walk(sub, f"{where}.{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                yield from walk(sub, f"{where}[{i}]")

    assert list(walk(scenario_json_schema(), "")) == []


class _EditorLoader(yaml.SafeLoader):
    """YAML as an editor reads it (1.2): an unquoted timestamp stays a string."""


_EditorLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@pytest.mark.parametrize(
    "path", sorted((ROOT / "simulator" / "scenarios").glob("*.yaml")), ids=lambda p: p.stem
)
def test_bundled_scenarios_follow_the_schema(path: Path):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == SCHEMA_COMMENT
    target = SCHEMA_COMMENT.split("$schema=")[1]
    assert (path.parent / target).resolve() == ROOT / PUBLISHED
    data = yaml.load(text, _EditorLoader)
    assert [f"{e.json_path}: {e.message}" for e in VALIDATOR.iter_errors(data)] == []
    assert DRAFT7.is_valid(data)


def test_defaults_are_the_models_defaults():
    """The declared defaults (what the schema shows) are what a file without the field
    gets, and what the model's dataclasses say for code that builds them directly."""
    sc = parse_scenario(
        "name: t\npipelines: [{id: p, template: topk}]\n"
        "experiments: [{id: e, baseline: p, candidate: p, duration: 1m}]\n"
    )
    assert sc.intervals == Intervals()
    assert sc.traffic == Traffic()
    assert sc.fleet == Fleet()
    assert sc.price_per_million_points == DEFAULT_PRICE_PER_MILLION
    exp = sc.experiments[0]
    assert exp.deployment == Deployment()
    for f in dataclasses.fields(Experiment):
        if f.default is not dataclasses.MISSING:
            assert getattr(exp, f.name) == f.default, f.name


# --------------------------------------------------------------------------- cases


class Case(NamedTuple):
    label: str
    doc: dict[str, Any]
    where: tuple[Any, ...] | None  # None: valid; else the field path the loader names
    hint: bool = False  # the loader's message suggests a spelling


def _base() -> dict[str, Any]:
    """A valid scenario with every mapping present, and one fault of every type."""
    faults = []
    for name, kind in FAULT_TYPES.items():
        fault: dict[str, Any] = {"at": "1m", "type": name, "params": {}}
        if kind.needs_duration:
            fault["duration"] = "1m"
        if kind.target == "experiment":
            fault["target"] = "exp-1"
        faults.append(fault)
    return {
        "name": "t",
        "description": "every field",
        "start": "2024-01-20T10:00:00Z",
        "duration": "1h",
        "seed": 1,
        "intervals": {},
        "price_per_million_points": 0.1,
        # The largest fleet and the smallest experiment: either bound of either one
        # stays consistent with the other.
        "fleet": {
            "agents": MAX_AGENTS,
            "mps": {},
            "churn": {},
            "groups": [{"name": "g", "agents": 1, "labels": {"service": "api"}}],
        },
        "pipelines": [
            {"id": "base", "template": "baseline"},
            {"id": "cand", "template": "adaptive_filter"},
        ],
        "experiments": [
            {
                "id": "exp-1",
                "baseline": "base",
                "candidate": "cand",
                "duration": "5m",
                "agents": 1,
                "deployment": {},
            }
        ],
        "faults": faults,
        "alerts": [{"name": "a", "condition": "error_rate > 0.01"}],
        "traffic": {},
    }


BASE = _base()
FIRST_AGENT = f"agent-prod-app-{1:0{len(str(MAX_AGENTS))}d}"

# Valid for the schema, refused by the loader because of another field.
CROSS_FIELD = [
    (("alerts", 0, "scope"), "global"),  # error_rate is a per-experiment metric
    # Experiments refer to pipelines, faults to experiments.
    *((path, empty) for path in [("pipelines",), ("experiments",)] for empty in (None, [])),
]


def _good(spec: Spec) -> list[Any]:
    """Values at the edges of what `spec` allows."""
    if isinstance(spec, Number):
        return [spec.minimum, spec.maximum]
    if isinstance(spec, Integer):
        return [spec.minimum] + ([spec.maximum] if spec.maximum is not None else [])
    if isinstance(spec, Boolean):
        return [True, False]
    if isinstance(spec, Choice):
        return list(spec.choices)
    if isinstance(spec, Codes):
        return [v for lo, hi in spec.ranges for v in (lo, hi)]
    if isinstance(spec, Text):
        # Any other string may break a reference: ids are in the base already.
        return ["u" * spec.max_length] if spec.max_length is not None else []
    if isinstance(spec, Duration):
        lo = spec.minimum if spec.minimum > 0 else math.nextafter(0, 1) if spec.positive else 0
        hi = min(spec.maximum, MAX_DURATION)
        return [lo, hi, format_duration(hi), "1s", " 1.5 m "]
    if isinstance(spec, Start):
        return ["1970-01-01T00:00:00Z", "9000-01-01T00:00:00Z"]
    if isinstance(spec, Condition):
        return [f"{m} > 1" for m in EXPERIMENT_METRICS + GLOBAL_METRICS] + ["error_rate<=-1.5e-3"]
    if isinstance(spec, Weights):
        names = list(spec.name.choices) if isinstance(spec.name, Choice) else ["1.2.3", "2"]
        return [names, {n: 0 for n in names}, {names[0]: 1}]
    return []


def _bad(spec: Spec) -> list[Any]:
    """Values just past the edges of `spec`, or of another type."""
    if isinstance(spec, Number):
        below, above = (
            math.nextafter(spec.minimum, -math.inf),
            math.nextafter(spec.maximum, math.inf),
        )
        return [below, above, "1", True, [1]]
    if isinstance(spec, Integer):
        above = [spec.maximum + 1] if spec.maximum is not None else []
        return [spec.minimum - 1, *above, 1.5, "1", True]
    if isinstance(spec, Boolean):
        return ["true", 1]
    if isinstance(spec, Choice):
        return [spec.choices[0] + "x", 5]
    if isinstance(spec, Codes):
        edges = {v for lo, hi in spec.ranges for v in (lo - 1, hi + 1)}
        outside = sorted(v for v in edges if not any(lo <= v <= hi for lo, hi in spec.ranges))
        return [*outside, str(spec.ranges[0][0]), True]
    if isinstance(spec, Text):
        too_long = ["u" * (spec.max_length + 1)] if spec.max_length is not None else []
        return [5, "", "   ", ["x"], *too_long]
    if isinstance(spec, Duration):
        above = math.nextafter(min(spec.maximum, MAX_DURATION), math.inf)
        out = [-1, above, "5 parsecs", "1m30s", "-1s", True, [1]]
        if spec.positive:
            out += [0, "0s", "0.0ms"]
        if spec.minimum > 0:
            out.append(math.nextafter(spec.minimum, 0))
        return out
    if isinstance(spec, Start):
        return [5, True, [1]]
    if isinstance(spec, Condition):
        return ["cpu > 3", "error_rate >> 1", "error_rate > 1 or 1", "error_rates > 1", 5, ""]
    if isinstance(spec, Labels):
        return [
            5,
            "x",
            ["a"],
            {"a": 5},
            {"a": ""},
            {"a": "u" * 65},
            {f"k{i}": "v" for i in range(33)},
        ]
    if isinstance(spec, Weights):
        out = [[], {}, "1.2.3", [""], [5], {"1.2.3": 2}, {"1.2.3": -0.5}]
        if isinstance(spec.name, Choice):
            out += [["nope"], {"nope": 1}]
        return out
    if isinstance(spec, OneOrAgents):
        # A list is a list of agent ids here, so the single value's wrong lists are not.
        alone = [v for v in _bad(spec.single) if not isinstance(v, list)]
        return [*alone, [], [5], [""], ["a", "a"], {"a": 1}]
    if isinstance(spec, Mapping):
        return [5, "x", [1]]
    if isinstance(spec, ListOf):
        return [5, "x", {"a": 1}]
    return []


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


def _set(base: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def _drop(base: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    doc = copy.deepcopy(base)
    del _get(doc, path[:-1])[path[-1]]
    return doc


@dataclasses.dataclass(frozen=True)
class _Gen:
    """Makes cases from one base document."""

    base: dict[str, Any]
    tag: str = ""  # names the base in the labels

    def set(self, path: tuple[Any, ...], value: Any, where: Any, hint: bool = False) -> Case:
        what = f"= {value!r}" + (" ok" if where is None else "")
        return Case(self._label(path, what), _set(self.base, path, value), where, hint)

    def drop(self, path: tuple[Any, ...], where: tuple[Any, ...]) -> Case:
        return Case(self._label(path, "missing"), _drop(self.base, path), where)

    def _label(self, path: tuple[Any, ...], what: str) -> str:
        return f"{self.tag}{_path_text(path)} {what}"[:90]


def _value_cases(g: _Gen, f: Field, path: tuple[Any, ...]) -> Iterator[Case]:
    goods = _good(f.spec) + ([None] if f.nullable else [])
    if f.default is not None:
        goods.append(f.default)
    for v in goods:
        if (path, v) not in CROSS_FIELD:
            yield g.set(path, v, None)
    for v in _bad(f.spec) + ([] if f.nullable else [None]):
        yield g.set(path, v, path, hint=isinstance(f.spec, Choice) and isinstance(v, str))
    yield from _nested(g, f.spec, path)


def _key_cases(g: _Gen, names: list[str], path: tuple[Any, ...]) -> Iterator[Case]:
    # A misspelt field: refused, with the right spelling suggested.
    typo = names[0] + "x" if names else "bogus"
    yield g.set(path + (typo,), 1, path + (typo,), hint=bool(names))


def _mapping_cases(g: _Gen, spec: Mapping, path: tuple[Any, ...]) -> Iterator[Case]:
    yield from _key_cases(g, list(spec.fields), path)
    for name, f in spec.fields.items():
        if f.required:
            yield g.drop(path + (name,), path)
        yield from _value_cases(g, f, path + (name,))


def _fault_cases(g: _Gen, path: tuple[Any, ...]) -> Iterator[Case]:
    kind = FAULT_TYPES[_get(g.base, path)["type"]]
    yield from _key_cases(g, list(FAULT_FIELDS), path)
    yield from _value_cases(g, FAULT_FIELDS["at"], path + ("at",))
    for v in _bad(FAULT_FIELDS["type"].spec):
        yield g.set(path + ("type",), v, path + ("type",), hint=isinstance(v, str))
    for name in ("at", "type"):
        yield g.drop(path + (name,), path)
    duration = Field(kind.duration, "", required=kind.needs_duration)
    yield from _value_cases(g, duration, path + ("duration",))
    if kind.needs_duration:
        yield g.drop(path + ("duration",), path + ("duration",))
    target = path + ("target",)
    if kind.target == "none":
        yield g.set(target, "global", target)
    elif kind.target == "global":
        yield g.set(target, "global", None)
        yield g.set(target, "exp-1", target)
    elif kind.target == "experiment":
        yield g.drop(target, target)
    else:
        yield g.set(target, "global", None)
        yield g.set(target, "exp-1" if kind.target == "global or experiment" else FIRST_AGENT, None)
    yield from _value_cases(g, Field(kind.parameters, "", nullable=True), path + ("params",))


def _nested(g: _Gen, spec: Spec, path: tuple[Any, ...]) -> Iterator[Case]:
    if isinstance(spec, Mapping):
        yield from _mapping_cases(g, spec, path)
    elif isinstance(spec, FaultSpec):
        yield from _fault_cases(g, path)
    elif isinstance(spec, ListOf) and isinstance(spec.item, FaultSpec):
        # Each fault type in a document of its own: the documents stay small, and so
        # the run short.
        for fault in _get(BASE, path):
            alone = _Gen(_set(g.base, path, [fault]), f"{fault['type']}: ")
            yield from _nested(alone, spec.item, path + (0,))
    elif isinstance(spec, ListOf):
        yield from _nested(g, spec.item, path + (0,))


CASES = [
    Case("the base", BASE, None),
    *_mapping_cases(_Gen({**BASE, "faults": []}), SCENARIO, ()),
]

# libyaml's emitter where PyYAML has it: the cases are many.
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _loader_error(doc: dict[str, Any]) -> ScenarioError | None:
    try:
        parse_scenario(yaml.dump(doc, Dumper=_Dumper, sort_keys=False), source="t.yaml")
    except ScenarioError as exc:
        return exc
    return None


def _walk_fields(spec: Spec) -> Iterator[Field]:
    children: list[Field] = []
    if isinstance(spec, Mapping):
        children = list(spec.fields.values())
    elif isinstance(spec, ListOf):
        yield from _walk_fields(spec.item)
    elif isinstance(spec, FaultSpec):
        children = list(FAULT_FIELDS.values())
        children += [f for kind in FAULT_TYPES.values() for f in kind.params.values()]
    for f in children:
        yield f
        yield from _walk_fields(f.spec)


def test_every_field_has_values_to_refuse():
    # A new kind of Spec that _bad() does not know would be covered by nothing.
    assert [f.doc for f in _walk_fields(SCENARIO) if not _bad(f.spec)] == []
    assert sum(c.where is not None for c in CASES) > 700
    assert sum(c.where is None for c in CASES) > 400


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_the_loader_and_the_schema_agree(case: Case):
    exc = _loader_error(case.doc)
    errors = list(VALIDATOR.iter_errors(case.doc))
    assert DRAFT7.is_valid(case.doc) == (not errors), "draft-07 reads the schema otherwise"
    if case.where is None:
        assert exc is None, f"the loader refused it: {exc}"
        assert errors == [], [f"{e.json_path}: {e.message}" for e in errors]
        return
    assert exc is not None, "the loader accepted it"
    assert errors, "the schema accepted it"
    # The loader names the file, the field and its line ...
    field = _path_text(case.where) if case.where else None
    assert exc.field == field or (
        field is not None
        and exc.field is not None
        and re.match(re.escape(field) + r"[.\[]", exc.field)
    ), str(exc)
    assert re.match(r"t\.yaml: \S.* \(line \d+\): ", str(exc)), str(exc)
    if case.hint:
        assert "(did you mean '" in str(exc), str(exc)
    # ... and the schema points at the same place (or the mapping it is in).
    paths = [tuple(e.absolute_path) for e in errors]
    assert any(p == case.where[: len(p)] or case.where == p[: len(case.where)] for p in paths), (
        paths
    )


def _fault(ftype: str) -> int:
    return list(FAULT_TYPES).index(ftype)  # the base has one fault of each type


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        (
            {("faults", _fault("close_connections"), "params", "code"): 4000.0},
            "4000.0 is 4000 in JSON",
        ),
        ({("faults", _fault("latency"), "duration"): "2h"}, "a string duration's bound"),
        ({("intervals", "metrics"): "500ms"}, "a string duration's bound"),
        ({("start",): "9999-12-31T00:00:00Z"}, "a string start's bound"),
        ({("experiments", 0, "candidate"): "nope"}, "a reference to a pipeline"),
        ({("pipelines", 1, "id"): "base"}, "a duplicate id"),
        ({("faults", _fault("spike"), "target"): "exp-2"}, "a fault's target experiment"),
        ({("faults", _fault("agents_leave"), "target"): "agent-x"}, "a fault's target agent"),
        ({("alerts", 0, "scope"): "global"}, "an alert's scope against its metric"),
        ({("alerts", 0, "condition"): "error_rate > 1e999"}, "a condition's number"),
        (
            {("experiments", 0, "start_at"): "0s", ("experiments", 0, "create_at"): "1m"},
            "start_at before create_at",
        ),
    ],
)
def test_what_only_the_loader_checks(changes: dict[tuple[Any, ...], Any], why: str):
    """Rules JSON Schema cannot state (another field, a bound on a string): an editor
    accepts these, the loader refuses them, naming the first field changed."""
    doc = copy.deepcopy(BASE)
    for path, value in changes.items():
        _get(doc, path[:-1])[path[-1]] = value
    assert list(VALIDATOR.iter_errors(doc)) == [], why
    exc = _loader_error(doc)
    assert exc is not None and exc.field == _path_text(next(iter(changes))), why
