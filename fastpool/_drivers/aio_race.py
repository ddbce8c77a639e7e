"""A hedged request on the AsyncPool: the request and, after the hedge's delay, its copy,
raced on the loop (fastpool.Hedge says when and how much; the decisions are
fastpool._policy.hedging's).

Each copy is a task running the pool's own exchange on its connection (AsyncPool._exchange:
direct steps, parked on the connection's fd reader, limited by the pool's watchdog); a
loop.call_later timer at the delay wakes the race to send the copy, on an idle connection,
if the budget and the exchange gate admit it at once. Whichever copy settles the race first
resolves the caller (with ``deduplicated=True`` a 2xx settles it; else the first answer once
neither copy is left in flight).

Every copy's connection is settled by its task's done callback, never by the race: answered,
it goes back to the pool; failed or cancelled, it is dropped. So a loser simply runs on in
the background (the pool's background set: aclose cancels it) and its connection goes back
only once its response was read to the end — never with a response in flight. A caller's
cancellation cancels both copies (their connections are closed).

The pool's latency histograms record the request as its caller saw it: from the primary's
start to the winner's last byte (the copy's own exchange is not recorded).
"""

from __future__ import annotations

import asyncio
from time import monotonic_ns
from typing import TYPE_CHECKING, Any, Coroutine, Dict, List, Optional, Tuple

from .._model.errors import FastpoolError, NotSentError
from .._model.hedge import Hedge
from .._model.request import Prepared
from .._model.response import RawExchange, Response, make_response, request_info
from .._model.timeout import Timeout
from .._policy.attempts import Attempts
from .._policy.hedging import admit_copy, delay_ns, outcome_error, settles

if TYPE_CHECKING:
    from .aio import AsyncPool

#: What AsyncPool._park returns when the hedge's delay woke it (fastpool._drivers.aio).
_WOKEN = -3


async def carry(pool: AsyncPool, hedge: Hedge, prepared: Prepared, tmo: Timeout, start: int,
                deadline: int, retries: Optional[int], priority: bool,
                resign: Optional[Tuple[Any, ...]], weight: int, order: int) -> Response:
    """The request raced with a copy; as AsyncPool._carry otherwise (its attempts, waiting
    for a connection, opening one). Unhedged when the delay is not known yet (a quantile
    with too few samples): then it is AsyncPool._carry."""
    policy = pool._policy
    pool._hedge_budget.earn(hedge)
    delay = delay_ns(hedge, prepared.hist, policy.stats.latency)
    if not delay:
        return await pool._carry(prepared, tmo, start, deadline, retries, priority, resign)
    attempts: Optional[Attempts] = None
    built = monotonic_ns()
    while True:
        conn = policy.take_idle(priority) if not policy.closed else None
        fresh = False
        if conn is None:
            try:
                conn, fresh = await pool._acquire(tmo, deadline, priority)
            except FastpoolError as exc:
                attempts = attempts or Attempts(
                    prepared.method, pool._retries if retries is None else retries, deadline)
                raise attempts.give_up(exc, policy.stats)
        if resign and monotonic_ns() - built > _resign_after_ns():
            try:  # it waited: signed again (both copies carry the new timestamp)
                m, u, p, h, c, j, d = resign
                prepared = pool._prepare_exchange(m, u, p, h, c, j, d, True, monotonic_ns())
            except BaseException:
                pool._release(conn)
                raise
            built = monotonic_ns()
        try:
            return await _Race(pool, hedge, prepared, tmo, start, deadline, weight, order,
                               priority).run(conn, delay)
        except BaseException as exc:
            attempts = attempts or Attempts(
                prepared.method, pool._retries if retries is None else retries, deadline)
            error = attempts.after(exc, fresh=fresh, stats=policy.stats,
                                   closed=policy.closed, now=monotonic_ns())
            if error is not None:
                raise error


def _resign_after_ns() -> int:
    """AsyncPool's: how long a signed request may wait before it is signed again (read at
    call time: fastpool._drivers.aio imports this module)."""
    from .aio import _RESIGN_AFTER_NS

    return _RESIGN_AFTER_NS


