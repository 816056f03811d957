"""Simulated time helpers: RFC 3339, durations and periodic schedules."""

import pytest

from simulator.clock import Periodic, format_duration, parse_duration, parse_rfc3339, rfc3339


def test_rfc3339_round_trip_whole_seconds():
    assert rfc3339(1705744800.0) == "2024-01-20T10:00:00Z"
    assert rfc3339(1705744800.9) == "2024-01-20T10:00:00Z"
    assert parse_rfc3339("2024-01-20T10:00:00Z") == 1705744800.0
    assert parse_rfc3339("2024-01-20T11:00:00+01:00") == 1705744800.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("2m", 120), ("1.5h", 5400), ("1d", 86400), ("250ms", 0.25), (45, 45)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-1s", "1w", True, None, [1]])
def test_parse_duration_rejects(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_format_duration():
    assert format_duration(120) == "2m"
    assert format_duration(90) == "90s"


def test_periodic_counts_any_interval():
    every_ten = Periodic(10)
    assert [every_ten.due(k) for k in range(21)].count(1) == 3  # 0, 10, 20
    fast = Periodic(0.25)
    assert [fast.due(k) for k in range(4)] == [1, 4, 4, 4]
    third = Periodic(1 / 3)
    assert sum(third.due(k) for k in range(301)) == 901  # exact: no drift


def test_periodic_rate_change_keeps_its_place():
    p = Periodic(10)
    assert p.due(0) == 1
    p.set_interval(2, 5)
    assert [k for k in range(5, 12) if p.due(k)] == [5, 7, 9, 11]
