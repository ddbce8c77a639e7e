# Declarations of csrc/fp_hist.h
# for the Cython binding (the header is the specification).

from libc.stdint cimport int64_t, uint64_t

cdef extern from "fp_hist.h" nogil:
    ctypedef struct fp_hist:
        uint64_t count
        uint64_t min, max
        double sum
    void fp_hist_reset(fp_hist *h)
    void fp_hist_record(fp_hist *h, int64_t value)
    uint64_t fp_hist_quantile(const fp_hist *h, double q)
    void fp_hist_merge(fp_hist *dst, const fp_hist *src)
