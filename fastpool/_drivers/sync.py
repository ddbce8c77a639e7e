"""fastpool.Pool: the synchronous, thread-safe pool.

The hot path of a request: pop the hottest idle connection, write the pre-assembled buffer
and read the response in C with the GIL released (after checking the connection is still
open), push the connection back. Popping and pushing are atomic list operations, so the hot
path takes no lock (PoolState explains why that is safe); opening connections, replacing
dropped ones, waiting for a free one and closing take the lock, off the hot path.
"""

from __future__ import annotations

import threading
from time import monotonic_ns
from typing import Any, Optional

from .config import PoolConfig
from .._model.errors import FastpoolError, PoolClosed, PoolTimeout, StaleConnection
from .._model.headers import HeaderTypes
from .._policy.legacy import Attempts
from .._model.response import Response, ResponseContext
from .._model.timeout import _UNSET, Timeout
from .._model.url import ParamsTypes

_REFILL_BACKOFF_MIN = 0.05
_REFILL_BACKOFF_MAX = 2.0


def _pool_wait_until(tmo: Timeout, deadline: int) -> Optional[int]:
    """When waiting for a free connection must stop (ns), or None for never."""
    until = None if tmo.pool is None else monotonic_ns() + int(tmo.pool * 1e9)
    if deadline and (until is None or deadline < until):
        until = deadline
    return until


