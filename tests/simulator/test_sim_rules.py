"""Alert rules: the safe condition parser and the rule book's for/resolve logic."""

import pytest

from simulator.rules import RuleBook, RuleError, parse_condition
from simulator.scenario import AlertRule


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("error_rate > 0.01", ("error_rate", ">", 0.01)),
        ("  active_agents<148 ", ("active_agents", "<", 148.0)),
        ("reduction_rate >= .5", ("reduction_rate", ">=", 0.5)),
        ("total_mps != 1e6", ("total_mps", "!=", 1e6)),
        ("candidate_mps == -3", ("candidate_mps", "==", -3.0)),
        ("baseline_mps <= 10", ("baseline_mps", "<=", 10.0)),
    ],
)
def test_parse_valid(text, parsed):
    assert parse_condition(text) == parsed


@pytest.mark.parametrize(
    "text",
    [
        "error_rate > ",
        "error_rate => 0.1",
        "error_rate > 0.1 and total_mps > 1",
        "__import__('os').system('true') > 0",
        "error_rate > 0.01; import os",
        "cpu > 3",  # unknown metric
        "error_rate > nan",
        "error_rate > 1e999",
        "",
    ],
)
def test_parse_invalid(text):
    with pytest.raises(RuleError):
        parse_condition(text)


def _rule(condition, for_seconds, scope):
    metric, op, threshold = parse_condition(condition)
    return AlertRule("R", condition, metric, op, threshold, for_seconds, "critical", scope)


def test_rule_fires_after_for_and_resolves():
    book = RuleBook((_rule("error_rate > 0.01", 20, "experiments"),))
    exp = {"e1": {"error_rate": 0.02}}
    assert book.evaluate(0, {}, exp) == ([], [])
    assert book.evaluate(10, {}, exp) == ([], [])
    fired, _ = book.evaluate(20, {}, exp)
    assert [(a.experiment_id, a.current_value) for a in fired] == [("e1", 0.02)]
    assert book.evaluate(30, {}, exp) == ([], [])  # no re-fire while active
    _, resolved = book.evaluate(40, {}, {"e1": {"error_rate": 0.001}})
    assert resolved[0].resolved_at == 40


def test_blip_shorter_than_for_never_fires():
    book = RuleBook((_rule("active_agents < 10", 30, "global"),))
    assert book.evaluate(0, {"active_agents": 5}, {}) == ([], [])
    assert book.evaluate(10, {"active_agents": 50}, {}) == ([], [])
    assert book.evaluate(40, {"active_agents": 5}, {}) == ([], [])


def test_vanished_experiment_resolves_its_alert():
    book = RuleBook((_rule("error_rate > 0.01", 0, "experiments"),))
    fired, _ = book.evaluate(0, {}, {"e1": {"error_rate": 0.5}})
    assert fired
    _, resolved = book.evaluate(10, {}, {})
    assert [a.alert_id for a in resolved] == [fired[0].alert_id]


def test_and_binds_tighter_than_or():
    from simulator.rules import holds, parse_conditions

    cond = parse_conditions("error_rate > 0.01 and candidate_mps < 100 or reduction_rate < 0.2")
    assert cond == (
        (("error_rate", ">", 0.01), ("candidate_mps", "<", 100.0)),
        (("reduction_rate", "<", 0.2),),
    )
    base = {"error_rate": 0.0, "candidate_mps": 500.0, "reduction_rate": 0.5}
    assert not holds(cond, base)
    assert not holds(cond, {**base, "error_rate": 0.02})  # the first `and` half only
    assert holds(cond, {**base, "error_rate": 0.02, "candidate_mps": 50.0})
    assert holds(cond, {**base, "reduction_rate": 0.1})


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("error_rate > 0.01 and total_mps > 1", "may not mix"),
        ("error_rate > 0.01 and", "expected '<metric> <op> <number>'"),
        ("error_rate > 0.01 nand total_mps > 1", "expected '<metric> <op> <number>'"),
        (" or ".join(["error_rate > 0.01"] * 17), "at most 16 comparisons"),
        ("error_rate > 0.01 and __import__('os') > 1", "expected '<metric> <op> <number>'"),
    ],
)
def test_bad_compound_conditions_say_why(text, problem):
    from simulator.rules import parse_conditions

    with pytest.raises(RuleError, match=problem):
        parse_conditions(text)


def test_a_compound_rule_fires_on_either_branch_and_resolves_when_neither_holds():
    from simulator.scenario import parse_scenario

    sc = parse_scenario(
        "name: t\nalerts:\n"
        "  - {name: Low, condition: 'active_agents < 140 or total_mps < 1000', for: 0s}\n"
    )
    book = RuleBook(sc.alerts)
    fired, _ = book.evaluate(0, {"active_agents": 150, "total_mps": 500}, {})
    assert [a.current_value for a in fired] == [150]  # the first metric named
    _, resolved = book.evaluate(10, {"active_agents": 150, "total_mps": 5000}, {})
    assert len(resolved) == 1
    with pytest.raises(
        Exception, match=r"alerts\[0\]\.condition \(line 3\): a condition may not mix"
    ):
        parse_scenario(
            "name: t\nalerts:\n  - {name: X, condition: 'error_rate > 1 and total_mps < 2'}\n"
        )


def test_a_resolved_alert_says_why():
    """Issue 11, item 5: cleared, or its experiment ended with the condition still true."""
    book = RuleBook((_rule("error_rate > 0.01", 0, "experiments"),))
    book.evaluate(0, {}, {"e1": {"error_rate": 0.02}, "e2": {"error_rate": 0.02}})
    _, resolved = book.evaluate(10, {}, {"e1": {"error_rate": 0.001}})
    reasons = {a.experiment_id: a.reason for a in resolved}
    assert reasons == {"e1": "condition_cleared", "e2": "experiment_ended"}
    assert {a.to_dict()["resolution"] for a in resolved} == {
        "condition_cleared",
        "experiment_ended",
    }
