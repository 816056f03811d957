"""Alert rules: a tiny safe parser for conditions and the rule book.

A condition is one comparison, ``<metric> <op> <number>``, or several joined by `and`
and `or` (`and` binds tighter; no parentheses): ``error_rate > 0.01 and candidate_mps <
100000 or reduction_rate < 0.2``. Conditions come from scenario files that users write,
so each comparison is matched by one regular expression and evaluated with `operator`
functions: there is no `eval`, nothing but known metrics, comparisons and numbers is
accepted, and a condition has at most MAX_CLAUSES comparisons.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from simulator.clock import rfc3339

EXPERIMENT_METRICS: tuple[str, ...] = (
    "error_rate",
    "baseline_error_rate",
    "reduction_rate",
    "candidate_mps",
    "baseline_mps",
    "candidate_series",
    "baseline_series",
)
GLOBAL_METRICS: tuple[str, ...] = ("total_mps", "total_series", "active_agents")

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}

_CONDITION = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*"
    r"(?P<op>>=|<=|==|!=|>|<)\s*"
    r"(?P<number>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)


MAX_CLAUSES = 16
_JOINER = re.compile(r"\s+(and|or)\s+")

Clause = tuple[str, str, float]  # metric, operator, threshold
# Any of (all of these comparisons): `or` of `and`s, as written.
Conditions = tuple[tuple[Clause, ...], ...]


class RuleError(ValueError):
    """A condition that does not parse; the message says what was expected."""


def parse_conditions(text: str) -> Conditions:
    """``"a > 1 and b < 2 or c == 0"`` -> ``(((a, >, 1), (b, <, 2)), ((c, ==, 0),))``.
    Every metric is of one scope: an experiment's or the fleet's (`scope_of`)."""
    if not isinstance(text, str):
        raise RuleError("expected a condition such as 'error_rate > 0.01'")
    parts = _JOINER.split(text.strip())
    clauses = parts[0::2]
    if len(clauses) > MAX_CLAUSES:
        raise RuleError(f"at most {MAX_CLAUSES} comparisons in one condition")
    groups: list[list[Clause]] = [[parse_condition(clauses[0])]]
    for joiner, clause in zip(parts[1::2], clauses[1:], strict=True):
        if joiner == "or":
            groups.append([])
        groups[-1].append(parse_condition(clause))
    scopes = {scope_of(m) for group in groups for m, _, _ in group}
    if len(scopes) > 1:
        raise RuleError(
            "a condition may not mix an experiment's metrics with the fleet's "
            f"({', '.join(GLOBAL_METRICS)}), got {text!r}"
        )
    return tuple(tuple(g) for g in groups)


def holds(conditions: Conditions, values: Mapping[str, float]) -> bool:
    return any(all(OPERATORS[op](values[m], x) for m, op, x in group) for group in conditions)


def parse_condition(text: str) -> tuple[str, str, float]:
    """``"error_rate > 0.01"`` -> ``("error_rate", ">", 0.01)``."""
    if not isinstance(text, str):
        raise RuleError("expected a condition such as 'error_rate > 0.01'")
    match = _CONDITION.match(text)
    if match is None:
        raise RuleError(
            f"expected '<metric> <op> <number>' with op one of {' '.join(OPERATORS)}, "
            f"joined by 'and' or 'or', got {text!r}"
        )
    metric = match.group("metric")
    if metric not in EXPERIMENT_METRICS and metric not in GLOBAL_METRICS:
        known = ", ".join(EXPERIMENT_METRICS + GLOBAL_METRICS)
        raise RuleError(f"unknown metric '{metric}'; known: {known}")
    number = float(match.group("number"))
    if not math.isfinite(number):
        raise RuleError(f"expected a finite number, got {match.group('number')!r}")
    return metric, match.group("op"), number


def scope_of(metric: str) -> str:
    return "experiments" if metric in EXPERIMENT_METRICS else "global"


@dataclass(slots=True)
class Alert:
    """One firing of one rule (for one experiment, or globally)."""

    alert_id: str
    name: str
    severity: str
    experiment_id: str | None
    condition: str
    current_value: float
    triggered_at: float
    resolved_at: float | None = None
    # Why it resolved: "condition_cleared", or "experiment_ended" (its experiment stopped
    # running while the condition still held, so nothing can clear it any more).
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alert_id": self.alert_id,
            "name": self.name,
            "severity": self.severity,
            "experiment_id": self.experiment_id,  # null for a fleet-wide alert
        }
        out.update(
            condition=self.condition,
            current_value=self.current_value,
            status="active" if self.resolved_at is None else "resolved",
            triggered_at=rfc3339(self.triggered_at),
            resolved_at=None if self.resolved_at is None else rfc3339(self.resolved_at),
            resolution=self.reason,
        )
        return out


class RuleBook:
    """Evaluates every rule on each metrics sample and tracks pending and firing alerts.

    A rule fires once its condition has held on consecutive samples for its `for`
    duration, and resolves on the first sample where it no longer holds or its subject
    (an experiment that stopped running) is gone.
    """

    HISTORY = 200  # resolved alerts kept for snapshots; bounded for long runs

    def __init__(self, rules: tuple[Any, ...], issued: int = 0) -> None:
        self.rules = rules
        self._pending: dict[tuple[int, str | None], float] = {}
        self.active: dict[tuple[int, str | None], Alert] = {}
        self.resolved: list[Alert] = []
        self._counter = issued  # alert ids handed out before (an earlier run's)

    @property
    def issued(self) -> int:
        return self._counter

    def evaluate(
        self,
        t: float,
        global_values: Mapping[str, float],
        experiments: Mapping[str, Mapping[str, float]],
    ) -> tuple[list[Alert], list[Alert]]:
        """Returns (triggered, resolved) alerts for this sample, in rule order."""
        triggered: list[Alert] = []
        resolved: list[Alert] = []
        for index, rule in enumerate(self.rules):
            subjects: dict[str | None, Mapping[str, float]] = {}
            if rule.scope == "global":
                subjects[None] = global_values
            else:
                for exp_id, values in experiments.items():
                    subjects[exp_id] = values
            for subject, values in subjects.items():
                key = (index, subject)
                value = values[rule.metric]  # the first metric named: the alert's value
                if holds(rule.conditions or (((rule.metric, rule.op, rule.threshold),),), values):
                    since = self._pending.setdefault(key, t)
                    if key not in self.active and t - since >= rule.for_seconds:
                        self._counter += 1
                        alert = Alert(
                            alert_id=f"alert-{self._counter}",
                            name=rule.name,
                            severity=rule.severity,
                            experiment_id=subject,
                            condition=rule.condition,
                            current_value=value,
                            triggered_at=t,
                        )
                        self.active[key] = alert
                        triggered.append(alert)
                else:
                    self._pending.pop(key, None)
                    if key in self.active:
                        resolved.append(self._resolve(key, t, "condition_cleared"))
            # Subjects that vanished (experiment no longer running) resolve too.
            for key in [k for k in self._pending if k[0] == index and k[1] not in subjects]:
                del self._pending[key]
                if key in self.active:
                    resolved.append(self._resolve(key, t, "experiment_ended"))
        return triggered, resolved

    def _resolve(self, key: tuple[int, str | None], t: float, reason: str) -> Alert:
        alert = self.active.pop(key)
        alert.resolved_at = t
        alert.reason = reason
        self.resolved.append(alert)
        del self.resolved[: -self.HISTORY]
        return alert

    def all_alerts(self) -> list[Alert]:
        return sorted(
            [*self.resolved, *self.active.values()], key=lambda a: int(a.alert_id.split("-")[1])
        )
