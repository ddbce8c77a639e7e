# Binding of csrc/fp_tls.h and csrc/fp_conn.h: TLSContext, Connection, floor_latencies.
# Included from _core.pyx after _http.pxi. Every wait happens in C with the GIL released.

from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.exc cimport PyErr_CheckSignals, PyErr_SetFromErrno

from fastpool._engine.fp_clock cimport fp_now_ns
from fastpool._engine.fp_tls cimport *
from fastpool._engine.fp_conn cimport *

from fastpool._model.failures import failure as _failure
from fastpool._model import failures as _failures
from fastpool._model import tls_policy as _tls_policy

# The offer (RFC 9325), from the one source the pure engine applies too.
cdef bytes _TLS12_CIPHERS = _tls_policy.TLS12_CIPHERS.encode("ascii")
cdef bytes _TLS13_CIPHERSUITES = _tls_policy.TLS13_CIPHERSUITES.encode("ascii")
cdef bytes _TLS_GROUPS = _tls_policy.GROUPS.encode("ascii")


cdef _check_kinds():
    pairs = [(FP_CE_CONNECT, _failures.CONNECT), (FP_CE_CONNECT_TIMEOUT, _failures.CONNECT_TIMEOUT),
             (FP_CE_TLS, _failures.TLS), (FP_CE_WRITE, _failures.WRITE),
             (FP_CE_WRITE_TIMEOUT, _failures.WRITE_TIMEOUT), (FP_CE_READ, _failures.READ),
             (FP_CE_READ_TIMEOUT, _failures.READ_TIMEOUT), (FP_CE_CLOSED, _failures.CLOSED),
             (FP_CE_PROTOCOL, _failures.PROTOCOL), (FP_CE_NOMEM, _failures.NOMEM)]
    for c_value, py_value in pairs:
        if c_value != py_value:
            raise ImportError("csrc/fp_conn.h and fastpool/_model/failures.py disagree on "
                              "error kinds")

_check_kinds()

STEP_DONE = FP_STEP_DONE
STEP_WANT_READ = FP_STEP_WANT_READ
STEP_WANT_WRITE = FP_STEP_WANT_WRITE

_CLIENT_TLS_VERSIONS = {None: 0, "1.2": TLS1_2_VERSION, "1.3": TLS1_3_VERSION}


cdef object _cerr_error(fp_cerr *err):
    return _failure(err.kind, err.msg.decode("utf-8", "replace"), sent=err.sent,
                    code=err.code, verify=err.verify)


cdef object _raise_cerr(fp_cerr *err):
    raise _failure(err.kind, err.msg.decode("utf-8", "replace"), sent=err.sent,
                   code=err.code, verify=err.verify)


cdef class TLSContext:
    """One client TLS configuration and its resumable session (csrc/fp_tls.h)."""

    cdef fp_tls t
    cdef bint ready
    cdef readonly bint verify
    cdef object __weakref__  # pools share contexts through a weak cache (fastpool._drivers.connect)

    def __cinit__(self, *, verify=True, ca_file=None, ca_pem=None, cert_file=None,
                  key_file=None, min_version=None, max_version=None):
        cdef fp_tls_config cfg
        cdef char err[512]
        cdef bytes b_ca_file = None if ca_file is None else str(ca_file).encode()
        cdef bytes b_ca_pem = None if ca_pem is None else bytes(ca_pem)
        cdef bytes b_cert = None if cert_file is None else str(cert_file).encode()
        cdef bytes b_key = None if key_file is None else str(key_file).encode()
        if min_version not in _CLIENT_TLS_VERSIONS or max_version not in _CLIENT_TLS_VERSIONS:
            raise ValueError("TLS versions are '1.2', '1.3' or None")
        memset(&cfg, 0, sizeof(cfg))
        cfg.verify = 1 if verify else 0
        if b_ca_file is not None:
            cfg.ca_file = b_ca_file
        if b_ca_pem is not None:
            cfg.ca_pem = b_ca_pem
            cfg.ca_pem_len = len(b_ca_pem)
        if b_cert is not None:
            cfg.cert_file = b_cert
        if b_key is not None:
            cfg.key_file = b_key
        cfg.min_version = _CLIENT_TLS_VERSIONS[min_version]
        cfg.max_version = _CLIENT_TLS_VERSIONS[max_version]
        cfg.ciphers = _TLS12_CIPHERS
        cfg.ciphersuites = _TLS13_CIPHERSUITES
        cfg.groups = _TLS_GROUPS
        if fp_tls_init(&self.t, &cfg, err, sizeof(err)) < 0:
            from fastpool._model.errors import TLSError
            raise TLSError(err.decode("utf-8", "replace"))
        self.ready = True
        self.verify = verify

    def __dealloc__(self):
        if self.ready:
            fp_tls_free(&self.t)

    def forget_session(self):
        """Drops the cached session: the next handshake is a full one."""
        fp_tls_forget(&self.t)


