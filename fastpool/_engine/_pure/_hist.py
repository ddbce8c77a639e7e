"""Latency histogram, the pure twin of csrc/fp_hist.c (same buckets, same answers)."""

from __future__ import annotations

import math
import threading

_SUB_BITS = 6
_SUB = 1 << _SUB_BITS
_BUCKETS = (63 - _SUB_BITS + 1) << _SUB_BITS


def _index(v: int) -> int:
    if v < _SUB:
        return v
    shift = v.bit_length() - 1 - _SUB_BITS
    return shift * _SUB + (v >> shift)


def _lower(index: int) -> int:
    if index < 2 * _SUB:
        return index
    shift = index // _SUB - 1
    return (index - shift * _SUB) << shift


class Histogram:
    """Latency histogram (ns), fixed memory, ~1.6% precision: see csrc/fp_hist.h."""

    __slots__ = ("_buckets", "count", "_min", "max", "_sum", "_lock")

    _buckets: list[int]
    count: int
    _min: int | None  # None until the first record()
    max: int
    _sum: float

    def __init__(self) -> None:
        # Pools record from many threads without their own lock; the C twin is atomic
        # under the GIL, this one needs a lock to be.
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self._buckets = [0] * _BUCKETS
        self.count = 0
        self._min = None
        self.max = 0
        self._sum = 0.0

    def record(self, value: int) -> None:
        v = value if value > 0 else 0
        with self._lock:
            self._buckets[_index(v)] += 1
            self.count += 1
            self._sum += v
            if self._min is None or v < self._min:
                self._min = v
            if v > self.max:
                self.max = v

    @property
    def min(self) -> int:
        return self._min or 0

    @property
    def mean(self) -> float:
        return self._sum / self.count if self.count else 0.0

    def quantile(self, q: float) -> int:
        if not self.count:
            return 0
        if q <= 0:
            return self.min
        if q >= 1:
            return self.max
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for i, n in enumerate(self._buckets):  # noqa: B007 - i is used after the loop
            seen += n
            if seen >= rank:
                break
        value = _lower(i + 1) - 1 if i + 1 < _BUCKETS else self.max
        return min(max(value, self.min), self.max)

    def merge(self, other: Histogram) -> None:
        if not other.count:
            return
        self._buckets = [a + b for a, b in zip(self._buckets, other._buckets)]
        self.count += other.count
        self._sum += other._sum
        if self._min is None or other.min < self._min:
            self._min = other.min
        self.max = max(self.max, other.max)
