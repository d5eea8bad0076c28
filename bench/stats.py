"""Summaries the benchmarks report: percentiles, medians over repeats, rates and ratios."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], pct: float) -> float:
    """The `pct`-th percentile (0..100) with linear interpolation between closest ranks.

    Same definition as numpy's default and `statistics.quantiles(method="inclusive")`.
    """
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= pct <= 100:
        raise ValueError(f"percentile must be within 0..100, got {pct}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * pct / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


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