cdef class Connection:
    """One keep-alive connection (csrc/fp_conn.h); see fastpool._engine for the interface."""

    cdef fp_conn c
    cdef TLSContext tls
    cdef bytes request          # the bytes being sent by begin()/step(), kept alive here
    cdef readonly bint reusable
    cdef readonly bint blocking
    cdef object __weakref__     # the pool's set of live connections is weak (fork safety)
    #: The pool's bookkeeping, carried here so the hot path reads it without a lookup
    #: (fastpool._policy.lifecycle): which lane's slot the connection holds, its state, when
    #: it was born and is due for rotation, and how many requests it carried of its budget.
    cdef public int lane, state, address
    cdef public bint tended
    cdef public int64_t born_ns, retire_at_ns, uses, retire_uses
    #: the smoothed round trip, written to first byte (RFC 6298's SRTT, gain 1/8); 0: none
    cdef public int64_t rtt_ns

    def __cinit__(self, limits=None, Py_ssize_t bufsize=4096):
        cdef fp_limits lim
        _limits_from(limits, &lim)
        if fp_conn_init(&self.c, &lim, bufsize) < 0:
            raise MemoryError()

    def __dealloc__(self):
        fp_conn_free(&self.c)

    def open(self, int family, str ip, int port, TLSContext tls, str host, bint blocking,
             int64_t deadline_ns):
        """Connects (and handshakes) by deadline_ns; raises ConnectError / TLSError / ..."""
        cdef bytes b_ip = ip.encode("ascii")
        cdef bytes b_host = host.encode("ascii")
        cdef const char *p_ip = b_ip
        cdef const char *p_host = b_host
        cdef fp_tls *t = NULL if tls is None else &tls.t
        cdef fp_cerr err
        cdef int rc
        self.tls = tls  # the SSL holds pointers into the context
        with nogil:
            rc = fp_conn_open(&self.c, family, p_ip, port, t, p_host, blocking, deadline_ns, &err)
        if rc < 0:
            _raise_cerr(&err)
        self.blocking = blocking
        self.reusable = True

    def fileno(self):
        return self.c.fd

    @property
    def last_used_ns(self):
        """When the connection last went idle (opened, or its last response complete)."""
        return self.c.t_idle

    @property
    def resumed(self):
        return self.c.resumed != 0

    @property
    def tls_version(self):
        return fp_conn_tls_version(&self.c).decode()

    @property
    def busy_poll_ns(self):
        """Blocking mode: how long each read spins before it sleeps (0: off; csrc/fp_conn.h)."""
        return self.c.busy_ns

    @busy_poll_ns.setter
    def busy_poll_ns(self, int64_t ns):
        fp_conn_set_busy_poll(&self.c, ns)

    def stale(self):
        """Whether the idle connection is unusable (closed, reset, unsolicited bytes)."""
        return fp_conn_stale(&self.c) != 0

    def exchange(self, bytes request, bint head, int64_t write_timeout_ns,
                 int64_t read_timeout_ns, int64_t deadline_ns):
        """Blocking: writes request, returns the RawExchange (see _engine).

        Before writing, the engine always makes sure the server sent nothing and did not
        close (fresh or reused connection): else StaleConnection (NotSent), nothing written."""
        return self._exchange(request, head, write_timeout_ns, read_timeout_ns, deadline_ns)

    cdef object _exchange(self, bytes request, bint head, int64_t write_timeout_ns,
                          int64_t read_timeout_ns, int64_t deadline_ns):
        cdef const char *p = PyBytes_AS_STRING(request)
        cdef size_t n = PyBytes_GET_SIZE(request)
        cdef fp_cerr err
        cdef int rc
        with nogil:
            rc = fp_conn_exchange(&self.c, p, n, head, write_timeout_ns, read_timeout_ns,
                                  deadline_ns, &err)
        while rc == FP_INTERRUPTED:
            self._run_signal_handlers()
            with nogil:
                rc = fp_conn_resume(&self.c, &err)
        if rc < 0:
            self.reusable = False
            _raise_cerr(&err)
        return self._take()

    cdef int _run_signal_handlers(self) except -1:
        """A signal interrupted the blocking exchange: run Python's handlers now (they only
        run between bytecodes, and the exchange holds no GIL). One that raises abandons the
        exchange: the connection is closed and the exception propagates unchanged, marked
        with whether the request may have gone out (fastpool._model.failures.interrupted)."""
        cdef uint64_t sent
        try:
            PyErr_CheckSignals()
        except BaseException as exc:
            sent = fp_conn_sent(&self.c)
            self.close()
            _failures.interrupted(exc, sent)
            raise
        return 0

    def set_blocking(self, bint blocking):
        """Between exchanges: the mode of the exchanges that follow (True: exchange(),
        False: begin()/step()/take()); OSError when closed or inside an exchange."""
        if fp_conn_set_blocking(&self.c, blocking) < 0:
            PyErr_SetFromErrno(OSError)
        self.blocking = blocking

    def begin(self, bytes request, bint head):
        """Step mode: starts sending request (kept alive until the exchange ends)."""
        self.request = request
        fp_conn_begin(&self.c, PyBytes_AS_STRING(request), PyBytes_GET_SIZE(request), head)

    def step(self):
        """Step mode: progress without blocking; STEP_DONE / STEP_WANT_READ / STEP_WANT_WRITE."""
        cdef fp_cerr err
        cdef int rc = fp_conn_step(&self.c, &err)
        if rc == FP_STEP_ERROR:
            self.reusable = False
            self.request = None
            _raise_cerr(&err)
        return rc

    def take(self):
        """Step mode: the RawExchange once step() returned STEP_DONE."""
        self.request = None
        return self._take()

    cdef object _take(self):
        """The RawExchange of the response just completed (fastpool._model.response)."""
        cdef object raw = self._raw()
        self.reusable = fp_conn_finish(&self.c) != 0
        return raw

    cdef object _raw(self):
        """The response just completed, as a RawExchange; the connection stays as it is."""
        cdef const fp_resp *r = &self.c.resp
        cdef const char *buf = self.c.buf
        cdef object raw = _alloc_named(_RawExchange, 11)
        _set_item(raw, 0, r.head.status)
        _set_item(raw, 1, r.head.minor_version)
        _set_item(raw, 2, PyBytes_FromStringAndSize(buf + r.head_off, r.head_len))
        _set_item(raw, 3, PyBytes_FromStringAndSize(<const char *>self.c.spans,
                                                    r.head.num_headers * sizeof(fp_span)))
        _set_item(raw, 4, PyBytes_FromStringAndSize(buf + r.body_off, r.body_len))
        _set_item(raw, 5, r.head.reason_off)
        _set_item(raw, 6, r.head.reason_len)
        _set_item(raw, 7, self.c.t_start)
        _set_item(raw, 8, self.c.t_written)
        _set_item(raw, 9, self.c.t_first_byte)
        _set_item(raw, 10, self.c.t_complete)
        return raw

    # ---- pipelining (fp_conn_next) ----------------------------------------------------

    def take_next(self, bint head):
        """Step mode, pipelining: the RawExchange once step() returned STEP_DONE, as take(),
        but the exchange goes on to the response of the burst's next request (head: it is a
        HEAD), from the bytes already received after this one. Call step() next: STEP_DONE
        when they held it whole; the failure when the pipeline cannot go on (this response
        ended keep-alive: ServerDisconnected; the next is malformed: ProtocolError)."""
        cdef fp_cerr err
        cdef object raw = self._raw()
        if fp_conn_next(&self.c, head, &err) < 0:
            self.reusable = False  # the failure is step()'s to report
        return raw

    def pipeline(self, bytes burst, heads, int64_t write_timeout_ns, int64_t read_timeout_ns,
                 int64_t deadline_ns):
        """Blocking, pipelining: writes burst (len(heads) requests, concatenated; heads[i]:
        request i is a HEAD) in one exchange under the limits of exchange(), then reads the
        responses in order. Returns (raws, error): the RawExchanges of the responses that
        came, in order, and None when all did, else the failure that ended the pipeline at
        response len(raws) (the connection is then not reusable; nothing after it can be
        trusted). A signal handler that raises propagates as in exchange()."""
        cdef const char *p = PyBytes_AS_STRING(burst)
        cdef size_t n = PyBytes_GET_SIZE(burst)
        cdef Py_ssize_t count = len(heads), i = 0
        cdef list raws = []
        cdef fp_cerr err
        cdef int rc, head
        if count < 1:
            raise ValueError("a pipeline has at least one request")
        head = 1 if heads[0] else 0
        with nogil:
            rc = fp_conn_exchange(&self.c, p, n, head, write_timeout_ns, read_timeout_ns,
                                  deadline_ns, &err)
        while True:
            while rc == FP_INTERRUPTED:
                self._run_signal_handlers()
                with nogil:
                    rc = fp_conn_resume(&self.c, &err)
            if rc < 0:
                self.reusable = False
                return raws, _cerr_error(&err)
            if i == count - 1:
                raws.append(self._take())
                return raws, None
            raws.append(self._raw())
            i += 1
            rc = fp_conn_next(&self.c, 1 if heads[i] else 0, &err)
            if rc == FP_STEP_ERROR:
                self.reusable = False
                return raws, _cerr_error(&err)
            if rc == FP_STEP_WANT_READ:
                with nogil:
                    rc = fp_conn_resume(&self.c, &err)
            # else FP_STEP_DONE (0): complete from the bytes already received

    @property
    def received(self):
        """Response bytes received so far in the current exchange."""
        return self.c.received

    @property
    def written(self):
        """Whether the whole current request has been written."""
        return self.c.t_written != 0

    @property
    def sent(self):
        """Bytes of the current request that reached the socket (wire bytes under TLS)."""
        return fp_conn_sent(&self.c)

    def close(self):
        self.reusable = False
        self.request = None
        fp_conn_close(&self.c)


