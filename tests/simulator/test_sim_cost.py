"""Cost formulas and their rounding."""

from simulator.cost import cost_per_hour, cost_update, money
from simulator.scenario import DEFAULT_PRICE_PER_MILLION


def test_reference_figure_375_per_hour():
    assert money(cost_per_hour(1_250_000, DEFAULT_PRICE_PER_MILLION)) == 375.00
    assert money(cost_per_hour(1_250_000 * 0.3, DEFAULT_PRICE_PER_MILLION)) == 112.50


def test_cost_update_adds_up_to_the_cent():
    data = cost_update(1_250_000, [("a", 500_000 * 0.7), ("b", 123_457.0)], 1 / 12)
    assert data["baseline_cost_per_hour"] == 375.00
    contributions = [i["contribution_usd"] for i in data["active_optimizations"]]
    assert contributions == [105.0, 37.04]
    assert data["savings_per_hour"] == round(sum(contributions), 2)
    assert data["optimized_cost_per_hour"] == round(
        data["baseline_cost_per_hour"] - data["savings_per_hour"], 2
    )


def test_no_optimizations_means_no_savings():
    data = cost_update(0, [], 1 / 12)
    assert data == {
        "baseline_cost_per_hour": 0.0,
        "optimized_cost_per_hour": 0.0,
        "savings_per_hour": 0.0,
        "active_optimizations": [],
    }