class _Race:
    """One attempt: the primary on a connection, its copy after the delay if admitted."""

    __slots__ = ("pool", "hedge", "prepared", "tmo", "start", "deadline", "weight", "order",
                 "priority", "legs", "wake", "due")

    def __init__(self, pool: AsyncPool, hedge: Hedge, prepared: Prepared, tmo: Timeout,
                 start: int, deadline: int, weight: int, order: int, priority: bool) -> None:
        self.pool = pool
        self.hedge = hedge
        self.prepared = prepared
        self.tmo = tmo
        self.start = start
        self.deadline = deadline
        self.weight = weight
        self.order = order
        self.priority = priority
        #: task -> (its connection, whether it is the copy), in the order they began
        self.legs: Dict[asyncio.Task[RawExchange], Tuple[Any, bool]] = {}
        self.wake: Optional[asyncio.Future[None]] = None
        #: the delay's timer fired (its clock, not ours, says so: uvloop's timers count in
        #: whole milliseconds of a cached loop time)
        self.due = False

    async def run(self, conn: Any, delay: int) -> Response:
        pool = self.pool
        loop = pool._loop
        assert loop is not None
        t0 = monotonic_ns()
        timer = loop.call_later(delay / 1e9, self._fire, conn)
        # The common case first: the primary alone, inline (no task) until the delay.
        step_done = pool._step_done
        try:
            conn.begin(self.prepared.data, self.prepared.head)
            rc = conn.step()
            while rc != step_done and not self.due:
                rc = await pool._park(conn, rc, self.tmo, self.deadline)
            if rc == step_done:
                timer.cancel()
                raw = conn.take()
                self._answered(conn, raw)
                return self._won(raw, False, t0)  # settled, or nothing else is in flight
        except BaseException as exc:
            timer.cancel()
            pool._drop(conn, exc)
            raise
        # The delay passed: the primary goes on in a task, raced with its copy.
        answered: List[Tuple[asyncio.Task[RawExchange], RawExchange]] = []
        ended = 0  # how many copies' ends the race has seen
        try:
            self._begin(conn, False, 0, self._rest(conn, rc))
            self._copy()
            while True:
                if sum(task.done() for task in self.legs) == ended:
                    # (A done future would not yield: wait only when nothing is new.)
                    self.wake = loop.create_future()
                    await self.wake
                ended = 0
                for task in self.legs:
                    if not task.done():
                        continue
                    ended += 1
                    if (not task.cancelled() and task.exception() is None
                            and all(t is not task for t, _ in answered)):
                        answered.append((task, task.result()))
                winner = next((pair for pair in answered
                               if settles(pair[1].status, self.hedge)), None)
                live = [task for task in self.legs if not task.done()]
                if winner is None and not live:
                    winner = answered[0] if answered else None
                    if winner is None:
                        raise self._error()
                if winner is not None:
                    return self._won(winner[1], self.legs[winner[0]][1], t0)
        except BaseException:
            for task in self.legs:
                task.cancel()  # their done callbacks close the connections
            raise
        finally:
            timer.cancel()
            for task in self.legs:
                if not task.done():  # the loser runs on: aclose() cancels it
                    self.pool._background.add(task)  # type: ignore[arg-type]
                    task.add_done_callback(self.pool._background.discard)

    def _fire(self, conn: Any) -> None:
        """The delay passed: the race sends the copy (the primary, parked inline, is woken
        to go on in a task)."""
        self.due = True
        park = self.pool._parked.get(conn)
        if self.wake is None and park is not None and not park.done():
            park.wake_later(_WOKEN)  # (as a future's result: its task resumes after this)
        self._wake_up()

    async def _rest(self, conn: Any, rc: int) -> RawExchange:
        """The primary's exchange after the delay, in its task."""
        pool = self.pool
        while rc != pool._step_done:
            rc = await pool._park(conn, rc, self.tmo, self.deadline)
        raw: RawExchange = conn.take()
        return raw

    def _wake_up(self, *_: Any) -> None:
        if self.wake is not None and not self.wake.done():
            self.wake.set_result(None)

    def _begin(self, conn: Any, copy: bool, granted: int,
               exchange: Optional[Coroutine[Any, Any, RawExchange]] = None,
               ) -> asyncio.Task[RawExchange]:
        loop = self.pool._loop
        assert loop is not None
        if exchange is None:
            exchange = self.pool._exchange(conn, self.prepared, self.tmo, self.deadline)
        task = loop.create_task(exchange)
        self.legs[task] = (conn, copy)
        task.add_done_callback(lambda t: self._settle(t, conn, granted))
        task.add_done_callback(self._wake_up)
        return task

    def _copy(self) -> None:
        """The delay passed unanswered: the copy, on an idle connection, if admitted."""
        pool = self.pool
        policy = pool._policy
        conn = None if policy.closed else policy.take_idle(self.priority)
        if conn is None:
            return
        granted = admit_copy(pool._hedge_budget, pool._gate, monotonic_ns(), self.weight,
                             self.order, self.priority)
        if not granted:
            woken = policy.returned(conn)
            if woken is not None and not woken.handle.done():
                woken.handle.set_result(None)
            return
        policy.stats.hedges += 1
        self._begin(conn, True, granted)

    def _settle(self, task: asyncio.Task[RawExchange], conn: Any, granted: int) -> None:
        """A copy's task ended: its connection goes back (answered) or is dropped."""
        pool = self.pool
        if task.cancelled():
            pool._drop(conn, None)
            return
        exc = task.exception()
        if exc is not None:
            pool._drop(conn, exc)
            if granted and (isinstance(exc, NotSentError) or isinstance(
                    getattr(exc, "fastpool_error", None), NotSentError)):
                pool._gate.refund(monotonic_ns(), self.weight, self.order, granted)
            return
        self._answered(conn, task.result())

    def _answered(self, conn: Any, raw: RawExchange) -> None:
        """A copy's response was read to its end: its connection goes back (as _carry)."""
        rtt = raw.t_first_byte - raw.t_written  # smoothed as TCP's SRTT (RFC 6298: 1/8)
        conn.rtt_ns = rtt if not conn.rtt_ns else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
        conn.uses += 1
        policy = self.pool._policy
        if (conn.uses < conn.retire_uses and conn.reusable and not policy.closed
                and (not conn.retire_at_ns or raw.t_complete < conn.retire_at_ns)):
            woken = policy.returned(conn)
            if woken is not None and not woken.handle.done():
                woken.handle.set_result(None)
        else:
            self.pool._release(conn)

    def _error(self) -> BaseException:
        """Both copies failed (or the only one did): the attempt's error."""
        errors = [task.exception() for task in self.legs
                  if not task.cancelled() and task.exception() is not None]
        if not errors:
            return asyncio.CancelledError()
        if len(errors) > 1:
            return outcome_error(errors[0], errors[1])  # type: ignore[arg-type]
        return errors[0]  # type: ignore[return-value]

    def _won(self, raw: RawExchange, copy: bool, t0: int) -> Response:
        pool = self.pool
        prepared = self.prepared
        stats = pool._policy.stats
        stats.latency.record(raw.t_complete - t0)
        prepared.hist.record(raw.t_complete - t0)
        if copy:
            stats.hedge_wins += 1
        return make_response(raw, request_info(pool._response_ctx, prepared.method,
                                               prepared.target, self.start))
