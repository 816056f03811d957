"""Anomaly detection on the simulated series: EWMA mean and variance, |z| > 3.

Anomalies are found, not scripted: scenarios inject causes (a drop, a spike, an error
surge, a cardinality explosion) into the model, and this detector sees their effect on
the numbers that `metrics.update` reports. The type follows from the metric and the
direction of the deviation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Z_THRESHOLD = 3.0
Z_CRITICAL = 5.0  # the original detector's "critical" band started at 5
# Memory in seconds, not samples, so that changing the metrics rate (set_rate) does not
# change what counts as sudden: about 10 samples at the 10 s default, like the
# original's 20-point window at a 30 s step scaled to our interval.
TAU = 100.0
WARMUP = 120.0  # seconds of history before a series may be flagged
MIN_SAMPLES = 5
COOLDOWN = 300.0  # seconds: one anomaly per series per ongoing incident
ADAPT_AFTER = 300.0  # seconds anomalous before a new level becomes the normal one
# After a lasting incident has become the normal level, how long the level before it is
# remembered, so that going back to it reads as the recovery it is.
PRIOR_MEMORY = 3600.0

# A floor on the standard deviation, relative to the mean: the model's noise is bounded
# well inside it, so plain noise never crosses |z| > 3, while a real fault (tens of
# percent) does. Error rates are noisier relative to their tiny mean.
MIN_REL_SD: dict[str, float] = {"mps": 0.02, "series": 0.02, "error_rate": 0.15}


@dataclass(slots=True)
class Finding:
    metric: str
    type: str
    severity: str
    z: float
    expected_range: tuple[float, float]
    actual_value: float


@dataclass(slots=True)
class _State:
    mean: float = 0.0
    var: float = 0.0
    n: int = 0
    first: float = 0.0  # time of the first sample learnt
    last: float = 0.0  # time of the last sample learnt
    anomalous_since: float | None = None
    last_fired: float = -math.inf
    # The normal level before a lasting incident was learnt as the new one: (mean, sd,
    # direction of the incident, until when it is remembered).
    prior: tuple[float, float, float, float] | None = None


def _kind(metric: str) -> str:
    if metric.endswith("_mps"):
        return "mps"
    if metric.endswith("_series"):
        return "series"
    return "error_rate"


def _classify(kind: str, z: float) -> str | None:
    if kind == "mps":
        return "spike" if z > 0 else "sudden_drop"
    if kind == "series":
        return "cardinality_explosion" if z > 0 else "sudden_drop"
    return "error_surge" if z > 0 else None  # fewer errors is never an anomaly


class Detector:
    """One EWMA state per (subject, metric) series."""

    def __init__(self) -> None:
        self._states: dict[tuple[str, str], _State] = {}

    def reset(self, subject: str, metrics: tuple[str, ...] | None = None) -> None:
        """Forget a subject's history (all of it, or only `metrics`): its agent set
        changed, so its level did too."""
        for key in [k for k in self._states if k[0] == subject]:
            if metrics is None or key[1] in metrics:
                del self._states[key]

    def rescale(self, subject: str, metrics: tuple[str, ...], ratio: float) -> None:
        """The subject's level changed by a known ratio (an agent was swapped): move the
        learnt mean and spread with it instead of flagging the step or relearning."""
        for metric in metrics:
            state = self._states.get((subject, metric))
            if state is not None:
                state.mean *= ratio
                state.var *= ratio * ratio

    def observe(
        self, t: float, subject: str, metric: str, value: float, scale: float = 1.0
    ) -> Finding | None:
        """Judge one sample. `value` may be normalised (per agent, per point); `scale`
        turns it back into the reported metric for the expected range and actual value.
        """
        state = self._states.get((subject, metric))
        if state is None:
            state = self._states[(subject, metric)] = _State()
        kind = _kind(metric)
        finding = None
        anomalous = False
        if state.n >= MIN_SAMPLES and t - state.first >= WARMUP:
            sd = max(math.sqrt(state.var), MIN_REL_SD[kind] * abs(state.mean), 1e-12)
            z = (value - state.mean) / sd
            anomaly_type = _classify(kind, z) if abs(z) > Z_THRESHOLD else None
            if anomaly_type is not None and self._recovered(state, t, value, z):
                # Back to the level from before an incident already reported (the end of
                # an outage, of a cardinality explosion): a recovery, not a new anomaly
                # in the other direction. Learn the old level again.
                state.n = 0
                anomaly_type = None
            if anomaly_type is not None:
                anomalous = True
                if state.anomalous_since is None:
                    state.anomalous_since = t
                if t - state.anomalous_since >= ADAPT_AFTER:
                    # A lasting change is the new normal: learn it from scratch. Checked
                    # before the cooldown (as long as ADAPT_AFTER), so the level shift
                    # that already fired is not reported again against its stale range.
                    state.prior = (state.mean, sd, math.copysign(1.0, z), t + PRIOR_MEMORY)
                    state.n = 0
                    anomalous = False
                elif t - state.last_fired >= COOLDOWN:
                    state.last_fired = t
                    finding = Finding(
                        metric=metric,
                        type=anomaly_type,
                        severity="critical" if abs(z) >= Z_CRITICAL else "warning",
                        z=z,
                        expected_range=(
                            (state.mean - Z_THRESHOLD * sd) * scale,
                            (state.mean + Z_THRESHOLD * sd) * scale,
                        ),
                        actual_value=value * scale,
                    )
        if not anomalous:
            # An anomalous sample must not drag the baseline it is judged against.
            state.anomalous_since = None
            if state.n == 0:
                state.first = t
                state.last = t
            state.n += 1
            alpha = max(1.0 - math.exp(-(t - state.last) / TAU), 1.0 / state.n)
            state.last = t
            diff = value - state.mean
            state.mean += alpha * diff
            state.var = (1.0 - alpha) * (state.var + alpha * diff * diff)
        return finding

    @staticmethod
    def _recovered(state: _State, t: float, value: float, z: float) -> bool:
        prior = state.prior
        if prior is None:
            return False
        mean, sd, direction, until = prior
        if t > until:
            state.prior = None
            return False
        if math.copysign(1.0, z) == direction:
            return False
        # On the way back (an incident that ramps down takes several samples): anywhere
        # between the incident's level and the old one is recovering, not anomalous.
        if abs(value - mean) > abs(state.mean - mean) + Z_THRESHOLD * sd:
            return False
        if abs(value - mean) <= Z_THRESHOLD * sd:
            state.prior = None  # back: what comes next is judged afresh
        return True
