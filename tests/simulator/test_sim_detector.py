"""The EWMA anomaly detector: flags injected changes, stays quiet on plain noise."""

import numpy as np

from simulator.detector import COOLDOWN, Detector


def _noise(rng, n, level=150_000.0, rel=0.01):
    return level * (1 + rel * np.clip(rng.standard_normal(n), -2.5, 2.5))


def test_plain_noise_is_not_an_anomaly():
    rng = np.random.default_rng(1)
    det = Detector()
    for i, v in enumerate(_noise(rng, 2000)):
        assert det.observe(i * 10.0, "e", "candidate_mps", float(v)) is None


def test_sudden_drop_is_flagged_with_its_range():
    rng = np.random.default_rng(2)
    det = Detector()
    for i, v in enumerate(_noise(rng, 30)):
        assert det.observe(i * 10.0, "e", "candidate_mps", float(v)) is None
    found = det.observe(300.0, "e", "candidate_mps", 50_000.0)
    assert found is not None
    assert found.type == "sudden_drop"
    assert found.severity == "critical"
    lo, hi = found.expected_range
    assert lo < 150_000 < hi and not lo < 50_000 < hi
    # Ongoing: no second finding within the cool-down; a drop that lasts that long is
    # the new normal (adapted, not reported again against the stale range).
    assert det.observe(310.0, "e", "candidate_mps", 50_000.0) is None
    assert det.observe(300.0 + COOLDOWN, "e", "candidate_mps", 50_000.0) is None


def test_types_follow_metric_and_direction():
    det = Detector()
    for i in range(30):
        t = i * 10.0
        det.observe(t, "e", "candidate_mps", 1000.0)
        det.observe(t, "e", "error_rate", 1e-4)
        det.observe(t, "e", "candidate_series", 0.25)
    assert det.observe(300.0, "e", "candidate_mps", 3000.0).type == "spike"
    assert det.observe(300.0, "e", "error_rate", 0.02).type == "error_surge"
    assert det.observe(300.0, "e", "candidate_series", 1.0).type == "cardinality_explosion"
    assert det.observe(300.0, "e", "error_rate", 0.0) is None  # fewer errors is fine


def test_warm_up_hides_early_samples():
    det = Detector()
    det.observe(0.0, "e", "baseline_mps", 1000.0)
    assert det.observe(10.0, "e", "baseline_mps", 10.0) is None


def test_lasting_level_shift_fires_once():
    # 1000 every 10 s, then 500 for good from t=600: one finding, at 600 only.
    det = Detector()
    fired = []
    for i in range(200):
        t = i * 10.0
        if det.observe(t, "e", "baseline_mps", 1000.0 if t < 600 else 500.0):
            fired.append(t)
    assert fired == [600.0]


def test_a_new_incident_after_adapting_still_fires():
    det = Detector()
    fired = []
    for i in range(300):
        t = i * 10.0
        value = 1000.0 if t < 600 else 500.0 if t < 1500 else 2000.0
        if det.observe(t, "e", "baseline_mps", value):
            fired.append(t)
    assert fired == [600.0, 1500.0]


def _run(det, series, metric="candidate_mps", step=10.0):
    found = []
    for i, v in enumerate(series):
        f = det.observe(i * step, "e", metric, float(v))
        if f is not None:
            found.append((i * step, f.type, f.severity))
    return found


def test_the_recovery_after_a_reported_outage_is_not_a_new_spike():
    """Issue 11, item 9: a drop that lasts past ADAPT_AFTER becomes the normal level;
    going back to the old level afterwards is the recovery, not a critical spike."""
    rng = np.random.default_rng(3)
    normal = _noise(rng, 60)
    outage = _noise(rng, 60, level=30_000.0)  # ten minutes at a fifth
    after = _noise(rng, 60)
    found = _run(Detector(), [*normal, *outage, *after])
    assert [f[1] for f in found] == ["sudden_drop"], found
    assert found[0][0] == 600.0


def test_the_end_of_a_cardinality_explosion_is_not_a_sudden_drop():
    rng = np.random.default_rng(4)
    normal = _noise(rng, 60, level=0.25)
    explosion = _noise(rng, 60, level=1.25)  # five times the series per point
    after = _noise(rng, 60, level=0.25)
    found = _run(Detector(), [*normal, *explosion, *after], metric="candidate_series")
    assert [f[1] for f in found] == ["cardinality_explosion"], found


def test_a_new_drop_after_a_recovery_is_flagged_again():
    rng = np.random.default_rng(5)
    series = [
        *_noise(rng, 60),
        *_noise(rng, 60, level=30_000.0),
        *_noise(rng, 60),
        *_noise(rng, 10, level=30_000.0),
    ]
    found = _run(Detector(), series)
    assert [f[1] for f in found] == ["sudden_drop", "sudden_drop"], found


def test_a_recovery_that_ramps_down_is_not_a_drop_on_the_way():
    rng = np.random.default_rng(6)
    normal = _noise(rng, 60, level=0.25)
    explosion = _noise(rng, 60, level=1.0)
    ramp_down = np.linspace(1.0, 0.25, 12) * (1 + 0.01 * rng.standard_normal(12))
    after = _noise(rng, 60, level=0.25)
    found = _run(Detector(), [*normal, *explosion, *ramp_down, *after], metric="candidate_series")
    assert [f[1] for f in found] == ["cardinality_explosion"], found
