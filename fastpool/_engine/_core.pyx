# cython: language_level=3
"""The C engine: a thin binding over csrc/ (fp_http, fp_conn, fp_tls, fp_hist), and the
AsyncPool's Park.

Each part lives in its own .pxi file; the C declarations are in one .pxd per header. The
embedded benchmark server is a separate extension (fastpool._bench._server)."""

include "_http.pxi"
include "_hist.pxi"
include "_response.pxi"
include "_conn.pxi"
include "_query.pxi"
include "_park.pxi"
