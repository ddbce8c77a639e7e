"""fastpool.Pool: the synchronous, thread-safe driver.

The hot path of a request is one engine call (the engine's Lane): take the hottest idle
connection, check it, write the pre-assembled buffer and read the response in C with the GIL
released, give the connection back, build the Response. It takes no lock: the idle stacks are
plain lists whose pop and append are atomic. Everything that needs a decision — no idle
connection, a failure, a waiter to hand a connection to, the pool closing — leaves the hot
path for the policy (fastpool._policy.pool), which this driver calls under its one lock. It
waits with a lock per waiter (released by whoever delivers to it) and runs the background work
in one maintenance thread that sleeps until the policy's next wake-up and ends when nothing is
scheduled.
"""

from __future__ import annotations

import threading
from time import monotonic_ns
from typing import Any, List, Optional, Tuple

from .._engine.protocol import Lane
from .._model.errors import FastpoolError, PoolClosed, PoolTimeout
from .._model.headers import HeaderTypes
from .._model.request import Prepared
from .._model.response import Response
from .._model.timeout import _UNSET, Timeout
from .._model.url import ParamsTypes
from .._policy.attempts import Attempts
from .._policy.maintenance import Open
from .._policy.stats import PoolStats
from .._policy.waiters import FAILED, GENERAL, GOT_CONN, GOT_SLOT, Waiter
from .base import PoolBase


def _wake(waiters: Any) -> None:
    """Wakes the waiters the policy named (their lock was taken when they queued)."""
    if waiters is None:
        return
    if isinstance(waiters, Waiter):
        waiters.handle.release()
        return
    for waiter in waiters:
        waiter.handle.release()


