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

import copy
import gc
import logging
import threading
import time
from time import monotonic_ns
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from .._engine.protocol import Lane
from .._model.errors import FastpoolError, NotSentError, OutageError, PoolClosed, PoolTimeout
from .._model.headers import HeaderTypes
from .._model.request import Prepared
from .._model.response import Response
from .._model.timeout import _UNSET, Timeout
from .._model.url import ParamsTypes
from .._policy.attempts import Attempts
from .._policy.choice import fastest_index
from .._policy.clock import ClockEstimate
from .._policy.hedging import hedge_for
from .._policy.maintenance import Action, Open, Ping, Tend
from .._policy.pipelining import Burst
from .._policy.pool import Claim
from .._policy.waiters import FAILED, GENERAL, GOT_CONN, GOT_SLOT, RESERVED, Waiter
from . import sync_race
from .base import HedgeTypes, PoolBase, _check_samples
from .connect import open_all
from .pipeline import PipelineItem, PipelineResult

log = logging.getLogger("fastpool")

#: The most threads that open the initial connections together.
_OPEN_THREADS = 16

#: A signed request that waited (for a connection) longer than this is signed again before
#: it is written: its timestamp must be fresh when the exchange sees it.
_RESIGN_AFTER_NS = 100_000_000


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
    """A pool of pre-opened keep-alive connections to one origin.

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
      stale_check_after  deprecated, no effect: every request checks its connection (one
                         poll()) before writing, so a server's close or unsolicited bytes
                         are found before any byte of it goes out.
      engine             "c", "python", or None (fastpool.BACKEND).
      reserved           connections, beyond ``connections``, that only requests sent with
                         ``priority=True`` may use (orders, cancels): polling can never make
                         an order wait. Priority requests also go first when requests wait.
      keep_warm          fastpool.KeepWarm(path, every=25.0): a cheap request on every
                         connection idle that long, so the gateway's idle timeout never
                         closes it; off the hot path (a pinged connection is not idle).
      tcp_keepalive      seconds: TCP keepalive probes after that much idle (cheaper, where
                         the gateway's idle timeout counts TCP packets).
      max_lifetime       seconds a connection lives before it is replaced make-before-break
                         (jittered down by up to 20 %); rotate() replaces all now.
      max_requests       requests a connection carries before it is replaced likewise.
      rate_limits        fastpool.RateLimit windows mirroring the exchange's (weights, order
                         counts, fixed or sliding, on the server's clock): a request waits
                         (or raises RateLimitedError, NotSent) rather than exceed one.
      rate_ledger        fastpool.SharedLedger: the same budgets shared by processes.
      on_limit           "wait" (default) or "raise" when a budget has no room now.
      auth               a fastpool.HmacSigner / Ed25519Signer for ``signed=True`` requests.
      cooldowns          True (default: 429 and 418 start one), False, or {status: seconds}:
                         after such an answer requests fail fast (RateLimitedError, NotSent)
                         until the exchange's Retry-After has passed.
      addresses          "resolved" (every address the host resolves to) or a list of IP
                         addresses / host names: connections spread over all of them (the
                         URL's host still names the TLS certificate and the Host header).
      choose             "hottest" (the most recently used idle connection) or "fastest"
                         (the smallest smoothed round trip; persistently slow connections are
                         replaced). Default: "fastest" with several addresses, else "hottest".
      redact             more query parameter names whose values logs and errors hide (the
                         defaults: signature, apiKey, secret, token, ...).
      busy_poll          seconds (e.g. 50e-6), C engine only; default None (off): each
                         blocking read first spins on the non-blocking socket that long before
                         it sleeps, buying the scheduler's wake-up for a dedicated core. The
                         spin counts against the read timeout and the total deadline. It
                         costs a core per waiting request, and on a machine with fewer cores
                         than busy threads it slows everything (README: Busy-poll). AsyncPool
                         and the pure engine refuse it (ValueError): they cannot spin.
      hedge              fastpool.Hedge(after=seconds | "p95", budget=0.1): a GET, HEAD or
                         OPTIONS not answered after the delay is also sent on an idle
                         connection; the first answer wins (see fastpool.Hedge). Off by
                         default; per request ``hedge=`` overrides it (False: not this one).
    """

    _tends = True

    def _start(self) -> None:
        self._cooldown = self._gate.cooldown
        self._limiter = self._gate.limiter
        #: every request takes _send_exchange (rate limits, or a pool-wide hedge)
        self._exchange_always = self._limiter is not None or self._hedge is not None
        self._threads_afresh()
        self._open_initial()

    def _threads_afresh(self) -> None:
        """The lock, the maintainer and the engine lane over the current policy."""
        cfg, policy = self._cfg, self._policy
        self._lock = threading.Lock()
        self._maintainer: Optional[threading.Thread] = None
        self._maintenance_due = threading.Condition(self._lock)
        self._last_collect_ns = 0
        self._interrupted = False  # a request ended by an interrupt since the last collect
        self._lane: Lane = cfg.engine.Lane(
            policy.idle[0], policy.idle[1], policy.queue.general, policy.queue.priority,
            cfg.timeout, policy.stats.latency, Response,
            self._response_ctx, self._on_release, self._settle)
        self._lane.closed = policy.closed
        if policy.fastest:
            self._lane.pick = fastest_index

    def _after_fork(self) -> None:
        # Only the forking thread exists in the child: the lock may be held by a thread that
        # is not there, and the maintainer is gone. New ones, over a new policy.
        super()._after_fork()
        self._threads_afresh()

    # ---- public API --------------------------------------------------------------------

    def _guard(self) -> Any:
        return self._lock

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
              content: Any, json: Any, data: Any, timeout: Any, retries: Optional[int],
              priority: bool, weight: int, order: int, signed: bool,
              on_limit: Optional[str], hedge: HedgeTypes = None) -> Response:
        # The hot path: build (or find) the request bytes, then one engine call. Anything
        # that needs a decision goes to _send_slow; anything the exchange asks of the request
        # (rate limits, a cooldown in force, signing, a form body) or a hedge to
        # _send_exchange.
        start = monotonic_ns()
        cooldown = self._cooldown
        if (signed or data is not None or order or self._exchange_always
                or hedge is not None or (cooldown is not None and cooldown._until > start)):
            return self._send_exchange(method, url, params, headers, content, json, data,
                                       timeout, retries, priority, weight, order, signed,
                                       on_limit, start, hedge)
        prepared = self._prepare(method, url, params, headers, content, json)
        tmo = self._timeout if timeout is _UNSET else Timeout.of(timeout)
        try:
            response = self._lane.send(None, prepared, tmo, start, priority)
        except BaseException as exc:
            response = self._slow(prepared, tmo, start, retries, exc, priority, method, url,
                                  params, json, data)
        else:
            if response is None:
                response = self._slow(prepared, tmo, start, retries, None, priority, method,
                                      url, params, json, data)
        if response.status_code >= 400 and response.status_code in self._gate.statuses:
            with self._lock:
                error = self._rate_limited(response, start, 0, monotonic_ns())
            if error is not None:
                raise error
        return response

    def _slow(self, prepared: Prepared, tmo: Timeout, start: int, retries: Optional[int],
              failure: Optional[BaseException], priority: bool, method: str, url: str,
              params: ParamsTypes, json: Any, data: Any,
              reprepare: Optional[Callable[[], Prepared]] = None) -> Response:
        """_send_slow, with the request described on its failure (error.request)."""
        try:
            return self._send_slow(prepared, tmo, start, retries, failure, priority, reprepare)
        except BaseException as exc:
            self._failed_request(exc, method, url, params, json, data, prepared)
            raise

    def _send_exchange(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
                       content: Any, json: Any, data: Any, timeout: Any,
                       retries: Optional[int], priority: bool, weight: int, order: int,
                       signed: bool, on_limit: Optional[str], start: int,
                       hedge: HedgeTypes = None) -> Response:
        """A request the exchange asks something of: a cooldown refuses it at once; the rate
        limits let it go, make it wait (bounded by its deadline) or refuse it; a signed one
        is signed as late as possible (again if it waited); a 429/418 answer fails it and
        starts a cooldown; a request that certainly did not leave gives its weight back.
        A hedged one races a copy (fastpool._drivers.sync_race)."""
        tmo = self._timeout if timeout is _UNSET else Timeout.of(timeout)
        deadline = start + tmo.total_ns if tmo.total_ns else 0
        gate = self._gate
        prepared: Optional[Prepared] = None
        granted = 0
        try:
            race = hedge_for(method, self._hedge, hedge)
            while True:
                with self._lock:
                    now = monotonic_ns()
                    wait = gate.admit(now, weight, order, priority, on_limit, deadline)
                if not wait:
                    granted = now  # charged: refunded if it certainly never leaves
                    break
                time.sleep(wait / 1e9)
            prepared = self._prepare_exchange(method, url, params, headers, content, json,
                                              data, signed, monotonic_ns())
            reprepare = None
            if signed:
                def reprepare() -> Prepared:
                    return self._prepare_exchange(method, url, params, headers, content, json,
                                                  data, True, monotonic_ns())
            if race is None:
                response = self._send_slow(prepared, tmo, start, retries, None, priority,
                                           reprepare)
            else:
                response = sync_race.send(self, race, prepared, tmo, start, retries, priority,
                                          weight, order, reprepare)
        except BaseException as exc:
            if granted and (isinstance(exc, NotSentError) or isinstance(
                    getattr(exc, "fastpool_error", None), NotSentError)):
                with self._lock:
                    gate.refund(monotonic_ns(), weight, order, granted)
            self._failed_request(exc, method, url, params, json, data, prepared)
            raise
        if gate.limiter is None and response.status_code not in gate.statuses:
            return response  # nothing to tell the gate (a hedged request, a form body)
        with self._lock:
            error = self._rate_limited(response, granted, order, monotonic_ns())
        if error is not None:
            self._failed_request(error, method, url, params, json, data, prepared)
            raise error
        return response

    # ---- a pipeline (fastpool._drivers.pipeline) ---------------------------------------

    def pipeline(self, items: Sequence[PipelineItem], *, headers: HeaderTypes = None,
                 timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False,
                 weight: Union[int, Sequence[int]] = 1, on_limit: Optional[str] = None,
                 signed: bool = False) -> PipelineResult:
        """Sends GET/HEAD items as one HTTP/1.1 pipeline: one connection, one write, the
        responses read in order. Returns one Response or exception (NotSent / MaybeSent) per
        item, in order; raises InvalidRequestError before anything is sent for an item that
        may not be pipelined (a POST, ...). See fastpool._drivers.pipeline for the rules:
        framing doubts, retries, rate limits, stats."""
        call = self._pipeline_begin(items, headers, timeout, retries, weight, signed)
        if call is None:
            return []
        burst, tmo, deadline = call.burst, call.tmo, call.deadline
        if self._exchange_needed(None, 0, signed, call.start):
            self._pipeline_admit(burst, call.weights, call.granted, priority, on_limit,
                                 deadline)
        until = 0
        while burst.todo:
            if until == 0:
                until = self._wait_until(tmo, deadline)
            try:
                conn, fresh = self._acquire(until, deadline, priority)
            except FastpoolError as exc:  # PoolTimeout, PoolClosed, ConnectError, ...
                with self._lock:
                    burst.give_up(exc, self._policy.stats, copy.copy)
                break
            indices, data, heads = call.next_burst(self)
            try:
                raws, error = conn.pipeline(data, heads, tmo.write_ns, tmo.read_ns, deadline)
            except BaseException as exc:  # a signal handler's: marked, propagated
                conn.close()
                self._on_release(conn, exc)
                raise
            responses, errors = call.outcome(self, conn, indices, raws, error)
            if error is not None or not conn.reusable:
                conn.close()  # framing in doubt, or bytes after the last response
            self._on_release(conn, error)
            with self._lock:
                burst.attempted(indices, responses, errors, fresh=fresh,
                                stats=self._policy.stats, closed=self._policy.closed,
                                now=monotonic_ns())
        return self._pipeline_results(call)

    def _pipeline_admit(self, burst: Burst, weights: List[int], granted: List[int],
                        priority: bool, on_limit: Optional[str], deadline: int) -> None:
        """Each item through the exchange gate, in order, as a request of its own (waiting
        when the budget says so); the first refusal refuses the rest."""
        gate = self._gate
        for i in list(burst.todo):
            while True:
                try:
                    with self._lock:
                        now = monotonic_ns()
                        wait = gate.admit(now, weights[i], 0, priority, on_limit, deadline)
                except FastpoolError as exc:  # RateLimitedError, InvalidRequestError: NotSent
                    self._pipeline_refused(burst, i, exc)
                    return
                if not wait:
                    granted[i] = now
                    break
                time.sleep(wait / 1e9)

    def calibrate(self, path: str = "/api/v3/time", field: str = "serverTime", *,
                  samples: int = 5, unit: str = "ms") -> ClockEstimate:
        """Estimates the server's clock from `samples` requests to `path`, whose JSON
        response carries the server time in `field` (Binance: /api/v3/time, serverTime, in
        milliseconds; unit "us" with X-MBX-TIME-UNIT: MICROSECOND). NTP-style: the samples
        with the smallest round trips bound the offset; signed requests then take their
        timestamp from it (never ahead of the server: Binance refuses those), and fixed
        rate-limit windows align to it. Returns the estimate (offset, error bound, round
        trip); RuntimeError when no answer carried the field."""
        for _ in range(_check_samples(samples)):
            self.calibrate_sample(self.get(path), field, unit)
        return self._estimate(path, field)

    def resolve(self, error: FastpoolError, lookup: Callable[[], Any], *,
                margin: float = 1.0, wait: Optional[float] = None) -> Any:
        """After a MaybeSentError: waits until the exchange can no longer act on the request
        — its signed deadline (``error.request.expires_ms``: timestamp + recvWindow) has
        passed on the server's clock, plus `margin` seconds — then returns ``lookup()``
        (e.g. GET the order by its client order id: found means it executed, "does not
        exist" means it never will). For an unsigned request pass ``wait=`` seconds (Binance
        waits up to 10 s for its matching engine)."""
        time.sleep(self._resolve_wait(error, margin, wait))
        return lookup()

    def rotate(self) -> None:
        """Replaces every connection, make-before-break (each new one opened, TLS resumed,
        before the one it replaces retires), e.g. after the gateway's DNS changed."""
        with self._lock:
            self._policy.rotate()
            self._want_maintenance_locked()

    def _send_slow(self, prepared: Prepared, tmo: Timeout, start: int, retries: Optional[int],
                   failure: Optional[BaseException], priority: bool = False,
                   reprepare: Optional[Callable[[], Prepared]] = None) -> Response:
        """The request after the hot path found no idle connection it may take (failure
        None) or failed on one: the policy's retries, waiting for a connection, opening one.
        reprepare: builds the request again (a signed one gets a fresh timestamp) when it
        waited or is sent again."""
        deadline = start + tmo.total_ns if tmo.total_ns else 0
        attempts = Attempts(prepared.method, self._retries if retries is None else retries,
                            deadline)
        if failure is not None:
            try:
                self._failed(attempts, failure, fresh=False)
            finally:
                del failure  # no frame -> exception -> traceback -> frame cycle (see _failed)
        until = 0           # when waiting for a connection must stop (set on first wait)
        built = monotonic_ns()
        while True:
            if until == 0:
                until = self._wait_until(tmo, deadline)
            try:
                conn, fresh = self._acquire(until, deadline, priority)
            except FastpoolError as exc:  # PoolTimeout, PoolClosed, ConnectError, ...
                with self._lock:
                    error = attempts.give_up(exc, self._policy.stats)
                raise error
            if reprepare is not None and monotonic_ns() - built > _RESIGN_AFTER_NS:
                try:
                    prepared = reprepare()
                except BaseException:
                    self._give_back_conn(conn, fresh)
                    raise
                built = monotonic_ns()
            try:
                response = self._lane.send(conn, prepared, tmo, start, priority)
            except BaseException as exc:
                self._failed(attempts, exc, fresh=fresh)
                continue
            assert response is not None  # a given connection is always used
            return response

    def _give_back_conn(self, conn: Any, fresh: bool) -> None:
        """A connection taken for a request that will not be sent after all."""
        with self._lock:
            woken = self._policy.returned(conn)
        _wake(woken)

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
            # The names go before the exception leaves: a frame that still refers to the
            # exception it raised is a reference cycle through the traceback, which keeps
            # the failed attempt's frames (and the connection in them) alive until the
            # cyclic garbage collector runs.
            try:
                raise error
            finally:
                del error, exc

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
            outage = policy.outage()
            if outage is not None:  # fail fast: the refill is probing with back-off
                raise OutageError(outage)
            claim = policy.reserve_for_request(priority)
            if claim is None and (policy.reconcile() or self._reconcile_after_gc()):
                claim = policy.reserve_for_request(priority)  # a slot an interrupt leaked
            if claim is None:
                waiter = Waiter(priority, threading.Lock())
                waiter.handle.acquire()
                policy.queue.add(waiter)
            elif policy.slots.deficit(GENERAL):  # below strength (after fork, an outage)
                self._want_maintenance_locked()
        if claim is not None:
            return self._open_for_request(claim, deadline), True
        return self._wait(waiter, until, deadline)

    def _reconcile_after_gc(self) -> bool:
        """reconcile() after collecting cyclic garbage: a connection lost by an interrupt can
        stay referenced by a cycle (frames of the failed request's traceback) until then. Only
        after such an interrupt, and at most once a second: waiting for a slot is normal
        under load, and a collection (milliseconds with a large heap) must not land on the
        request path of a pool that merely is busy."""
        now = monotonic_ns()
        if not self._interrupted or now - self._last_collect_ns < 1_000_000_000:
            return False
        self._last_collect_ns = now
        self._interrupted = False
        gc.collect()
        return self._policy.reconcile()

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
        return self._open_for_request(waiter.claim, deadline), True

    def _give_back(self, waiter: Waiter) -> None:
        """An interrupted waiter passes on what it was given meanwhile."""
        with self._lock:
            conn, claim = self._policy.queue.cancel(waiter)
            if conn is not None:
                woken = self._policy.returned(conn)
            elif claim is not None:
                woken = self._policy.unreserved(claim)
            else:
                woken = None
        _wake(woken)

    def _open_for_request(self, claim: Claim, deadline: int) -> Any:
        """Opens a connection in a slot claimed for this request (outside the lock)."""
        try:
            with self._lock:
                address = self._policy.address_for()
            conn = self._cfg.open(blocking=True, deadline_ns=deadline, address=address)
        except BaseException:
            with self._lock:
                woken = self._policy.unreserved(claim)
                if woken is None:
                    self._want_maintenance_locked()
            _wake(woken)
            raise
        with self._lock:
            policy = self._policy
            policy.opened(conn, claim.lane, monotonic_ns(), claim)
            closed = policy.closed
            if closed:
                policy.dropped(conn)
        if closed:  # close() ran while we connected: this request was still waiting
            conn.close()
            raise PoolClosed("the pool was closed while this request opened its connection")
        return conn

    # ---- the engine lane's callbacks ---------------------------------------------------

    def _on_release(self, conn: Any, exc: Optional[BaseException]) -> None:
        """The lane gives back a connection it could not simply push idle: a request is
        waiting for it, it is due for rotation, it cannot be reused (closed already; exc says
        why when the request failed), or the pool closed."""
        with self._lock:
            policy = self._policy
            if exc is not None:
                woken = policy.dropped(conn, exc)
                close, maintain = None, woken is None
            else:
                woken, close, maintain = policy.released(conn, monotonic_ns())
            if maintain:
                self._want_maintenance_locked()
        if close is not None:
            close.close()
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
        connects and handshakes); any failure closes the rest and is raised (open_all)."""
        target = self._policy.slots.target
        lanes = [GENERAL] * target[GENERAL] + [RESERVED] * target[RESERVED]
        naddr = len(self._cfg.addrs) if self._cfg.spread else 1
        results = open_all(lambda i: self._cfg.open(blocking=True, address=i % naddr),
                           len(lanes), _OPEN_THREADS, harvest=self._cfg.tls is not None)
        with self._lock:
            policy = self._policy
            now = monotonic_ns()
            for conn, lane in zip(results, lanes):
                policy.slots.reserve(lane)
                policy.opened(conn, lane, now)
                policy.idle[lane].append(conn)
            if policy.maintenance.timed:
                self._want_maintenance_locked()  # it sleeps until the first ping or rotation

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

    def _carry_out(self, action: Action) -> None:
        if isinstance(action, Ping):
            self._ping(action.conn)
        elif isinstance(action, Tend):
            self._tend(action.conn)
        else:
            self._open_in_background(action)

    def _tend(self, conn: Any) -> None:
        """Checks a new connection taken off its idle stack (stores its session tickets)."""
        stale = conn.stale()
        if stale:
            conn.close()
        with self._lock:
            woken, _, _ = self._policy.tended(conn, stale)
            if stale:
                self._want_maintenance_locked()
        _wake(woken)

    def _open_in_background(self, action: Open) -> None:
        """A refill or a replacement; on failure its slot goes to a waiter (which then tries
        on its own instead of sleeping to its pool timeout) and the schedule backs off."""
        try:
            with self._lock:
                address = self._policy.address_for(action.replaces)
            conn = self._cfg.open(blocking=True, address=address)
        except BaseException as exc:
            with self._lock:
                woken = self._policy.open_failed(action, monotonic_ns(), str(exc))
            log.info("background open (%s) of %s failed: %s", action.reason, self.url, exc)
            _wake(woken)
            if not isinstance(exc, FastpoolError):
                raise
            return
        with self._lock:
            woken, close, _ = self._policy.opened_in_background(action, conn, monotonic_ns())
        log.debug("opened %s (%s%s)", self.url, action.reason,
                  ", TLS resumed" if getattr(conn, "resumed", False) else "")
        if close is not None:
            close.close()
        _wake(woken)

    def _ping(self, conn: Any) -> None:
        """The keep-warm request on a connection taken off its idle stack."""
        ping, tmo = self._cfg.ping, self._timeout
        assert ping is not None
        error: Optional[BaseException] = None
        raw = None
        try:
            deadline = monotonic_ns() + tmo.total_ns if tmo.total_ns else 0
            raw = conn.exchange(ping.data, ping.head, tmo.write_ns, tmo.read_ns, deadline)
        except BaseException as exc:  # noqa: BLE001 - any failure retires the connection
            error = exc
            conn.close()
        with self._lock:
            woken, close, _ = self._policy.ping_done(conn, error)
            if raw is not None:
                self._ping_answered(conn, raw)
        if error is not None:
            log.info("keep-warm request on a connection to %s failed (%s): replaced",
                     self.url, error)
        if close is not None:
            close.close()
        _wake(woken)
        if error is not None and not isinstance(error, Exception):
            raise error
