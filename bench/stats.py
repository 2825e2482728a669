"""Percentiles and rates, the same way for every system measured."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values (`fraction` in [0, 1]); NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return float(sorted_values[min(rank, len(sorted_values)) - 1])


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """p50/p95/p99/max (and count) of latencies given in seconds, reported in milliseconds."""
    values = sorted(seconds)
    return {
        "count": float(len(values)),
        "p50_ms": percentile(values, 0.50) * 1000,
        "p95_ms": percentile(values, 0.95) * 1000,
        "p99_ms": percentile(values, 0.99) * 1000,
        "max_ms": (values[-1] * 1000) if values else math.nan,
    }


def mean_summary(summaries: Sequence[dict[str, float]]) -> dict[str, float]:
    """Summaries of repeated runs as one: each percentile's mean, the counts' sum, the worst max."""
    if not summaries:
        return latency_summary([])
    merged = {key: sum(s[key] for s in summaries) / len(summaries) for key in ("p50_ms", "p95_ms", "p99_ms")}
    return {
        "count": sum(s["count"] for s in summaries),
        **merged,
        "max_ms": max(s["max_ms"] for s in summaries),
    }


def rate(count: int, seconds: float) -> float:
    """Items per second; NaN when nothing could be timed."""
    return count / seconds if seconds > 0 else math.nan