def floor_latencies(Connection conn, bytes request, Py_ssize_t count, bint head=False,
                    int expect_status=200, Py_ssize_t expect_body=-1):
    """The floor: count exchanges on conn in a C loop (no Python, no GIL), latencies in ns.

    Returns (latencies: list[int], failures: int). Each response's status (and body length,
    when expect_body >= 0) is checked; a failed exchange ends the run."""
    cdef int64_t *lat = <int64_t *>malloc((count or 1) * sizeof(int64_t))
    cdef const char *p = PyBytes_AS_STRING(request)
    cdef size_t n = PyBytes_GET_SIZE(request)
    cdef fp_cerr err
    cdef Py_ssize_t done = 0, bad = 0
    cdef int64_t t0 = 0
    cdef int rc = 0
    cdef bint resuming = False, stop = False
    if lat == NULL:
        raise MemoryError()
    try:
        while done < count and not stop:
            with nogil:
                while done < count:
                    if resuming:
                        resuming = False
                        rc = fp_conn_resume(&conn.c, &err)
                    else:
                        t0 = fp_now_ns()
                        rc = fp_conn_exchange(&conn.c, p, n, head, -1, -1, 0, &err)
                    if rc == FP_INTERRUPTED:
                        resuming = True
                        break
                    if rc < 0:
                        stop = True
                        break
                    lat[done] = fp_now_ns() - t0
                    if (conn.c.resp.head.status != expect_status
                            or (expect_body >= 0
                                and <Py_ssize_t>conn.c.resp.body_len != expect_body)):
                        bad += 1
                    done += 1
                    if not fp_conn_finish(&conn.c):
                        stop = True
                        break
            if resuming:
                conn._run_signal_handlers()
        if rc < 0:
            conn.reusable = False
            _raise_cerr(&err)
        return [lat[i] for i in range(done)], bad
    finally:
        free(lat)


