"""Cost formulas and their rounding, and cost following series at a price."""

import pytest

from simulator.cost import Prices, cost_update, money
from simulator.scenario import DEFAULT_PRICE_PER_MILLION


def test_reference_figure_375_per_hour():
    prices = Prices(DEFAULT_PRICE_PER_MILLION)
    assert money(prices.per_hour(1_250_000)) == 375.00
    assert money(prices.per_hour(1_250_000 * 0.3)) == 112.50
    # Series are free unless priced, however many.
    assert money(prices.per_hour(1_250_000, 10**9)) == 375.00


def test_cost_update_adds_up_to_the_cent():
    data = cost_update(
        1_250_000, 312_500, [("a", 500_000 * 0.7, 0.0), ("b", 123_457.0, 9.0)], Prices(1 / 12)
    )
    assert data["baseline_cost_per_hour"] == 375.00
    contributions = [i["contribution_usd"] for i in data["active_optimizations"]]
    assert contributions == [105.0, 37.04]
    assert data["savings_per_hour"] == round(sum(contributions), 2)
    assert data["optimized_cost_per_hour"] == round(
        data["baseline_cost_per_hour"] - data["savings_per_hour"], 2
    )


def test_no_optimizations_means_no_savings():
    data = cost_update(0, 0, [], Prices(1 / 12))
    assert data == {
        "baseline_cost_per_hour": 0.0,
        "optimized_cost_per_hour": 0.0,
        "savings_per_hour": 0.0,
        "active_optimizations": [],
    }


def test_priced_series_add_to_the_cost_and_to_the_savings():
    # 720 hours a month: 1,000 series at 72 USD a month cost 0.10 USD an hour.
    prices = Prices(1 / 12, per_thousand_series=72.0)
    assert money(prices.per_hour(0, 1000)) == 0.10
    assert prices.per_second(0, 1000) * 3600 == prices.per_hour(0, 1000)
    data = cost_update(1_250_000, 400_000, [("a", 350_000, 100_000), ("b", 0.0, 50_000)], prices)
    assert data["baseline_cost_per_hour"] == 375.00 + 40.00
    assert [i["contribution_usd"] for i in data["active_optimizations"]] == [105.0 + 10.0, 5.0]
    assert data["savings_per_hour"] == 120.0 and data["optimized_cost_per_hour"] == 295.0


def test_a_contribution_that_adds_series_saves_nothing_and_savings_stay_under_baseline():
    prices = Prices(1 / 12, per_thousand_series=72.0)
    # "a" passes on more series than its baseline (an adaptive filter in an explosion):
    # they cost more than the points it saves, and it saves nothing. "b" claims more
    # than the fleet costs: it is cut to the baseline.
    data = cost_update(1_000_000, 100_000, [("a", 10_000, -100_000), ("b", 2e6, 1e6)], prices)
    (a, b) = data["active_optimizations"]
    assert a["contribution_usd"] == 0.0
    assert b["contribution_usd"] == data["baseline_cost_per_hour"] == 310.0
    assert data["optimized_cost_per_hour"] == 0.0


EXPLOSION = """
name: priced-series
price_per_thousand_series: {price}
fleet:
  agents: 40
  groups: [{{name: checkout, agents: 20}}]
traffic: {{bursts_per_agent_hour: 0, daily_amplitude: 0, trend_per_day: 0}}
pipelines:
  - {{id: base, template: baseline}}
  - {{id: cand, template: topk}}
experiments:
  - {{id: e1, baseline: base, candidate: cand, duration: 30m, agents: 20, group: checkout,
     deployment: {{failure_probability: 0, parallel: 20}}}}
faults:
  - {{at: 5m, type: cardinality_explosion, target: 'group:checkout', duration: 10m,
     params: {{factor: 6, ramp: 1m}}}}
"""


def _costs(price: float) -> dict[str, list[dict]]:
    from simulator import Engine
    from simulator.clock import parse_rfc3339
    from simulator.scenario import parse_scenario

    start = parse_rfc3339("2024-01-20T10:00:00Z")
    engine = Engine(parse_scenario(EXPLOSION.format(price=price)), seed=1, start=start)
    out: dict[str, list[dict]] = {"before": [], "during": []}
    for e in engine.advance_to(start + 14 * 60):
        if e.name == "cost.update":
            if start + 180 <= e.time < start + 290:
                out["before"].append(e.data)
            elif start + 420 <= e.time < start + 830:
                out["during"].append(e.data)
    return out


def _mean(items: list[dict], key: str) -> float:
    return sum(d[key] for d in items) / len(items)


def test_with_a_series_price_an_explosion_costs_money_and_fixing_it_saves_some():
    free, priced = _costs(0.0), _costs(300.0)
    # Without a price, series cost nothing: the explosion leaves the bill alone.
    assert _mean(free["during"], "baseline_cost_per_hour") == pytest.approx(
        _mean(free["before"], "baseline_cost_per_hour"), rel=0.05
    )
    # With one, the fleet's bill grows with its series...
    rise = _mean(priced["during"], "baseline_cost_per_hour") - _mean(
        priced["before"], "baseline_cost_per_hour"
    )
    assert rise > 0.3 * _mean(priced["before"], "baseline_cost_per_hour")
    # ... and the top-k candidate, which keeps a quarter of the growth, saves much more
    # while it lasts than the points alone save (it was worth less before it).
    gain = _mean(priced["during"], "savings_per_hour") - _mean(free["during"], "savings_per_hour")
    before = _mean(priced["before"], "savings_per_hour") - _mean(free["before"], "savings_per_hour")
    assert gain > 3 * before > 0
    for d in priced["before"] + priced["during"]:
        assert d["optimized_cost_per_hour"] == round(
            d["baseline_cost_per_hour"] - d["savings_per_hour"], 2
        )
