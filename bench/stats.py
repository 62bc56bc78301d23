"""Summaries of samples: percentiles by linear interpolation between closest ranks (NumPy's default).
With 20 samples the p99 lies between the two largest, so it is close to the maximum."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], share: float) -> float:
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = share * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float]) -> dict[str, float]:
    """p50, p90, p99, max, and the count, of seconds."""
    return {
        "p50": percentile(samples, 0.50),
        "p90": percentile(samples, 0.90),
        "p99": percentile(samples, 0.99),
        "max": max(samples) if samples else math.nan,
        "count": float(len(samples)),
    }