cdef class Lane:
    """The sync pool's success path in one engine call (the pure twin: _pure/_conn.py).

    Built once per pool with what never changes: the policy's idle stacks (general and
    reserved lanes) and wait-queue deques (fastpool._policy.pool), the default timeout, the
    latency histogram, the Response class and context, and two driver callbacks. A request passes four arguments (five with priority): every Python
    operation on this path costs twice its hot-loop price after the blocking read has evicted
    the caches.

    The rules it applies are the policy's, in their cheapest form: take the hottest idle
    connection unless earlier requests are waiting (then queue behind them: None); put a
    returned connection back on its lane's stack unless a request is waiting, it cannot be
    reused or it is due for rotation (its request budget or lifetime reached: fields the
    policy sets, fastpool._policy.lifecycle) — then ``on_release(conn, error)`` decides;
    after a push, ``settle()`` when a request queued or the pool closed meanwhile (the two
    sides of the hand-off race each check the other, so one of them always sees it).
    """

    cdef list idle, reserved
    cdef object wait_general, wait_priority
    cdef object default_timeout
    cdef int64_t d_write, d_read, d_total
    cdef public bint closed
    #: None: take the hottest idle connection; else pick(stack) -> the index to take
    cdef public object pick
    cdef Histogram hist
    cdef object response_type, response_ctx, on_release, settle

    def __init__(self, list idle, list reserved, object wait_general, object wait_priority,
                 object default_timeout, Histogram hist,
                 object response_type, object response_ctx, object on_release, object settle):
        self.idle = idle
        self.reserved = reserved
        self.wait_general = wait_general
        self.wait_priority = wait_priority
        self.default_timeout = default_timeout
        self.d_write = default_timeout.write_ns
        self.d_read = default_timeout.read_ns
        self.d_total = default_timeout.total_ns
        self.closed = False
        self.pick = None
        self.hist = hist
        self.response_type = response_type
        self.response_ctx = response_ctx
        self.on_release = on_release
        self.settle = settle

    def send(self, Connection conn, object request, object timeout, int64_t start,
             bint priority=False):
        """One exchange of request (a fastpool._model.request.Prepared) under timeout.

        conn None: take the hottest idle connection this request may use (None is returned
        when there is none, or when earlier requests wait: nothing done); else use conn
        (opened for this request, or handed over by the wait queue). The exchange checks
        before writing that the server did not close the connection or speak unasked. Then
        record the latency, give the connection back and return the Response. On failure the connection is closed,
        handed to on_release with the error, and the error raised: the pool's policy
        decides what follows. No Python code runs between taking and giving back (so
        neither another thread nor a signal handler can come between them) except the
        callbacks, which the driver makes safe.
        """
        cdef int64_t write_ns, read_ns, total_ns, deadline = 0, rtt
        cdef object raw
        cdef list stack
        if not isinstance(request, tuple) or not isinstance(request[4], Histogram):
            # a Prepared (a NamedTuple, so a tuple subtype) built with this engine
            raise TypeError("request must be a fastpool._model.request.Prepared")
        cdef tuple prepared = <tuple>request
        if timeout is self.default_timeout:
            write_ns, read_ns, total_ns = self.d_write, self.d_read, self.d_total
        else:
            write_ns, read_ns, total_ns = timeout.write_ns, timeout.read_ns, timeout.total_ns
        if total_ns:
            deadline = start + total_ns
        if conn is None:
            if self.wait_priority or (self.wait_general and not priority):
                return None
            stack = self.reserved if priority and self.reserved else self.idle
            if not stack:
                return None
            if self.pick is None:
                conn = <Connection>stack.pop()
            else:  # the policy's choice (fastpool._policy.choice.fastest_index)
                conn = <Connection>stack.pop(self.pick(stack))
        try:
            raw = conn._exchange(prepared[0], prepared[3], write_ns, read_ns, deadline)
        except BaseException as exc:
            conn.close()
            self.on_release(conn, exc)
            raise
        fp_hist_record(&self.hist.h, conn.c.t_complete - conn.c.t_start)
        fp_hist_record(&(<Histogram>prepared[4]).h, conn.c.t_complete - conn.c.t_start)
        rtt = conn.c.t_first_byte - conn.c.t_written
        conn.rtt_ns = rtt if conn.rtt_ns == 0 else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
        conn.uses += 1
        if (conn.reusable and not self.closed and not self.wait_priority
                and not self.wait_general and conn.uses < conn.retire_uses
                and (conn.retire_at_ns == 0 or conn.c.t_complete < conn.retire_at_ns)):
            stack = self.reserved if conn.lane else self.idle
            stack.append(conn)
            if self.closed or self.wait_priority or self.wait_general:
                self.settle()
        else:
            if not conn.reusable:
                conn.close()
            self.on_release(conn, None)
        return _new_response(self.response_type, raw,
                             _request_info(self.response_ctx, prepared[1], prepared[2], start))

    # The AsyncPool's success path, in three engine calls around its waits: take() the
    # hottest idle connection, start() the exchange on it (written, and read at once when the
    # server is that close), then, once step() returned STEP_DONE, finish() it (the same
    # bookkeeping as send()). The rules are send()'s; the waiting is the driver's.

    def take(self, bint priority=False):
        """The hottest idle connection this request may use, or None (none idle, earlier
        requests waiting, or the pool closed): send()'s rule."""
        cdef list stack
        if self.closed or self.wait_priority or (self.wait_general and not priority):
            return None
        stack = self.reserved if priority and self.reserved else self.idle
        if not stack:
            return None
        if self.pick is None:
            return stack.pop()
        return stack.pop(self.pick(stack))  # fastpool._policy.choice.fastest_index

    def start(self, Connection conn, object request, int64_t read_at_once_ns):
        """Begins the exchange of request (a Prepared) on conn in step mode and steps it:
        STEP_* (as Connection.begin() then step()). When the step leaves it waiting for the
        response and conn's smoothed round trip is below read_at_once_ns, one more read: a
        server this close has often answered by the time the write returns, and the read
        (a syscall, wasted if not) saves the driver its wait."""
        cdef fp_cerr err
        cdef int rc
        if not isinstance(request, tuple) or not isinstance(request[4], Histogram):
            raise TypeError("request must be a fastpool._model.request.Prepared")
        cdef tuple prepared = <tuple>request
        cdef bytes data = <bytes?>prepared[0]
        cdef bint head = prepared[3]
        conn.request = data
        fp_conn_begin(&conn.c, PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), head)
        rc = fp_conn_step(&conn.c, &err)
        if rc == FP_STEP_WANT_READ and 0 < conn.rtt_ns < read_at_once_ns:
            rc = fp_conn_step(&conn.c, &err)
        if rc == FP_STEP_ERROR:
            conn.reusable = False
            conn.request = None
            _raise_cerr(&err)
        return rc

    def finish(self, Connection conn, object request, int64_t start):
        """The Response of the exchange conn completed (its step() returned STEP_DONE):
        latency recorded, the connection given back (as send(): pushed idle, else to
        on_release, which also closes it when it cannot be reused)."""
        cdef int64_t rtt
        cdef list stack
        cdef tuple prepared = <tuple>request
        conn.request = None
        cdef object raw = conn._take()
        fp_hist_record(&self.hist.h, conn.c.t_complete - conn.c.t_start)
        fp_hist_record(&(<Histogram>prepared[4]).h, conn.c.t_complete - conn.c.t_start)
        rtt = conn.c.t_first_byte - conn.c.t_written
        conn.rtt_ns = rtt if conn.rtt_ns == 0 else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
        conn.uses += 1
        if (conn.reusable and not self.closed and not self.wait_priority
                and not self.wait_general and conn.uses < conn.retire_uses
                and (conn.retire_at_ns == 0 or conn.c.t_complete < conn.retire_at_ns)):
            stack = self.reserved if conn.lane else self.idle
            stack.append(conn)
            if self.closed or self.wait_priority or self.wait_general:
                self.settle()
        else:
            self.on_release(conn, None)
        return _new_response(self.response_type, raw,
                             _request_info(self.response_ctx, prepared[1], prepared[2], start))
