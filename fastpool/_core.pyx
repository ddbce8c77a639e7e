# cython: language_level=3
"""The C engine: a thin binding over csrc/. Each part lives in its own .pxi file."""

include "_http.pxi"
include "_hist.pxi"
include "_response.pxi"
include "_conn.pxi"
include "_query.pxi"
include "_server.pxi"
