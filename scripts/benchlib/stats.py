"""Percentiles and summaries of latency samples (seconds in, milliseconds out)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def pct(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in [0, 1]."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean of ``samples`` (seconds) in milliseconds, 3 decimals."""
    return {
        "n": len(samples),
        "p50": round(pct(samples, 0.50) * 1000, 3),
        "p90": round(pct(samples, 0.90) * 1000, 3),
        "p99": round(pct(samples, 0.99) * 1000, 3),
        "max": round(max(samples) * 1000, 3),
        "mean": round(statistics.fmean(samples) * 1000, 3),
    }
