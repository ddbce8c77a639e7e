"""A hedged request on the sync Pool: the request and, after the hedge's delay, its copy,
raced in the caller's thread (fastpool.Hedge says when and how much; the decisions are
fastpool._policy.hedging's).

The unhedged hot path is one blocking engine call; a race cannot be, so a hedged request
switches its connections to step mode (Connection.set_blocking(False)) and drives them with
begin()/step()/take() and one poll() over their descriptors, with the hedge's delay and each
copy's phase limits (write stall, read silence, the request's deadline) as its timeout. A
connection goes back to blocking mode before it goes back to the pool.

Decisions of this driver:
- poll() counts in milliseconds: a delay under one is rounded up to one (as uvloop's timers).
- The copy goes out only on an idle connection (never opened, never waited for), of the
  general lane unless the request has priority, and only if the budget and the exchange gate
  admit it at once (hedging.admit_copy).
- The loser: when the winner's answer arrives, the loser gets one more non-blocking step; if
  that completes its response the connection goes back to the pool (drained), else it is
  closed (the refill replaces it in the background). There is no thread to drain it later,
  and a connection with a response in flight must never carry another request.
- The pool's latency histograms record the request as its caller saw it: from the primary's
  first byte out to the winner's last byte in (the copy's own exchange is not recorded).
"""

from __future__ import annotations

import math
import select
from time import monotonic_ns
from typing import TYPE_CHECKING, Any, Callable, List, Optional

from .._engine._pure import _pollbits
from .._model import failures
from .._model.errors import FastpoolError, NotSentError
from .._model.hedge import Hedge
from .._model.request import Prepared
from .._model.response import RawExchange, Response, make_response, request_info
from .._model.timeout import Timeout
from .._policy.attempts import Attempts
from .._policy.hedging import admit_copy, delay_ns, outcome_error, settles

if TYPE_CHECKING:
    from .sync import Pool

# Read where the platform has them: import fastpool must work without select.poll (a
# hedged request cannot run there; nothing can: the engines refuse to open connections).
_POLLIN = _pollbits.POLLIN | _pollbits.POLLPRI
_POLLOUT = _pollbits.POLLOUT


class _Leg:
    """One copy of the request on its connection."""

    __slots__ = ("conn", "fd", "copy", "granted", "at", "written", "received", "rc", "raw",
                 "error")

    def __init__(self, conn: Any, copy: bool, granted: int = 0) -> None:
        self.conn = conn
        self.fd = conn.fileno()
        self.copy = copy
        self.granted = granted          # the copy's rate-limit grant (refunded if NotSent)
        self.at = 0                     # ns: when its current wait expires (0: never)
        self.written = False
        self.received = 0
        self.rc = -1                    # the last step result
        self.raw: Optional[RawExchange] = None
        self.error: Optional[BaseException] = None

    @property
    def live(self) -> bool:
        return self.raw is None and self.error is None


def send(pool: Pool, hedge: Hedge, prepared: Prepared, tmo: Timeout, start: int,
         retries: Optional[int], priority: bool, weight: int, order: int,
         reprepare: Optional[Callable[[], Prepared]]) -> Response:
    """The request raced with a copy; as Pool._send_slow otherwise (its attempts, waiting
    for a connection, opening one). Unhedged when the delay is not known yet (a quantile
    with too few samples): then it is Pool._send_slow."""
    policy = pool._policy
    with pool._lock:
        pool._hedge_budget.earn(hedge)
        delay = delay_ns(hedge, prepared.hist, policy.stats.latency)
    if not delay:
        return pool._send_slow(prepared, tmo, start, retries, None, priority, reprepare)
    deadline = start + tmo.total_ns if tmo.total_ns else 0
    attempts = Attempts(prepared.method, pool._retries if retries is None else retries,
                        deadline)
    until = 0
    built = monotonic_ns()
    while True:
        conn, fresh = _take_idle(pool, priority), False
        if conn is None:
            if until == 0:
                until = pool._wait_until(tmo, deadline)
            try:
                conn, fresh = pool._acquire(until, deadline, priority)
            except FastpoolError as exc:
                with pool._lock:
                    error = attempts.give_up(exc, policy.stats)
                raise error
            if reprepare is not None and monotonic_ns() - built > _resign_after_ns():
                try:  # it waited: signed again (both copies carry the new timestamp)
                    prepared = reprepare()
                except BaseException:
                    pool._give_back_conn(conn, fresh)
                    raise
                built = monotonic_ns()
        try:
            return _Race(pool, hedge, prepared, tmo, start, deadline, delay, priority, weight,
                         order).run(conn)
        except BaseException as exc:
            pool._failed(attempts, exc, fresh=fresh)  # raises unless it may go again
            del exc


