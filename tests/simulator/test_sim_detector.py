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
