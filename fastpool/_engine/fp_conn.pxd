# Declarations of csrc/fp_conn.h
# for the Cython binding (the header is the specification).

from libc.stdint cimport int64_t, uint64_t

from fastpool._engine.fp_http cimport fp_limits, fp_resp, fp_span
from fastpool._engine.fp_tls cimport fp_tls

cdef extern from "fp_conn.h" nogil:
    enum:
        FP_CE_CONNECT
        FP_CE_CONNECT_TIMEOUT
        FP_CE_TLS
        FP_CE_WRITE
        FP_CE_WRITE_TIMEOUT
        FP_CE_READ
        FP_CE_READ_TIMEOUT
        FP_CE_CLOSED
        FP_CE_PROTOCOL
        FP_CE_NOMEM
        FP_STEP_DONE
        FP_STEP_WANT_READ
        FP_STEP_WANT_WRITE
        FP_STEP_ERROR
        FP_INTERRUPTED

    ctypedef struct fp_cerr:
        int kind
        int sys_errno
        int code
        long verify
        uint64_t sent
        char msg[384]

    ctypedef struct fp_conn:
        int fd
        int resumed
        uint64_t received
        char *buf
        fp_resp resp
        fp_span *spans
        int64_t t_start, t_written, t_first_byte, t_complete
        int64_t t_idle
        int64_t busy_ns

    int fp_conn_init(fp_conn *c, const fp_limits *lim, size_t bufsize)
    void fp_conn_free(fp_conn *c)
    void fp_conn_close(fp_conn *c)
    int fp_conn_open(fp_conn *c, int family, const char *ip, int port, fp_tls *tls,
                     const char *host, int blocking, int64_t deadline_ns, fp_cerr *err)
    void fp_conn_set_busy_poll(fp_conn *c, int64_t busy_ns)
    int fp_conn_stale(fp_conn *c)
    int fp_conn_exchange(fp_conn *c, const char *req, size_t len, int head_request,
                         int64_t write_timeout_ns, int64_t read_timeout_ns,
                         int64_t deadline_ns, fp_cerr *err)
    int fp_conn_resume(fp_conn *c, fp_cerr *err)
    void fp_conn_begin(fp_conn *c, const char *req, size_t len, int head_request)
    int fp_conn_step(fp_conn *c, fp_cerr *err)
    int fp_conn_set_blocking(fp_conn *c, int blocking)
    uint64_t fp_conn_sent(const fp_conn *c)
    int fp_conn_finish(fp_conn *c)
    int fp_conn_next(fp_conn *c, int head_request, fp_cerr *err)
    const char *fp_conn_tls_version(const fp_conn *c)
