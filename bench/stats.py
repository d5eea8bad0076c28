"""Summaries the benchmarks report: percentiles, medians over repeats, rates and ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (a whole number 0..100), `statistics.quantiles(method="inclusive")`:
    linear interpolation between closest ranks, as numpy's default."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    if pct != int(pct):
        raise ValueError(f"percentile must be a whole number, got {pct}")
    if pct in (0, 100) or len(values) == 1:  # the ends, which quantiles() does not return
        return float(min(values) if pct == 0 else max(values) if pct == 100 else values[0])
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1]


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def rate(count: int, seconds: float) -> float:
    """Events per second; a zero or negative duration is a measurement error, not infinity."""
    if seconds <= 0:
        raise ValueError(f"rate over a non-positive duration ({seconds} s)")
    return count / seconds


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator, or None when the denominator is not positive (nothing to compare)."""
    if denominator <= 0:
        return None
    return numerator / denominator


def median_ratio(pairs: Sequence[tuple[float, float]]) -> float | None:
    """Median of per-repeat ratios: each pair was measured back to back, so the machine's noise
    (other processes on a shared box) hits both sides of a pair alike."""
    ratios = [r for a, b in pairs if (r := ratio(a, b)) is not None]
    return median(ratios) if ratios else None


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
