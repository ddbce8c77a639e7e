"""Turning latency samples into figures: exact percentiles, means, rates and ratios.

Percentiles are exact order statistics of every sample (nearest rank: the smallest sample
with at least q of all samples at or below it), not histogram estimates, so p99.9 of 10 000
samples is the 10th largest. All values are integers in nanoseconds.
"""

from __future__ import annotations

import math
import statistics
from typing import Optional, Sequence

#: (key, quantile) of the figures every summary has.
QUANTILES = (("p50", 0.50), ("p90", 0.90), ("p99", 0.99), ("p999", 0.999))
SUMMARY_KEYS = ("count", "min", "p50", "p90", "p99", "p999", "max", "mean")


def quantile(sorted_samples: Sequence[int], q: float) -> int:
    n = len(sorted_samples)
    if not n:
        raise ValueError("no samples")
    rank = max(1, math.ceil(q * n))
    return int(sorted_samples[min(rank, n) - 1])


def summarize(samples: Sequence[int]) -> dict:
    """count, min, p50, p90, p99, p999, max, mean (ns) of the samples."""
    s = sorted(samples)
    if not s:
        return dict.fromkeys(SUMMARY_KEYS, None) | {"count": 0}
    out = {"count": len(s), "min": int(s[0])}
    for key, q in QUANTILES:
        out[key] = quantile(s, q)
    out["max"] = int(s[-1])
    out["mean"] = round(sum(s) / len(s))
    return out


def spread(round_p50s: Sequence[int]) -> Optional[float]:
    """Relative spread of the rounds' p50s, (max - min) / median: how much the machine
    drifted during the run (0.05 = 5 %)."""
    if len(round_p50s) < 2:
        return None
    med = statistics.median(round_p50s)
    return round((max(round_p50s) - min(round_p50s)) / med, 4) if med else None


def rate(count: int, elapsed_ns: int) -> Optional[float]:
    """Requests per second."""
    if not count or not elapsed_ns:
        return None
    return count * 1e9 / elapsed_ns


def sequential_rate(summary: dict) -> Optional[float]:
    """Requests per second of one connection used back to back: 1 / mean latency."""
    mean = summary.get("mean")
    return 1e9 / mean if mean else None


def slower(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    """How many times slower than the reference, for latencies (value / reference)."""
    if value is None or not reference:
        return None
    return round(value / reference, 3)


def slower_rate(value: Optional[float], reference: Optional[float]) -> Optional[float]:
    """How many times slower than the reference, for rates (reference / value)."""
    if not value or reference is None:
        return None
    return round(reference / value, 3)
