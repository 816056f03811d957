"""Cost formulas: what a rate of data points (and, optionally, a number of active
series) costs per hour, and money rounding.

Points: cost per hour = mps x 3600 / 1e6 x price per million points. With the default
price (exactly 1/12 USD) 1,250,000 mps costs 375.00 USD per hour, as in the API reference.

Series: vendors that bill active series quote a price per 1,000 series a month; an hour
is a 720th of it (the platform's convention: monthly = hourly x 720). The default price is
0, so by default cost follows points alone, as the reference's figures do; a scenario that
sets one makes a cardinality explosion cost money, and fixing it save some.
"""

from __future__ import annotations

from dataclasses import dataclass

HOURS_PER_MONTH = 720.0


@dataclass(frozen=True, slots=True)
class Prices:
    per_million_points: float
    per_thousand_series: float = 0.0  # USD a month

    def per_hour(self, mps: float, series: float = 0.0) -> float:
        points = mps * 3600.0 / 1e6 * self.per_million_points
        if not self.per_thousand_series:
            return points  # exactly the points' formula (the reference's figures)
        return points + series / 1000.0 * self.per_thousand_series / HOURS_PER_MONTH

    def per_second(self, mps: float, series: float = 0.0) -> float:
        # Its own formula, not per_hour / 3600: the same floats as ever, so an
        # experiment's cost_saved_usd (and the golden stream) does not move by a cent.
        points = mps / 1e6 * self.per_million_points
        if not self.per_thousand_series:
            return points
        return points + series / 1000.0 * self.per_thousand_series / (HOURS_PER_MONTH * 3600.0)


def money(usd: float) -> float:
    """Round to cents; adding 0.0 turns -0.0 into 0.0 so JSON never shows "-0.0"."""
    return round(usd, 2) + 0.0


def cost_update(
    total_mps: int,
    total_series: float,
    contributions: list[tuple[str, float, float]],
    prices: Prices,
) -> dict[str, object]:
    """The cost.update figures, rounded so they add up exactly at two decimals.

    Each contribution (experiment id, saved mps, saved series) is priced and rounded
    first; savings are their sum and optimized = baseline - savings, so a client can
    check the arithmetic.

    A contribution is never negative (a candidate that, say, spikes above its baseline
    saves nothing; it does not add cost), and savings never exceed the baseline: if the
    contributions claim more than the fleet costs (a spiking baseline variant), they are
    scaled down to it, and a cent left over by rounding comes off the largest.
    So 0 <= savings <= baseline and 0 <= optimized <= baseline always.
    """
    whole = prices.per_hour(total_mps, total_series)
    baseline = money(whole)
    saved = [max(0.0, prices.per_hour(mps, series)) for _, mps, series in contributions]
    claimed = sum(saved)
    if claimed > whole:
        saved = [s * whole / claimed for s in saved]
    amounts = [money(s) for s in saved]
    excess = round(sum(amounts) - baseline, 2)
    while excess > 0 and amounts:
        i = max(range(len(amounts)), key=lambda j: amounts[j])
        cut = min(excess, amounts[i])
        amounts[i] = money(amounts[i] - cut)
        excess = round(excess - cut, 2)
    items = [
        {"experiment_id": exp_id, "contribution_usd": usd}
        for (exp_id, _, _), usd in zip(contributions, amounts, strict=True)
    ]
    savings = money(sum(amounts))
    return {
        "baseline_cost_per_hour": baseline,
        "optimized_cost_per_hour": money(baseline - savings),
        "savings_per_hour": savings,
        "active_optimizations": items,
    }