class Pool(PoolBase[Response]):
    """A pool of pre-opened keep-alive connections to one origin (see DESIGN.md).

    Construction resolves the host once and opens ``connections`` connections in parallel
    (TCP, and the TLS handshake for https) before it returns, or raises a ConnectError /
    TLSError saying why. Requests reuse them, hottest first; under concurrent use the pool
    grows up to ``max_connections`` and then requests wait, in arrival order, up to the pool
    timeout (PoolTimeout). Connections that fail or that the server closes are replaced in
    the background.

    Parameters (all but ``url`` keyword-only):
      connections        opened at construction and kept open.
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
                         long; 0 (default) checks every time.
      engine             "c", "python", or None (fastpool.BACKEND).
    """

    def _start(self) -> None:
        self._threads_afresh()
        self._open_initial()

    def _threads_afresh(self) -> None:
        """The lock, the maintainer and the engine lane over the current policy."""
        cfg, policy = self._cfg, self._policy
        self._lock = threading.Lock()
        self._maintainer: Optional[threading.Thread] = None
        self._maintenance_due = threading.Condition(self._lock)
        self._lane: Lane = cfg.engine.Lane(
            policy.idle[0], policy.idle[1], policy.queue.general, policy.queue.priority,
            cfg.timeout, cfg.stale_after_ns, policy.stats.latency, Response,
            self._response_ctx, self._on_release, self._settle)
        self._lane.closed = policy.closed

    def _after_fork(self) -> None:
        # Only the forking thread exists in the child: the lock may be held by a thread that
        # is not there, and the maintainer is gone. New ones, over a new policy.
        super()._after_fork()
        self._threads_afresh()

    # ---- public API --------------------------------------------------------------------

    def stats(self) -> PoolStats:
        """Counters and latency percentiles (ns) since the pool was created."""
        with self._lock:
            return self._policy.snapshot()

    def close(self) -> None:
        """Closes idle connections now and in-flight ones when their requests finish;
        requests waiting for a connection fail with PoolClosed."""
        with self._lock:
            policy = self._policy
            if policy.closed:
                return
            idle, _ = policy.close()
            self._lane.closed = True
            waiters = policy.queue.fail_all(PoolClosed("the pool is closed"))
            self._maintenance_due.notify_all()  # a maintainer backing off wakes up and ends
            maintainer = self._maintainer
        _wake(waiters)
        for conn in idle:
            conn.close()
        if maintainer is not None and maintainer is not threading.current_thread():
            maintainer.join(timeout=10)

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- one request -------------------------------------------------------------------

    def _send(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
              content: Any, json: Any, timeout: Any, retries: Optional[int]) -> Response:
        # The hot path: build (or find) the request bytes, then one engine call. Anything
        # that needs a decision goes to _send_slow.
        start = monotonic_ns()
        prepared = self._prepare(method, url, params, headers, content, json)
        tmo = self._timeout if timeout is _UNSET else Timeout.of(timeout)
        try:
            response = self._lane.send(None, prepared, tmo, start)
        except BaseException as exc:
            return self._send_slow(prepared, tmo, start, retries, exc)
        if response is None:
            return self._send_slow(prepared, tmo, start, retries, None)
        return response

    def _send_slow(self, prepared: Prepared, tmo: Timeout, start: int, retries: Optional[int],
                   failure: Optional[BaseException], priority: bool = False) -> Response:
        """The request after the hot path found no idle connection it may take (failure
        None) or failed on one: the policy's retries, waiting for a connection, opening one."""
        deadline = start + tmo.total_ns if tmo.total_ns else 0
        attempts = Attempts(prepared.method, self._retries if retries is None else retries,
                            deadline)
        if failure is not None:
            self._failed(attempts, failure, fresh=False)
        until = 0           # when waiting for a connection must stop (set on first wait)
        while True:
            if until == 0:
                until = self._wait_until(tmo, deadline)
            try:
                conn, fresh = self._acquire(until, deadline, priority)
            except FastpoolError as exc:  # PoolTimeout, PoolClosed, ConnectError, ...
                with self._lock:
                    error = attempts.give_up(exc, self._policy.stats)
                raise error
            try:
                response = self._lane.send(conn, prepared, tmo, start, priority, not fresh)
            except BaseException as exc:
                self._failed(attempts, exc, fresh=fresh)
                continue
            assert response is not None  # a given connection is always used
            return response

    @staticmethod
    def _wait_until(tmo: Timeout, deadline: int) -> int:
        """When waiting for a connection must stop (ns), or -1 for never."""
        until = -1 if tmo.pool is None else monotonic_ns() + int(tmo.pool * 1e9)
        if deadline and (until < 0 or deadline < until):
            until = deadline
        return until

    def _failed(self, attempts: Attempts, exc: BaseException, *, fresh: bool) -> None:
        """After an attempt failed (the engine closed its connection and reported the drop
        through _on_release): return to send again, or raise what the caller must get."""
        with self._lock:
            error = attempts.after(exc, fresh=fresh, stats=self._policy.stats,
                                   closed=self._policy.closed, now=monotonic_ns())
        if error is not None:
            raise error

    # ---- getting a connection ----------------------------------------------------------

    def _acquire(self, until: int, deadline: int, priority: bool) -> Tuple[Any, bool]:
        """(conn, fresh): an idle connection, one handed to us, or one opened for us (fresh);
        raises PoolTimeout at `until` (ns; -1: wait forever), PoolClosed, or the open's
        ConnectError."""
        policy = self._policy
        with self._lock:
            if policy.closed:
                raise PoolClosed("the pool is closed")
            _wake(policy.settle())  # earlier waiters first (the hand-off race's other side)
            conn = policy.take_idle(priority)
            if conn is not None:
                return conn, False
            lane = policy.reserve_for_request(priority)
            if lane is None:
                waiter = Waiter(priority, threading.Lock())
                waiter.handle.acquire()
                policy.queue.add(waiter)
            elif policy.slots.deficit(GENERAL):  # below strength (after fork, an outage)
                self._want_maintenance_locked()
        if lane is not None:
            return self._open_for_request(lane, deadline), True
        return self._wait(waiter, until, deadline)

    def _wait(self, waiter: Waiter, until: int, deadline: int) -> Tuple[Any, bool]:
        """Blocks until the waiter is served, times out or is interrupted."""
        policy = self._policy
        try:
            if until < 0:
                waiter.handle.acquire()
            else:
                left = (until - monotonic_ns()) / 1e9
                if left > 0:
                    waiter.handle.acquire(timeout=left)
        except BaseException:
            self._give_back(waiter)
            raise
        with self._lock:
            state = waiter.state
            if state == GOT_CONN:
                return waiter.conn, False
            if state == FAILED:
                raise waiter.error  # type: ignore[misc]
            if state != GOT_SLOT:
                policy.queue.cancel(waiter)
                slots = policy.slots
                raise PoolTimeout(f"no connection came free within the pool timeout "
                                  f"({slots.total_open} open, limit {slots.limit[0]})")
        return self._open_for_request(waiter.slot_lane, deadline), True

    def _give_back(self, waiter: Waiter) -> None:
        """An interrupted waiter passes on what it was given meanwhile."""
        with self._lock:
            conn, lane = self._policy.queue.cancel(waiter)
            if conn is not None:
                woken = self._policy.returned(conn)
            elif lane is not None:
                woken = self._policy.unreserved(lane)
            else:
                woken = None
        _wake(woken)

    def _open_for_request(self, lane: int, deadline: int) -> Any:
        """Opens a connection in a slot claimed for this request (outside the lock)."""
        try:
            conn = self._cfg.open(blocking=True, deadline_ns=deadline)
        except BaseException:
            with self._lock:
                woken = self._policy.unreserved(lane)
                if woken is None:
                    self._want_maintenance_locked()
            _wake(woken)
            raise
        with self._lock:
            policy = self._policy
            policy.opened(conn, lane)
            closed = policy.closed
            if closed:
                policy.slots.dropped(lane)
        if closed:  # close() ran while we connected: this request was still waiting
            conn.close()
            raise PoolClosed("the pool was closed while this request opened its connection")
        return conn

    # ---- the engine lane's callbacks ---------------------------------------------------

    def _on_release(self, conn: Any, exc: Optional[BaseException]) -> None:
        """The lane gives back a connection it could not simply push idle: a request is
        waiting for it, or it cannot be reused (closed already, exc says why when it failed),
        or the pool closed."""
        close = False
        with self._lock:
            policy = self._policy
            if conn.reusable and not policy.closed:
                woken = policy.returned(conn)
            else:
                close = conn.reusable
                woken = policy.dropped(conn.lane, exc)
                if woken is None:
                    self._want_maintenance_locked()
        if close:
            conn.close()
        _wake(woken)

    def _settle(self) -> None:
        """The lane pushed a connection idle just as a request queued or the pool closed."""
        with self._lock:
            policy = self._policy
            if policy.closed:
                idle, _ = policy.close()
                woken: List[Waiter] = []
            else:
                idle, woken = [], policy.settle()
        for conn in idle:
            conn.close()
        _wake(woken)

    # ---- opening and maintenance -------------------------------------------------------

    def _open_initial(self) -> None:
        """Opens the initial connections in parallel threads (each releases the GIL while it
        connects and handshakes); any failure closes the rest and is raised."""
        n = self._policy.slots.target[GENERAL]
        results: List[Any] = [None] * n

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
            policy = self._policy
            for conn in results:
                policy.slots.reserve(GENERAL)
                policy.opened(conn, GENERAL)
                policy.idle[GENERAL].append(conn)

    def _want_maintenance_locked(self) -> None:
        """Something may be due (a slot came free, a failure): wake or start the maintainer."""
        if self._maintainer is None:
            if self._policy.closed:
                return
            self._maintainer = threading.Thread(target=self._maintain, daemon=True,
                                                name="fastpool-maintenance")
            self._maintainer.start()
        else:
            self._maintenance_due.notify()

    def _maintain(self) -> None:
        """The maintenance thread: carries out what the policy says is due, sleeps until its
        next wake-up, and ends (decided under the lock, where _want_maintenance_locked
        decides to start one) when nothing is scheduled, so an idle pool holds no thread."""
        policy = self._policy
        while True:
            with self._lock:
                actions, wake = policy.maintenance.due(monotonic_ns())
                if not actions:
                    if wake is None or policy.closed:
                        self._maintainer = None
                        return
                    self._maintenance_due.wait(max(wake - monotonic_ns(), 0) / 1e9)
                    continue
            for action in actions:
                self._carry_out(action)

    def _carry_out(self, action: Open) -> None:
        """Opens a connection in the background; on failure its slot goes to a waiter (which
        then tries on its own instead of sleeping to its pool timeout) and the schedule
        backs off."""
        try:
            conn = self._cfg.open(blocking=True)
        except FastpoolError:
            with self._lock:
                self._policy.maintenance.open_done(action, False, monotonic_ns())
                woken = self._policy.slot_freed(action.lane)
            _wake(woken)
            return
        except BaseException:
            with self._lock:
                self._policy.maintenance.open_done(action, False, monotonic_ns())
            raise
        with self._lock:
            policy = self._policy
            reconnect = policy.maintenance.open_done(action, True, monotonic_ns())
            if policy.closed:
                policy.slots.dropped(action.lane)
                woken = None
            else:
                conn.lane = action.lane
                policy.opened_in_background(conn, reconnect)
                woken = policy.returned(conn, fresh=True)
                conn = None
        if conn is not None:
            conn.close()
        _wake(woken)