class Pool:
    """A pool of pre-opened keep-alive connections to one origin (see DESIGN.md).

    Construction resolves the host once and opens ``connections`` connections in parallel
    (TCP, and the TLS handshake for https) before it returns, or raises a ConnectError /
    TLSError saying why. Requests reuse them, hottest first; under concurrent use the pool
    grows up to ``max_connections`` and then waits up to the pool timeout (PoolTimeout).
    Connections that fail or that the server closes are replaced in the background.

    Parameters (all but ``url`` keyword-only):
      connections        opened at construction and kept warm.
      max_connections    the most the pool opens under concurrent use (default connections).
      verify             True (the system trust store; SSL_CERT_FILE / SSL_CERT_DIR apply),
                         a CA file path, PEM bytes, or False (no verification; warns).
      cert               client certificate: a PEM path, or (certfile, keyfile).
      headers            sent with every request (validated and encoded once).
      timeout            a fastpool.Timeout or seconds: connect, write, read, pool, total.
      retries            how often a MaybeSent failure of an idempotent request may be sent
                         again (0: never). NotSent failures of reused connections are always
                         moved to another connection.
      limits             fastpool.Limits: bounds on what a response may make us buffer.
      tls_min, tls_max   "1.2" / "1.3" (TLS 1.2 at least by default).
      stale_check_after  seconds: an idle connection is checked for a server-side close (one
                         poll()) before it carries a request when it sat idle at least this
                         long; 0 (default) checks every time. A close found by the check is
                         replaced transparently (NotSent); one landing after it surfaces as
                         MaybeSent. Skipping the check on connections used moments ago saves
                         a syscall per request and gives that up only for closes within the
                         threshold.
      engine             "c", "python", or None (fastpool.BACKEND).
    """

    def __init__(self, url: str, *, connections: int = 4, max_connections: Optional[int] = None,
                 verify=True, cert=None, headers: HeaderTypes = None, timeout=5.0,
                 retries: int = 0, limits=None, tls_min: Optional[str] = None,
                 tls_max: Optional[str] = None, stale_check_after: float = 0.0,
                 engine: Optional[str] = None) -> None:
        self._cfg = cfg = PoolConfig(
            url, connections=connections, max_connections=max_connections, verify=verify,
            cert=cert, headers=headers, timeout=timeout, retries=retries, limits=limits,
            tls_min=tls_min, tls_max=tls_max, stale_check_after=stale_check_after,
            engine=engine)
        self._state = cfg.state
        self._prepare = cfg.builder.prepare
        self._origin = cfg.origin
        self._response_ctx = ResponseContext(cfg.engine.decode_headers, cfg.engine.header_values,
                                             cfg.origin)
        self._lane = cfg.engine.Lane(cfg.state.idle, cfg.timeout, cfg.stale_after_ns,
                                     cfg.state.stats.latency, Response, self._response_ctx,
                                     self._on_drop)
        self._timeout = cfg.timeout
        self._retries = cfg.retries
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)    # a connection or a slot came free
        self._refill_wanted = threading.Condition(self._lock)
        self._refill_thread: Optional[threading.Thread] = None
        self._waiters = 0                                  # threads in _acquire_slow
        self._open_initial()

    # ---- public API ------------------------------------------------------------------------

    @property
    def engine(self) -> str:
        """"c" or "python": the engine this pool runs on."""
        return "c" if self._cfg.engine.__name__.endswith("_core") else "python"

    @property
    def url(self) -> str:
        return f"{self._origin.scheme}://{self._origin.netloc}{self._origin.base_path}"

    def request(self, method: str, url: str, *, params: ParamsTypes = None,
                headers: HeaderTypes = None, content: Any = None, json: Any = None,
                timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        """Sends one request and returns its response; raises NotSentError or MaybeSentError.

        ``retries`` (default: the pool's) is how many times a MaybeSent failure of an
        idempotent method may be sent again; a request that certainly did not leave (a
        connection found closed while idle) is always moved to another connection."""
        return self._send(method, url, params, headers, content, json, timeout, retries)

    def get(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
            timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        return self._send("GET", url, params, headers, None, None, timeout, retries)

    def head(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
             timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        return self._send("HEAD", url, params, headers, None, None, timeout, retries)

    def options(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        return self._send("OPTIONS", url, params, headers, None, None, timeout, retries)

    def delete(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
               timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        return self._send("DELETE", url, params, headers, None, None, timeout, retries)

    def post(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
             content: Any = None, json: Any = None, timeout: Any = _UNSET,
             retries: Optional[int] = None) -> Response:
        return self._send("POST", url, params, headers, content, json, timeout, retries)

    def put(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
            content: Any = None, json: Any = None, timeout: Any = _UNSET,
            retries: Optional[int] = None) -> Response:
        return self._send("PUT", url, params, headers, content, json, timeout, retries)

    def patch(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
              content: Any = None, json: Any = None, timeout: Any = _UNSET,
              retries: Optional[int] = None) -> Response:
        return self._send("PATCH", url, params, headers, content, json, timeout, retries)

    def stats(self) -> dict:
        """Counters and latency percentiles (ns) since the pool was created."""
        with self._lock:
            return self._state.stats.snapshot(self._state.open, len(self._state.idle))

    def close(self) -> None:
        """Closes idle connections now and in-flight ones when their requests finish;
        requests waiting for a connection fail with PoolClosed."""
        with self._lock:
            state = self._state
            if state.closed:
                return
            state.closed = True
            idle = state.drain()
            state.dropped(len(idle))
            self._freed.notify_all()
            self._refill_wanted.notify_all()  # a refill backing off wakes up and ends
            refill = self._refill_thread
        for conn in idle:
            conn.close()
        if refill is not None and refill is not threading.current_thread():
            refill.join(timeout=10)

    @property
    def closed(self) -> bool:
        return self._state.closed

    def __enter__(self) -> "Pool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        s = self._state
        return (f"<Pool {self.url} engine={self.engine} open={s.open} idle={len(s.idle)}"
                f"{' closed' if s.closed else ''}>")

    # ---- one request -----------------------------------------------------------------------

    def _send(self, method, url, params, headers, content, json, timeout, retries) -> Response:
        # The hot path: build (or find) the request bytes, then one engine call takes the
        # hottest idle connection, checks it, exchanges, records the latency, puts it back
        # and builds the Response. Anything that needs a decision goes to _send_slow.
        start = monotonic_ns()
        prepared = self._prepare(method, url, params, headers, content, json)
        tmo = self._timeout if timeout is _UNSET else Timeout.of(timeout)
        try:
            response = self._lane.send(None, prepared, tmo, start)
        except BaseException as exc:
            return self._send_slow(prepared, tmo, start, retries, exc)
        if response is None:
            return self._send_slow(prepared, tmo, start, retries, None)
        if self._waiters or self._state.closed:
            self._after_put()
        return response

    def _send_slow(self, prepared: tuple, tmo: Timeout, start: int, retries: Optional[int],
                   failure: Optional[BaseException]) -> Response:
        """The request after the fast path found no idle connection (failure None) or failed
        on one: the policy's retries, waiting for a connection, opening one."""
        deadline = start + tmo.total_ns if tmo.total_ns else 0
        attempts = Attempts(prepared[1], self._retries if retries is None else retries, deadline)
        if failure is not None:
            self._failed(attempts, failure, fresh=False)
        conn = None         # a connection opened for this request, else None: take an idle one
        until = None        # when waiting for a connection must stop (set on first wait)
        while True:
            if conn is None and not self._state.idle:  # else the lane takes (and checks) it
                if until is None:
                    until = _pool_wait_until(tmo, deadline) or 0
                try:
                    conn = self._acquire_slow(until, deadline)
                except FastpoolError as exc:  # PoolTimeout, PoolClosed, ConnectError, ...
                    with self._lock:
                        error = attempts.give_up(exc, self._state.stats)
                    raise error
            try:
                response = self._lane.send(conn, prepared, tmo, start)
            except BaseException as exc:
                self._failed(attempts, exc, fresh=conn is not None)
                conn = None
                continue
            if response is None:  # the idle connection was taken by another thread
                continue
            if self._waiters or self._state.closed:
                self._after_put()
            return response

    def _failed(self, attempts: Attempts, exc: BaseException, *, fresh: bool) -> None:
        """After an attempt failed (the engine closed its connection): the bookkeeping, then
        return to send again, or raise what the policy says the caller must get."""
        self._on_drop(exc)
        with self._lock:
            error = attempts.after(exc, fresh=fresh, stats=self._state.stats,
                                   closed=self._state.closed, now=monotonic_ns())
        if error is not None:
            raise error

    # ---- connections -----------------------------------------------------------------------

    def _open_initial(self) -> None:
        """Opens the initial connections in parallel threads (each releases the GIL while it
        connects and handshakes); any failure closes the rest and is raised."""
        n = self._state.target
        results: list = [None] * n

        def work(i: int) -> None:
            try:
                results[i] = self._cfg.open(blocking=True)
            except BaseException as exc:  # noqa: BLE001 - handed to the constructor
                results[i] = exc

        threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(1, n)]
        for t in threads:
            t.start()
        work(0)
        for t in threads:
            t.join()
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for r in results:
                if not isinstance(r, BaseException) and r is not None:
                    r.close()
            raise errors[0]
        with self._lock:
            for conn in results:
                self._state.reserve()
                self._state.opened(conn)
                self._state.idle.append(conn)
            self._state.initial_done = True

    def _acquire_slow(self, until: int, deadline: int):
        """When no connection was idle: a new one when the limit allows (opened for this
        request), else None as soon as one went idle (the caller takes it), else PoolTimeout
        at `until` (ns; 0 = wait forever) or PoolClosed."""
        state = self._state
        with self._lock:
            self._waiters += 1  # before looking: a put_idle from now on will wake us
            try:
                while True:
                    if state.closed:
                        raise PoolClosed("the pool is closed")
                    if state.idle:
                        return None
                    if state.reserve():
                        break
                    left = None if not until else (until - monotonic_ns()) / 1e9
                    if left is not None and left <= 0:
                        raise PoolTimeout(f"no connection came free within the pool timeout "
                                          f"({state.open} open, limit {state.limit})")
                    self._freed.wait(left)
            finally:
                self._waiters -= 1
        try:
            conn = self._cfg.open(blocking=True, deadline_ns=deadline)
        except BaseException:
            with self._lock:
                state.unreserve()
                self._freed.notify()
            raise
        with self._lock:
            state.opened(conn)
            closed = state.closed
            if closed:
                state.dropped()
        if closed:  # close() ran while we connected: this request was still waiting
            conn.close()
            raise PoolClosed("the pool was closed while this request opened its connection")
        return conn

    def _after_put(self) -> None:
        """A connection went idle while the pool closed (close it) or a thread waits."""
        with self._lock:
            state = self._state
            if state.closed:
                idle = state.drain()
                state.dropped(len(idle))
            else:
                idle = ()
                self._freed.notify()
        for conn in idle:
            conn.close()

    def _on_drop(self, exc: Optional[BaseException] = None) -> None:
        """A connection was closed by the engine (failed, interrupted, or not reusable):
        its slot is freed for a waiter or the background refill."""
        with self._lock:
            state = self._state
            state.dropped()
            if isinstance(exc, StaleConnection):
                state.stats.stale += 1
            self._freed.notify()
            self._want_refill_locked()

    # ---- keeping `connections` warm in the background -------------------------------------

    def _want_refill_locked(self) -> None:
        if self._state.deficit() > 0 and self._refill_thread is None:
            self._refill_thread = threading.Thread(target=self._refill_loop, daemon=True,
                                                   name="fastpool-refill")
            self._refill_thread.start()

    def _refill_loop(self) -> None:
        """Reopens dropped connections so requests find warm ones instead of paying a
        connect and handshake themselves. Failures back off exponentially (bounded). The
        thread ends once the pool is back at strength (deciding so under the lock, where
        _want_refill_locked decides to start one), so an idle pool holds no thread."""
        state = self._state
        backoff = _REFILL_BACKOFF_MIN
        while True:
            with self._lock:
                if state.closed or state.deficit() <= 0:
                    self._refill_thread = None
                    return
                state.reserve()
            try:
                conn = self._cfg.open(blocking=True)
            except FastpoolError:
                with self._lock:
                    state.unreserve()
                    # The slot is free again: a request waiting in _acquire_slow must get it
                    # now (and open on its own), not sleep until its pool timeout — or
                    # forever, with pool=None — while the refill keeps failing.
                    self._freed.notify()
                    if not state.closed:
                        self._refill_wanted.wait(backoff)
                backoff = min(backoff * 2, _REFILL_BACKOFF_MAX)
                continue
            backoff = _REFILL_BACKOFF_MIN
            with self._lock:
                if state.closed:
                    state.unreserve()
                else:
                    state.opened(conn)
                    state.idle.insert(0, conn)  # below the hot ones: reuse those first
                    self._freed.notify()
                    conn = None
            if conn is not None:
                conn.close()
