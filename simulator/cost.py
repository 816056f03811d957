"""Cost formulas: what a rate of data points costs per hour, and money rounding.

cost per hour = mps x 3600 / 1e6 x price per million points. With the default price
(exactly 1/12 USD) 1,250,000 mps costs 375.00 USD per hour, as in the API reference.
"""

from __future__ import annotations


def cost_per_hour(mps: float, price_per_million: float) -> float:
    return mps * 3600.0 / 1e6 * price_per_million


def cost_per_second(mps: float, price_per_million: float) -> float:
    return mps / 1e6 * price_per_million


def money(usd: float) -> float:
    """Round to cents; adding 0.0 turns -0.0 into 0.0 so JSON never shows "-0.0"."""
    return round(usd, 2) + 0.0


def cost_update(
    total_mps: int,
    contributions: list[tuple[str, float]],
    price_per_million: float,
) -> dict[str, object]:
    """The cost.update figures, rounded so they add up exactly at two decimals.

    Each contribution (experiment id, saved mps) is rounded first; savings are their sum
    and optimized = baseline - savings, so a client can check the arithmetic.

    A contribution is never negative (a candidate that, say, spikes above its baseline
    saves nothing; it does not add cost), and savings never exceed the baseline: if the
    contributions claim more points than the fleet sends (a spiking baseline variant),
    they are scaled down to it, and a cent left over by rounding comes off the largest.
    So 0 <= savings <= baseline and 0 <= optimized <= baseline always.
    """
    baseline = money(cost_per_hour(total_mps, price_per_million))
    saved_mps = [max(0.0, saved) for _, saved in contributions]
    claimed = sum(saved_mps)
    if claimed > total_mps:
        saved_mps = [s * total_mps / claimed for s in saved_mps]
    amounts = [money(cost_per_hour(saved, price_per_million)) for saved in saved_mps]
    excess = round(sum(amounts) - baseline, 2)
    while excess > 0 and amounts:
        i = max(range(len(amounts)), key=lambda j: amounts[j])
        cut = min(excess, amounts[i])
        amounts[i] = money(amounts[i] - cut)
        excess = round(excess - cut, 2)
    items = [
        {"experiment_id": exp_id, "contribution_usd": usd}
        for (exp_id, _), usd in zip(contributions, amounts, strict=True)
    ]
    savings = money(sum(amounts))
    return {
        "baseline_cost_per_hour": baseline,
        "optimized_cost_per_hour": money(baseline - savings),
        "savings_per_hour": savings,
        "active_optimizations": items,
    }
