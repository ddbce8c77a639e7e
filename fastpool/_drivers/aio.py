"""fastpool.AsyncPool: the same pool for asyncio (and uvloop), without Transports.

A request writes directly on the non-blocking socket and reads the response directly when it
is already there; only when the socket is not ready does it park until the loop reports the
fd ready. (asyncio's SSL transport costs about twice the latency; the engines do TLS in
OpenSSL directly, and drain what OpenSSL already decrypted before they ever ask to wait.)

Each connection's fd is registered with the loop's reader once, for the connection's life:
adding and removing a reader around every wait cost two epoll_ctl calls and asyncio's
selector bookkeeping per request (~20 us here, as much as the round trip itself). The reader
wakes the request parked on the connection; on an idle connection it means the server closed
it (or spoke unasked), so it is replaced at once instead of failing a later request.

The decisions are the policy's (fastpool._policy.pool), shared with the sync driver; only the
waiting differs: futures resolved on the loop instead of locks, and loop timers instead of a
maintenance thread. Everything here runs on the loop's thread, so the policy needs no lock.
Connections are opened in a small thread pool (the engines release the GIL while connecting
and handshaking), never on the loop.
"""

from __future__ import annotations

import asyncio
import copy
import gc
import inspect
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from time import monotonic_ns
from typing import Any, Callable, Coroutine, Dict, List, Optional, Sequence, Set, Tuple, Union

from .._engine.protocol import Connection, Lane, Park
from .._model import failures
from .._model.errors import (
    EventLoopError,
    FastpoolError,
    NotSentError,
    OutageError,
    PoolClosed,
    PoolTimeout,
    StaleConnection,
)
from .._model.headers import HeaderTypes
from .._model.request import Prepared
from .._model.response import RawExchange, Response
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
from . import aio_race
from .base import HedgeTypes, PoolBase, _check_samples
from .connect import open_all
from .pipeline import PipelineItem, PipelineResult

log = logging.getLogger("fastpool")

#: The most threads that open connections together (the initial fill; background opens).
_OPEN_THREADS = 8


def _close_filled(filling: Future[list[Connection]]) -> None:
    """The end of an initial fill nobody waits for any more (open() was cancelled)."""
    if not filling.cancelled() and filling.exception() is None:
        for conn in filling.result():
            conn.close()

#: A signed request that waited longer than this is signed again before it is written.
_RESIGN_AFTER_NS = 100_000_000
#: Connections whose smoothed round trip is below this try one read right after writing.
_READ_AT_ONCE_NS = 100_000

# What a parked request wakes up with, besides the engine's step results (STEP_*: >= 0).
_READY = -1      # its fd is writable: step again
_EXPIRED = -2    # its phase's timeout ran out
_WOKEN = -3      # its hedge's delay passed (fastpool._drivers.aio_race): step on later


def _wake(waiter: Optional[Waiter]) -> None:
    """Wakes a waiter the policy served (its future; it reads the outcome off the waiter)."""
    if waiter is not None and not waiter.handle.done():
        waiter.handle.set_result(None)


