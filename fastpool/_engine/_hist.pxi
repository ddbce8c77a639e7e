# Binding of csrc/fp_hist.h: Histogram (the pure twin is fastpool/_engine/_pure/_hist.py).

from libc.stdint cimport int64_t, uint64_t

from fastpool._engine.fp_hist cimport *


cdef class Histogram:
    """Latency histogram (ns), fixed memory, ~1.6% precision: see csrc/fp_hist.h."""

    cdef fp_hist h

    def __cinit__(self):
        fp_hist_reset(&self.h)

    cpdef record(self, int64_t value):
        fp_hist_record(&self.h, value)

    @property
    def count(self):
        return self.h.count

    @property
    def min(self):
        return self.h.min if self.h.count else 0

    @property
    def max(self):
        return self.h.max

    @property
    def mean(self):
        return self.h.sum / self.h.count if self.h.count else 0.0

    def quantile(self, double q):
        return fp_hist_quantile(&self.h, q)

    def merge(self, Histogram other):
        fp_hist_merge(&self.h, &other.h)

    def reset(self):
        fp_hist_reset(&self.h)