def _resign_after_ns() -> int:
    """Pool's: how long a signed request may wait before it is signed again (read at call
    time: fastpool._drivers.sync imports this module)."""
    from .sync import _RESIGN_AFTER_NS

    return _RESIGN_AFTER_NS


def _take_idle(pool: Pool, priority: bool) -> Any:
    """An idle connection without the lock, as the engine's Lane takes one (an atomic list
    pop) when no request waits before this one; else None (Pool._acquire decides)."""
    policy = pool._policy
    queue = policy.queue
    if policy.closed or queue.priority or (queue.general and not priority):
        return None
    try:
        return policy.take_idle(priority)
    except IndexError:  # taken by another thread meanwhile
        return None


def _give_back(pool: Pool, conn: Any, t_complete: int) -> None:
    """A connection that carried its request, back as the engine's Lane gives one back: on
    top of its idle stack without the lock when nothing else is due, else through the
    policy (a waiter, a rotation, a drop)."""
    policy = pool._policy
    queue = policy.queue
    if (conn.reusable and not policy.closed and not queue.priority and not queue.general
            and conn.uses < conn.retire_uses
            and (not conn.retire_at_ns or t_complete < conn.retire_at_ns)):
        policy.idle[conn.lane].append(conn)
        if policy.closed or queue.priority or queue.general:
            pool._settle()  # a request queued (or the pool closed) as it went idle
        return
    if not conn.reusable:
        conn.close()
    pool._on_release(conn, None)