class AsyncPool(PoolBase[Coroutine[Any, Any, Response]]):
    """A pool of pre-opened keep-alive connections for asyncio (see fastpool.Pool).

    ``async with AsyncPool(url, connections=4) as pool`` opens the connections before the
    body runs (``await pool.open()`` does the same without a context manager). Requests
    beyond the connections available wait in arrival order, up to the pool timeout. The
    parameters are Pool's, but for ``busy_poll``, which it refuses (ValueError): a spin
    would stall the event loop.
    """

    _kind = "AsyncPool"

    def _start(self) -> None:
        self._cooldown = self._gate.cooldown
        self._limiter = self._gate.limiter
        #: every request takes the exchange path (rate limits, or a pool-wide hedge)
        self._exchange_always = self._limiter is not None or self._hedge is not None
        self._loop_afresh()

    def _loop_afresh(self) -> None:
        """Unbound from any loop: open() binds the pool to the running one."""
        engine_mod = self._cfg.engine
        self._step_done = engine_mod.STEP_DONE
        self._want_read = engine_mod.STEP_WANT_READ
        self._park_type = engine_mod.Park
        policy = self._policy
        self._lane: Lane = engine_mod.Lane(
            policy.idle[0], policy.idle[1], policy.queue.general, policy.queue.priority,
            self._cfg.timeout, policy.stats.latency, Response, self._response_ctx,
            self._on_release, self._settle)
        if policy.fastest:
            self._lane.pick = fastest_index
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._opener: Optional[ThreadPoolExecutor] = None
        self._opened = False
        self._parked: Dict[Any, Park] = {}  # conn -> the request parked on it
        self._watch_handle: Optional[asyncio.TimerHandle] = None
        self._watch_at = 0
        self._readers: Dict[Any, int] = {}              # conn -> its registered fd
        self._maintenance_timer: Optional[asyncio.TimerHandle] = None
        self._maintenance_soon = False
        self._last_collect_ns = 0
        self._interrupted = False  # a request ended by an interrupt since the last collect
        self._background: Set[asyncio.Task[None]] = set()  # tasks of background opens

    def _after_fork(self) -> None:
        # The parent's loop, selector and opener threads are not the child's: the inherited
        # connections are closed without touching the loop (removing a reader would change
        # the parent's epoll set, which the child shares), and the pool opens again on the
        # child's loop at its first use.
        super()._after_fork()
        self._loop_afresh()

    # ---- lifecycle ---------------------------------------------------------------------

    async def open(self) -> AsyncPool:
        """Opens the initial connections in parallel; raises the first failure (closing the
        others). Idempotent."""
        if self._opened:
            if asyncio.get_running_loop() is not self._loop:
                self._rebind()
            return self
        policy = self._policy
        if policy.closed:
            raise PoolClosed("the pool is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._opener = ThreadPoolExecutor(max_workers=min(policy.slots.limit[GENERAL] + 1,
                                                          _OPEN_THREADS),
                                          thread_name_prefix="fastpool-open")
        target = policy.slots.target
        lanes = [GENERAL] * target[GENERAL] + [RESERVED] * target[RESERVED]
        naddr = len(self._cfg.addrs) if self._cfg.spread else 1
        for lane in lanes:
            policy.slots.reserve(lane)
        filling = self._opener.submit(open_all, lambda i: self._cfg.open(False, 0, i % naddr),
                                      len(lanes), _OPEN_THREADS, self._cfg.tls is not None)
        try:
            results = await asyncio.wrap_future(filling)
        except BaseException:
            # A failed fill closed what it opened; a cancelled open() leaves the fill running
            # in its thread: what it opens is closed when it ends.
            filling.add_done_callback(_close_filled)
            for lane in lanes:
                policy.slots.unreserve(lane)
            self._opener.shutdown(wait=False)
            raise
        now = monotonic_ns()
        for conn, lane in zip(results, lanes):
            policy.opened(conn, lane, now)
            self._watch(conn)
            policy.idle[lane].append(conn)
        self._opened = True
        if policy.maintenance.timed:
            self._want_maintenance()  # it sets a timer for the first ping or rotation
        return self

    async def calibrate(self, path: str = "/api/v3/time", field: str = "serverTime", *,
                        samples: int = 5, unit: str = "ms") -> ClockEstimate:
        """As Pool.calibrate."""
        for _ in range(_check_samples(samples)):
            self.calibrate_sample(await self.get(path), field, unit)
        return self._estimate(path, field)

    async def resolve(self, error: FastpoolError, lookup: Callable[[], Any], *,
                      margin: float = 1.0, wait: Optional[float] = None) -> Any:
        """As Pool.resolve; lookup may be a coroutine function."""
        await asyncio.sleep(self._resolve_wait(error, margin, wait))
        result = lookup()
        if inspect.isawaitable(result):
            result = await result
        return result

    def rotate(self) -> None:
        """Replaces every connection, make-before-break (each new one opened, TLS resumed,
        before the one it replaces retires), e.g. after the gateway's DNS changed. Call it
        on the pool's loop."""
        self._policy.rotate()
        self._want_maintenance()

    async def aclose(self) -> None:
        """Closes idle connections now and in-flight ones when their requests finish (as
        Pool.close: a request already sent keeps its response — an order placed is not
        lost track of; cancel its task to abandon it); requests waiting for a connection,
        or still opening one, fail with PoolClosed."""
        policy = self._policy
        if policy.closed:
            return
        loop = self._loop
        if (loop is not None and not loop.is_closed()
                and asyncio.get_running_loop() is not loop and loop.is_running()):
            raise EventLoopError(f"this AsyncPool is bound to an event loop running elsewhere "
                                 f"({loop!r}): close it there")
        idle, _ = policy.close()
        self._lane.closed = True
        for conn in idle:
            self._close(conn)
        for waiter in policy.queue.fail_all(PoolClosed("the pool is closed")):
            _wake(waiter)
        if self._maintenance_timer is not None:
            self._maintenance_timer.cancel()
        if self._watch_handle is not None:
            self._watch_handle.cancel()
            self._watch_handle = None
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        if self._opener is not None:
            self._opener.shutdown(wait=False)

    async def __aenter__(self) -> AsyncPool:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---- one request -------------------------------------------------------------------

    async def _send(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
                    content: Any, json: Any, data: Any, timeout: Any, retries: Optional[int],
                    priority: bool, weight: int, order: int, signed: bool,
                    on_limit: Optional[str], hedge: HedgeTypes = None) -> Response:
        start = monotonic_ns()
        tmo = self._timeout if timeout is _UNSET else Timeout.of(timeout)
        deadline = start + tmo.total_ns if tmo.total_ns else 0
        if not self._opened:
            await self.open()
        elif asyncio.get_running_loop() is not self._loop:
            self._rebind()  # before a byte is written: EventLoopError (NotSent) if it cannot
        cooldown = self._cooldown
        # What the exchange asks of the request (rate limits, a cooldown in force, signing,
        # a form body) is done around the same exchange loop (see Pool._send_exchange).
        exchange = (signed or data is not None or order or self._exchange_always
                    or hedge is not None or (cooldown is not None and cooldown._until > start))
        granted = 0
        prepared: Optional[Prepared] = None
        race = None
        try:
            if exchange:
                if hedge is not None or self._hedge is not None:
                    race = hedge_for(method, self._hedge, hedge)
                granted = await self._admit(weight, order, priority, on_limit, deadline)
                prepared = self._prepare_exchange(method, url, params, headers, content, json,
                                                  data, signed, monotonic_ns())
            else:
                prepared = self._prepare(method, url, params, headers, content, json)
            if race is None:
                response = await self._carry(
                    prepared, tmo, start, deadline, retries, priority,
                    (method, url, params, headers, content, json, data) if signed else None)
            else:  # raced with a copy (fastpool._drivers.aio_race)
                response = await aio_race.carry(
                    self, race, prepared, tmo, start, deadline, retries, priority,
                    (method, url, params, headers, content, json, data) if signed else None,
                    weight, order)
        except BaseException as exc:
            if granted and (isinstance(exc, NotSentError) or isinstance(
                    getattr(exc, "fastpool_error", None), NotSentError)):
                self._gate.refund(monotonic_ns(), weight, order, granted)
            self._failed_request(exc, method, url, params, json, data, prepared)
            raise
        # Without rate limits the gate learns nothing from a response but a cooldown status.
        if (exchange and self._limiter is not None) or (
                response.status_code >= 400 and response.status_code in self._gate.statuses):
            error = self._rate_limited(response, granted or start, order, monotonic_ns())
            if error is not None:
                self._failed_request(error, method, url, params, json, data, prepared)
                raise error
        return response

    # ---- a pipeline (fastpool._drivers.pipeline) ---------------------------------------

    async def pipeline(self, items: Sequence[PipelineItem], *, headers: HeaderTypes = None,
                       timeout: Any = _UNSET, retries: Optional[int] = None,
                       priority: bool = False, weight: Union[int, Sequence[int]] = 1,
                       on_limit: Optional[str] = None, signed: bool = False) -> PipelineResult:
        """As Pool.pipeline: GET/HEAD items as one HTTP/1.1 pipeline on one connection, one
        Response or exception per item, in order."""
        call = self._pipeline_begin(items, headers, timeout, retries, weight, signed)
        if call is None:
            return []
        if not self._opened:
            await self.open()
        elif asyncio.get_running_loop() is not self._loop:
            self._rebind()  # before a byte is written: EventLoopError (NotSent) if it cannot
        policy = self._policy
        burst, tmo, deadline = call.burst, call.tmo, call.deadline
        if self._exchange_needed(None, 0, signed, call.start):
            await self._pipeline_admit(burst, call.weights, call.granted, priority, on_limit,
                                       deadline)
        while burst.todo:
            conn = policy.take_idle(priority) if not policy.closed else None
            fresh = False
            if conn is None:
                try:
                    conn, fresh = await self._acquire(tmo, deadline, priority)
                except FastpoolError as exc:  # PoolTimeout, PoolClosed, ConnectError, ...
                    burst.give_up(exc, policy.stats, copy.copy)
                    break
            indices, data, heads = call.next_burst(self)
            try:
                raws, error = await self._pipe(conn, data, heads, tmo, deadline)
            except BaseException as exc:  # cancelled mid-burst: bytes may be unread
                self._drop(conn, exc)
                raise
            responses, errors = call.outcome(self, conn, indices, raws, error)
            if error is not None:
                self._drop(conn, error)
            elif (conn.uses < conn.retire_uses and conn.reusable and not policy.closed
                    and (not conn.retire_at_ns or raws[-1].t_complete < conn.retire_at_ns)):
                _wake(policy.returned(conn))
            else:
                self._release(conn)
            burst.attempted(indices, responses, errors, fresh=fresh, stats=policy.stats,
                            closed=policy.closed, now=monotonic_ns())
        return self._pipeline_results(call)

    async def _pipe(self, conn: Connection, data: bytes, heads: List[bool], tmo: Timeout,
                    deadline: int) -> Tuple[List[RawExchange], Optional[FastpoolError]]:
        """One burst on conn, in steps (the twin of the engines' blocking pipeline()): the
        responses that came, and the failure that ended it early (None: all came)."""
        step_done = self._step_done
        raws: List[RawExchange] = []
        last = len(heads) - 1
        try:
            conn.begin(data, heads[0])
            rc = conn.step()
            while True:
                while rc != step_done:
                    rc = await self._park(conn, rc, tmo, deadline)
                if len(raws) == last:
                    raws.append(conn.take())
                    return raws, None
                raws.append(conn.take_next(heads[len(raws) + 1]))
                # OpenSSL may hold the next response already: step before parking.
                rc = conn.step()
        except FastpoolError as exc:
            return raws, exc

    async def _pipeline_admit(self, burst: Burst, weights: List[int], granted: List[int],
                              priority: bool, on_limit: Optional[str], deadline: int) -> None:
        """As Pool._pipeline_admit, waiting on the loop."""
        for i in list(burst.todo):
            try:
                granted[i] = await self._admit(weights[i], 0, priority, on_limit, deadline)
            except FastpoolError as exc:  # RateLimitedError, InvalidRequestError: NotSent
                self._pipeline_refused(burst, i, exc)
                return

    async def _admit(self, weight: int, order: int, priority: bool, on_limit: Optional[str],
                     deadline: int) -> int:
        """Waits until the rate limits let the request go (see ExchangeGate.admit); returns
        when it was granted."""
        while True:
            now = monotonic_ns()
            wait = self._gate.admit(now, weight, order, priority, on_limit, deadline)
            if not wait:
                return now
            await asyncio.sleep(wait / 1e9)

    async def _carry(self, prepared: Prepared, tmo: Timeout, start: int, deadline: int,
                     retries: Optional[int], priority: bool,
                     resign: Optional[Tuple[Any, ...]]) -> Response:
        """The request's attempts: a connection (idle, handed over, or opened), the exchange,
        the policy's verdict after a failure. resign: the request's arguments, when it is
        signed (signed again, with a fresh timestamp, when it waited or is sent again)."""
        policy, lane = self._policy, self._lane
        step_done = self._step_done
        attempts: Optional[Attempts] = None  # created at the first failure
        built = monotonic_ns()
        while True:
            conn = lane.take(priority)
            fresh = False
            if conn is None:
                try:
                    conn, fresh = await self._acquire(tmo, deadline, priority)
                except FastpoolError as exc:  # PoolTimeout, PoolClosed, ConnectError, ...
                    attempts = attempts or Attempts(
                        prepared.method, self._retries if retries is None else retries,
                        deadline)
                    raise attempts.give_up(exc, policy.stats)
            if resign and monotonic_ns() - built > _RESIGN_AFTER_NS:
                try:
                    m, u, p, h, c, j, d = resign
                    prepared = self._prepare_exchange(m, u, p, h, c, j, d, True, monotonic_ns())
                except BaseException:
                    self._release(conn)
                    raise
                built = monotonic_ns()
            try:
                # The exchange, in steps (as _exchange, inlined: a coroutine less per
                # request): written and read directly when the socket is ready (and read at
                # once after the write when the server is close: it saves parking and a loop
                # iteration), parked on the loop otherwise.
                rc = lane.start(conn, prepared, _READ_AT_ONCE_NS)
                while rc != step_done:
                    rc = await self._park(conn, rc, tmo, deadline)
            except BaseException as exc:
                self._drop(conn, exc)
                attempts = attempts or Attempts(
                    prepared.method, self._retries if retries is None else retries, deadline)
                error = attempts.after(exc, fresh=fresh, stats=policy.stats,
                                       closed=policy.closed, now=monotonic_ns())
                if error is not None:
                    raise error
                continue
            # Latency recorded, round trip smoothed (as TCP's SRTT, RFC 6298: 1/8), the
            # connection back on its stack (or to _on_release), the Response built: in C.
            return lane.finish(conn, prepared, start)

    async def _exchange(self, conn: Connection, prepared: Prepared, tmo: Timeout,
                        deadline: int) -> RawExchange:
        """One request on conn, in steps: written and read directly when the socket is ready,
        parked on the loop otherwise. (The first step checks that the server did not close
        the connection or speak unasked: StaleConnection, nothing written.)"""
        conn.begin(prepared.data, prepared.head)
        rc = conn.step()
        while rc != self._step_done:
            rc = await self._park(conn, rc, tmo, deadline)
        return conn.take()

    async def _park(self, conn: Connection, want: int, tmo: Timeout, deadline: int) -> int:
        """Waits until the exchange on conn moves on, and returns the engine's step result;
        or raises the phase's timeout. Reads happen in the connection's reader
        (_on_readable), which wakes us only when the exchange progressed: asyncio runs a
        ready task before the reader callbacks of the same loop iteration, so a readability
        event can describe bytes the task has already read, and waking on it would cost a
        loop iteration and a read that finds nothing. The task awaits the engine's Park,
        which the reader (or the writer) resumes in the same loop iteration."""
        loop = self._loop
        assert loop is not None
        writing = want != self._want_read  # reads wake through the connection's reader
        written = conn.written
        silence = tmo.read_ns if written else tmo.write_ns
        park = self._park_type(loop, silence, deadline)
        park.limit(monotonic_ns())
        fd = self._readers[conn]
        if writing:
            # The reader rests while the write is blocked: it is level-triggered, and bytes
            # the write phase does not read (a TLS 1.3 session ticket, an early response)
            # would make it fire on every loop iteration until the write timeout.
            loop.remove_reader(fd)
            loop.add_writer(fd, park.wake, _READY)
        self._parked[conn] = park
        if park.at and (not self._watch_at or park.at < self._watch_at):
            self._arm_watchdog(park.at)
        try:
            await park
            why = park.result()
        finally:
            del self._parked[conn]
            if writing:
                loop.remove_writer(fd)
                loop.add_reader(fd, self._on_readable, conn)
        if why >= 0:
            return why  # the reader stepped the exchange
        if why == _READY:
            return conn.step()
        if why == _WOKEN:
            return want
        raise failures.timed_out(written=written, sent=conn.sent,
                                 total=bool(deadline) and monotonic_ns() >= deadline)

    def _rebind(self) -> None:
        """Moves the pool to the running loop when the loop it was bound to is closed (a
        second asyncio.run()), or idle and not running, with nothing in flight: the
        connections stay open, their readers move. Else EventLoopError (nothing sent)."""
        new = asyncio.get_running_loop()
        old = self._loop
        alive = old is not None and not old.is_closed()
        if alive and old is not None and (old.is_running() or self._parked
                                          or len(self._policy.queue) or self._background):
            raise EventLoopError(
                f"this AsyncPool is bound to another event loop ({old!r}), which is still in "
                "use; create one AsyncPool per event loop")
        for conn, fd in self._readers.items():
            if alive and old is not None:
                old.remove_reader(fd)
            new.add_reader(fd, self._on_readable, conn)
        if self._maintenance_timer is not None:
            self._maintenance_timer.cancel()
            self._maintenance_timer = None
        self._maintenance_soon = False
        self._background.clear()
        self._parked.clear()
        self._watch_handle = None  # the old loop's
        self._watch_at = 0
        self._loop = new
        self._want_maintenance()

    # ---- getting a connection ----------------------------------------------------------

    async def _acquire(self, tmo: Timeout, deadline: int, priority: bool) -> Tuple[Any, bool]:
        """(connection, fresh) when none was idle: a new one when the limit allows, else the
        first to come free (in arrival order, priority requests first) within the pool
        timeout."""
        policy = self._policy
        if policy.closed:
            raise PoolClosed("the pool is closed")
        outage = policy.outage()
        if outage is not None:  # fail fast: the refill is probing with back-off
            raise OutageError(outage)
        claim = policy.reserve_for_request(priority)
        if claim is None and (policy.reconcile() or self._reconcile_after_gc()):
            claim = policy.reserve_for_request(priority)  # a slot an interrupt leaked
        if claim is not None:
            if policy.slots.deficit(GENERAL):  # below strength (after an outage, a fork)
                self._want_maintenance()
            return await self._open_for_request(claim, deadline), True
        loop = self._loop
        assert loop is not None
        until = -1 if tmo.pool is None else monotonic_ns() + int(tmo.pool * 1e9)
        if deadline and (until < 0 or deadline < until):
            until = deadline
        waiter = Waiter(priority, loop.create_future())
        policy.queue.add(waiter)
        timer = None
        if until >= 0:
            timer = loop.call_later(max(until - monotonic_ns(), 0) / 1e9, _wake, waiter)
        try:
            await waiter.handle
        except BaseException:
            # Cancelled: pass on whatever was handed over meanwhile.
            conn, claim = policy.queue.cancel(waiter)
            if conn is not None:
                self._release(conn)
            elif claim is not None:
                _wake(policy.unreserved(claim))
            raise
        finally:
            if timer is not None:
                timer.cancel()
        state = waiter.state
        if state == GOT_CONN:
            return waiter.conn, False
        if state == GOT_SLOT:
            return await self._open_for_request(waiter.claim, deadline), True
        if state == FAILED:
            raise waiter.error  # type: ignore[misc]
        policy.queue.cancel(waiter)
        slots = policy.slots
        raise PoolTimeout(f"no connection came free within the pool timeout "
                          f"({slots.total_open} open, limit {slots.limit[GENERAL]})")

    def _reconcile_after_gc(self) -> bool:
        """As Pool._reconcile_after_gc: at most once a second, collect cyclic garbage (a lost
        connection's frames) and give back the slots nothing holds."""
        now = monotonic_ns()
        if not self._interrupted or now - self._last_collect_ns < 1_000_000_000:
            return False
        self._last_collect_ns = now
        self._interrupted = False
        gc.collect()
        return self._policy.reconcile()

    async def _open_for_request(self, claim: Claim, deadline: int) -> Any:
        """Opens a connection in a slot already claimed, in the opener threads."""
        assert self._loop is not None
        fut = self._loop.run_in_executor(self._opener, self._cfg.open, False, deadline,
                                         self._policy.address_for())
        try:
            conn = await asyncio.shield(fut)
        except asyncio.CancelledError:
            # The thread goes on: keep what it opens.
            fut.add_done_callback(lambda f: self._adopt_abandoned(f, claim))
            raise
        except BaseException:
            self._slot_back(claim)
            raise
        policy = self._policy
        if policy.closed:  # closed while it opened: the request is not sent
            policy.unreserved(claim)
            conn.close()
            raise PoolClosed("the pool was closed while the connection was opening")
        policy.opened(conn, claim.lane, monotonic_ns(), claim)
        self._watch(conn)
        return conn

    def _adopt_abandoned(self, fut: asyncio.Future[Any], claim: Claim) -> None:
        """A connection opened for a request that was cancelled meanwhile."""
        if fut.cancelled() or fut.exception() is not None:
            self._slot_back(claim)
            return
        conn = fut.result()
        if self._policy.closed:
            self._policy.unreserved(claim)
            conn.close()
            return
        self._policy.opened(conn, claim.lane, monotonic_ns(), claim)
        self._watch(conn)
        self._release(conn)

    def _slot_back(self, claim: Claim) -> None:
        """A slot claimed for a request was not used: to a waiter, else the refill."""
        waiter = self._policy.unreserved(claim)
        if waiter is None:
            self._want_maintenance()
        _wake(waiter)

    def _on_release(self, conn: Any, exc: Optional[BaseException]) -> None:
        """The lane could not put conn back on its stack (see _release)."""
        self._release(conn)

    def _settle(self) -> None:
        """The lane pushed a connection idle while requests waited or the pool was closed
        (the sync pool's threads race there; on the loop's one thread nothing runs between
        the lane's check and its push, but the rule holds): idle connections go to the
        waiters, or are closed with the pool."""
        policy = self._policy
        for stack in policy.idle:
            for _ in range(len(stack)):  # one that no waiter may use goes back on top
                if not stack or not (policy.closed or len(policy.queue)):
                    break
                self._release(stack.pop())

    def _release(self, conn: Any) -> None:
        """A connection came back and the policy decides: to the oldest waiter, else idle;
        due for rotation; dropped if unusable, retired, or the pool closed."""
        woken, close, maintain = self._policy.released(conn, monotonic_ns())
        if close is not None or not conn.reusable:
            self._forget(conn)
            if close is not None:
                close.close()
        if maintain:
            self._want_maintenance()
        _wake(woken)

    # ---- connections and the loop ------------------------------------------------------

    def _watch(self, conn: Any) -> None:
        """The loop reads the connection's fd for its whole life (see the module docstring)."""
        assert self._loop is not None
        fd = conn.fileno()
        self._loop.add_reader(fd, self._on_readable, conn)
        self._readers[conn] = fd

    def _on_readable(self, conn: Any) -> None:
        park = self._parked.get(conn)
        if park is not None:
            if park.done():
                return
            before = conn.received
            try:
                rc = conn.step()
            except BaseException as exc:  # the request's failure: raised in its task
                error: Optional[BaseException] = exc
            else:
                error = None
            if error is not None:
                # Outside the except block: the task resumes inside this call, and would
                # otherwise see the error as the exception being handled (sys.exc_info()).
                park.fail(error)
                return
            if rc != self._want_read:
                park.wake(rc)  # done, or it wants to write: the request goes on
            elif conn.received != before:
                park.limit(monotonic_ns())  # its read timeout is a silence: it restarts
            return
        idle = self._policy.idle[conn.lane]
        if conn in idle and conn.stale():
            # The server closed (or spoke on) an idle connection: replace it now. (A TLS 1.3
            # session ticket is processed by stale() and does not count.)
            idle.remove(conn)
            self._drop(conn, StaleConnection("closed by the server while idle"))
        # Otherwise a request holds it between steps and reads what arrived itself.

    # ---- the watchdog: one timer for every parked request's timeout ------------------

    def _arm_watchdog(self, at: int) -> None:
        """Fires at `at` (monotonic ns). A timer per wait cost a TimerHandle and a heap push
        and cancel per request; one timer at the earliest limit of all parked requests costs
        nothing while requests finish in time (each new limit is later than the armed one)."""
        loop = self._loop
        assert loop is not None
        if self._watch_handle is not None:
            self._watch_handle.cancel()
        self._watch_at = at
        self._watch_handle = loop.call_later(max(at - monotonic_ns(), 0) / 1e9,
                                             self._expire_parked)

    def _expire_parked(self) -> None:
        """Expires the parked requests whose limit passed; re-arms for the next one."""
        self._watch_handle = None
        self._watch_at = 0
        now = monotonic_ns()
        soonest = 0
        for park in list(self._parked.values()):
            at = park.at
            if not at or park.done():
                continue
            if at <= now:
                park.wake_later(_EXPIRED)
            elif not soonest or at < soonest:
                soonest = at
        if soonest:
            self._arm_watchdog(soonest)

    def _forget(self, conn: Any) -> None:
        """The loop stops reading conn's fd (before it is closed)."""
        fd = self._readers.pop(conn, None)
        if fd is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(fd)

    def _close(self, conn: Any) -> None:
        self._forget(conn)
        conn.close()

    def _drop(self, conn: Any, exc: Optional[BaseException]) -> None:
        """A connection leaves the pool: closed, its slot to a waiter or the refill."""
        self._close(conn)
        waiter = self._policy.dropped(conn, exc)
        if waiter is None:
            self._want_maintenance()
        _wake(waiter)

    # ---- maintenance -------------------------------------------------------------------

    def _want_maintenance(self) -> None:
        """Something may be due: run the schedule soon (once, however many ask)."""
        if self._maintenance_soon or self._policy.closed or self._loop is None:
            return
        self._maintenance_soon = True
        self._loop.call_soon(self._maintain)

    def _maintain(self) -> None:
        """Carries out what the policy says is due and sets a timer for its next wake-up."""
        self._maintenance_soon = False
        if self._maintenance_timer is not None:
            self._maintenance_timer.cancel()
            self._maintenance_timer = None
        policy = self._policy
        if policy.closed or self._loop is None:
            return
        now = monotonic_ns()
        actions, wake = policy.maintenance.due(now)
        for action in actions:
            task = self._loop.create_task(self._carry_out(action))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if wake is not None and not actions:
            self._maintenance_timer = self._loop.call_later(max(wake - now, 0) / 1e9,
                                                            self._maintain)

    async def _carry_out(self, action: Action) -> None:
        if isinstance(action, Ping):
            await self._ping(action.conn)
        elif isinstance(action, Tend):  # not scheduled for this driver (its readers do it)
            stale = action.conn.stale()
            woken, close, _ = self._policy.tended(action.conn, stale)
            if close is not None:
                self._close(close)
            _wake(woken)
        else:
            await self._open_in_background(action)

    async def _open_in_background(self, action: Open) -> None:
        """A refill or a replacement; on failure its slot goes to a waiter (which then tries
        on its own instead of sleeping to its pool timeout) and the schedule backs off."""
        policy = self._policy
        assert self._loop is not None
        try:
            conn = await self._loop.run_in_executor(self._opener, self._cfg.open, False, 0,
                                                    policy.address_for(action.replaces))
        except BaseException as exc:
            _wake(policy.open_failed(action, monotonic_ns(), str(exc)))
            log.info("background open (%s) of %s failed: %s", action.reason, self.url, exc)
            if not isinstance(exc, FastpoolError):
                raise
            self._want_maintenance()
            return
        woken, close, _ = policy.opened_in_background(action, conn, monotonic_ns())
        log.debug("opened %s (%s%s)", self.url, action.reason,
                  ", TLS resumed" if getattr(conn, "resumed", False) else "")
        if close is not conn:
            self._watch(conn)
        if close is not None:
            self._close(close)
        _wake(woken)
        self._want_maintenance()

    async def _ping(self, conn: Connection) -> None:
        """The keep-warm request on a connection taken off its idle stack."""
        ping, tmo = self._cfg.ping, self._timeout
        assert ping is not None
        error: Optional[BaseException] = None
        raw = None
        try:
            deadline = monotonic_ns() + tmo.total_ns if tmo.total_ns else 0
            raw = await self._exchange(conn, ping, tmo, deadline)
        except BaseException as exc:  # noqa: BLE001 - any failure retires the connection
            error = exc
        woken, close, _ = self._policy.ping_done(conn, error)
        if raw is not None:
            self._ping_answered(conn, raw)
        if error is not None:
            log.info("keep-warm request on a connection to %s failed (%s): replaced",
                     self.url, error)
        if close is not None:
            self._close(close)
        _wake(woken)
        self._want_maintenance()
        if error is not None and not isinstance(error, Exception):
            raise error
