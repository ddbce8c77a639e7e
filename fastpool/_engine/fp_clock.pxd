# Declarations of csrc/fp_clock.h
# for the Cython binding (the header is the specification).

from libc.stdint cimport int64_t

cdef extern from "fp_clock.h" nogil:
    int64_t fp_now_ns()