class _Race:
    """One attempt: the primary on `conn`, the copy after `delay` ns if admitted."""

    __slots__ = ("pool", "hedge", "prepared", "tmo", "start", "deadline", "delay", "priority",
                 "weight", "order", "legs", "poller", "done", "want_read")

    def __init__(self, pool: Pool, hedge: Hedge, prepared: Prepared, tmo: Timeout, start: int,
                 deadline: int, delay: int, priority: bool, weight: int, order: int) -> None:
        self.pool = pool
        self.hedge = hedge
        self.prepared = prepared
        self.tmo = tmo
        self.start = start
        self.deadline = deadline
        self.delay = delay
        self.priority = priority
        self.weight = weight
        self.order = order
        self.legs: List[_Leg] = []
        self.poller = select.poll()
        engine = pool._cfg.engine
        self.done = engine.STEP_DONE
        self.want_read = engine.STEP_WANT_READ

    def run(self, conn: Any) -> Response:
        """The winner's Response; or the attempt's error (every connection settled)."""
        legs = self.legs
        answered: List[_Leg] = []
        t0 = monotonic_ns()
        hedge_at = t0 + self.delay
        hedged = False  # the copy was decided (sent, or not admitted)
        try:
            primary = self._begin(conn, copy=False)
            poll = self.poller.poll
            while primary.live:  # the common case, alone until the delay: the least work
                now = monotonic_ns()
                until = hedge_at if not primary.at or hedge_at < primary.at else primary.at
                if now >= until:
                    break
                if poll(math.ceil((until - now) / 1e6)):
                    self._step(primary)
            if primary.raw is not None and settles(primary.raw.status, self.hedge):
                return self._won(primary, t0)
            while True:
                for leg in legs:
                    if leg.raw is not None and leg not in answered:
                        answered.append(leg)
                winner = next((leg for leg in answered
                               if settles(leg.raw.status, self.hedge)), None)  # type: ignore
                live = [leg for leg in legs if leg.live]
                if winner is None and not live and (hedged or primary.raw is not None
                                                    or primary.error is not None):
                    winner = answered[0] if answered else None
                    if winner is None:
                        errors = [leg.error for leg in legs if leg.error is not None]
                        raise (outcome_error(errors[0], errors[1]) if len(errors) > 1
                               else errors[0])
                if winner is not None:
                    return self._won(winner, t0)
                now = monotonic_ns()
                if not hedged and primary.live and now >= hedge_at:
                    hedged = True
                    self._copy(now)
                    continue
                self._wait(live, 0 if hedged else hedge_at, now)
        except BaseException as exc:
            for leg in legs:
                if leg.live:
                    self._fail(leg, exc, close=True)
            if not isinstance(exc, FastpoolError):
                failures.interrupted(exc, max((leg.conn.sent for leg in legs), default=0))
            raise

    # ---- the copies ----------------------------------------------------------------

    def _begin(self, conn: Any, copy: bool, granted: int = 0) -> _Leg:
        leg = _Leg(conn, copy, granted)
        self.legs.append(leg)
        try:
            conn.set_blocking(False)
        except OSError as exc:
            self._fail(leg, failures.failure(failures.WRITE, f"cannot step: {exc}"),
                       close=True)
            return leg
        conn.begin(self.prepared.data, self.prepared.head)
        self.poller.register(leg.fd, _POLLOUT)
        self._limit(leg, monotonic_ns())
        self._step(leg)
        return leg

    def _copy(self, now: int) -> None:
        """The delay passed unanswered: the copy, on an idle connection, if admitted."""
        pool = self.pool
        policy = pool._policy
        woken = None
        with pool._lock:
            conn = None if policy.closed else policy.take_idle(self.priority)
            if conn is None:
                return
            granted = admit_copy(pool._hedge_budget, pool._gate, now, self.weight,
                                 self.order, self.priority)
            if granted:
                policy.stats.hedges += 1
            else:
                woken = policy.returned(conn)
        if not granted:
            if woken is not None:
                woken.handle.release()
            return
        self._begin(conn, copy=True, granted=granted)

    def _step(self, leg: _Leg) -> None:
        conn = leg.conn
        try:
            rc = conn.step()
        except BaseException as exc:  # noqa: BLE001 - the leg's failure, settled below
            self._fail(leg, exc, close=True)
            return
        if rc == self.done:
            leg.raw = conn.take()
            self.poller.unregister(leg.fd)
            self._answered(leg)
            return
        now = monotonic_ns()
        if not leg.written and conn.written:
            leg.written = True
            self._limit(leg, now)
        elif conn.received != leg.received:
            leg.received = conn.received
            self._limit(leg, now)  # the read limit is a silence: it restarts
        if rc != leg.rc:
            leg.rc = rc
            self.poller.modify(leg.fd, _POLLIN if rc == self.want_read else _POLLOUT)

    def _limit(self, leg: _Leg, now: int) -> None:
        silence = self.tmo.read_ns if leg.written else self.tmo.write_ns
        at = now + silence if silence >= 0 else 0
        if self.deadline and (not at or self.deadline < at):
            at = self.deadline
        leg.at = at

    def _wait(self, live: List[_Leg], hedge_at: int, now: int) -> None:
        """One poll() until a copy can step, the hedge is due, or a limit passes."""
        until = hedge_at
        for leg in live:
            if leg.at and (not until or leg.at < until):
                until = leg.at
        for leg in live:
            if leg.at and now >= leg.at:
                self._fail(leg, failures.timed_out(
                    written=leg.conn.written, sent=leg.conn.sent,
                    total=bool(self.deadline) and now >= self.deadline), close=True)
                return
        timeout = -1 if not until else max(math.ceil((until - now) / 1e6), 0)
        by_fd = {leg.fd: leg for leg in live}
        for fd, _ in self.poller.poll(timeout):
            ready = by_fd.get(fd)
            if ready is not None and ready.live:
                self._step(ready)

    # ---- outcomes ------------------------------------------------------------------

    def _answered(self, leg: _Leg) -> None:
        """A copy's response is in: its connection carried a request and goes back."""
        conn, raw = leg.conn, leg.raw
        assert raw is not None
        rtt = raw.t_first_byte - raw.t_written
        conn.rtt_ns = rtt if not conn.rtt_ns else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
        conn.uses += 1
        if conn.reusable:
            try:
                conn.set_blocking(True)
            except OSError:
                conn.close()
        _give_back(self.pool, conn, raw.t_complete)

    def _fail(self, leg: _Leg, exc: BaseException, *, close: bool) -> None:
        leg.error = exc
        try:
            self.poller.unregister(leg.fd)
        except (KeyError, ValueError):
            pass
        if close:
            leg.conn.close()
        pool = self.pool
        pool._on_release(leg.conn, exc)
        if leg.granted and (isinstance(exc, NotSentError) or isinstance(
                getattr(exc, "fastpool_error", None), NotSentError)):
            with pool._lock:
                pool._gate.refund(monotonic_ns(), self.weight, self.order, leg.granted)

    def _won(self, winner: _Leg, t0: int) -> Response:
        """The race is decided: the loser is drained if its answer is in, else closed."""
        for leg in self.legs:
            if leg.live:
                self._step(leg)  # what has arrived, without waiting
                if leg.live:
                    leg.error = failures.failure(failures.READ, "lost the hedge race")
                    self.poller.unregister(leg.fd)
                    leg.conn.close()
                    self.pool._on_release(leg.conn, None)
        raw = winner.raw
        assert raw is not None
        prepared = self.prepared
        pool = self.pool
        stats = pool._policy.stats
        stats.latency.record(raw.t_complete - t0)  # without the lock, as the Lane records
        prepared.hist.record(raw.t_complete - t0)
        if winner.copy:
            with pool._lock:
                stats.hedge_wins += 1
        return make_response(raw, request_info(pool._response_ctx, prepared.method,
                                               prepared.target, self.start))
