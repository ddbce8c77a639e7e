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

The decisions are the sync pool's (fastpool._policy.legacy); only the waiting differs: futures on
the event loop instead of threads and locks. Everything here runs on the loop's thread, so
the pool state needs no lock. Connections are opened in a small thread pool (the engines
release the GIL while connecting and handshaking), never on the loop.
"""

from __future__ import annotations

import asyncio
import collections
from concurrent.futures import ThreadPoolExecutor
from time import monotonic_ns
from typing import Any, Optional

from .config import PoolConfig
from .._model.errors import (
    FastpoolError,
    PoolClosed,
    PoolTimeout,
    ReadTimeout,
    StaleConnection,
    WriteTimeout,
    WriteTimeoutNotSent,
)
from .._model.headers import HeaderTypes
from .._policy.legacy import Attempts
from .._model.response import RAW_T_COMPLETE, RAW_T_START, Response, ResponseContext, make_response
from .._model.timeout import _UNSET, Timeout
from .._model.url import ParamsTypes

_REFILL_BACKOFF_MIN = 0.05
_REFILL_BACKOFF_MAX = 2.0

# What a parked request wakes up with, besides the engine's step results (STEP_*: >= 0).
_READY = -1      # its fd is writable: step again
_EXPIRED = -2    # its phase's timeout ran out


def _wake(fut: asyncio.Future, why: int) -> None:
    if not fut.done():
        fut.set_result(why)


class AsyncPool:
    """A pool of pre-opened keep-alive connections for asyncio (see fastpool.Pool).

    ``async with AsyncPool(url, connections=4) as pool`` opens the connections before the
    body runs (``await pool.open()`` does the same without a context manager). Requests
    beyond the connections available wait in arrival order, up to the pool timeout. The
    parameters are Pool's.
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
        self._timeout = cfg.timeout
        self._retries = cfg.retries
        self._step_done = cfg.engine.STEP_DONE
        self._want_read = cfg.engine.STEP_WANT_READ
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._opener: Optional[ThreadPoolExecutor] = None
        self._opened = False
        self._waiters: collections.deque = collections.deque()   # futures, arrival order
        self._parked: dict = {}                                  # conn -> its wait future
        self._readers: dict = {}                                 # conn -> its registered fd
        self._refill_task: Optional[asyncio.Task] = None

    # ---- lifecycle -------------------------------------------------------------------------

    async def open(self) -> "AsyncPool":
        """Opens the initial connections in parallel; raises the first failure (closing the
        others). Idempotent."""
        if self._opened:
            return self
        if self._state.closed:
            raise PoolClosed("the pool is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._opener = ThreadPoolExecutor(max_workers=min(self._state.limit, 8),
                                          thread_name_prefix="fastpool-open")
        state = self._state
        n = state.target
        for _ in range(n):
            state.reserve()
        results = await asyncio.gather(
            *(loop.run_in_executor(self._opener, self._cfg.open, False) for _ in range(n)),
            return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            for r in results:
                if not isinstance(r, BaseException):
                    r.close()
            state.dropped(n)
            self._opener.shutdown(wait=False)
            raise errors[0]
        for conn in results:
            self._adopt_open(conn)
            state.idle.append(conn)
        state.initial_done = True
        self._opened = True
        return self

    async def aclose(self) -> None:
        """Closes idle connections now and in-flight ones when their requests finish (as
        Pool.close: a request already sent keeps its response — an order placed is not
        lost track of; cancel its task to abandon it); requests waiting for a connection,
        or still opening one, fail with PoolClosed."""
        state = self._state
        if state.closed:
            return
        state.closed = True
        for conn in state.drain():
            state.dropped()
            self._close(conn)
        while self._waiters:
            _wake_waiter(self._waiters.popleft(), PoolClosed("the pool is closed"))
        if self._refill_task is not None:
            self._refill_task.cancel()
            try:
                await self._refill_task
            except (asyncio.CancelledError, Exception):
                pass
        if self._opener is not None:
            self._opener.shutdown(wait=False)

    async def __aenter__(self) -> "AsyncPool":
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._state.closed

    @property
    def engine(self) -> str:
        return "c" if self._cfg.engine.__name__.endswith("_core") else "python"

    @property
    def url(self) -> str:
        return f"{self._origin.scheme}://{self._origin.netloc}{self._origin.base_path}"

    def stats(self) -> dict:
        return self._state.stats.snapshot(self._state.open, len(self._state.idle))

    def __repr__(self) -> str:
        s = self._state
        return (f"<AsyncPool {self.url} engine={self.engine} open={s.open} idle={len(s.idle)}"
                f"{' closed' if s.closed else ''}>")

    # ---- requests --------------------------------------------------------------------------

    async def request(self, method: str, url: str, *, params: ParamsTypes = None,
                      headers: HeaderTypes = None, content: Any = None, json: Any = None,
                      timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        """As Pool.request."""
        return await self._send(method, url, params, headers, content, json, timeout, retries)

    async def get(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                  timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        return await self._send("GET", url, params, headers, None, None, timeout, retries)

    async def head(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                   timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        return await self._send("HEAD", url, params, headers, None, None, timeout, retries)

    async def options(self, url: str, *, params: ParamsTypes = None,
                      headers: HeaderTypes = None, timeout: Any = _UNSET,
                      retries: Optional[int] = None) -> Response:
        return await self._send("OPTIONS", url, params, headers, None, None, timeout, retries)

    async def delete(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                     timeout: Any = _UNSET, retries: Optional[int] = None) -> Response:
        return await self._send("DELETE", url, params, headers, None, None, timeout, retries)

    async def post(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                   content: Any = None, json: Any = None, timeout: Any = _UNSET,
                   retries: Optional[int] = None) -> Response:
        return await self._send("POST", url, params, headers, content, json, timeout, retries)

    async def put(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                  content: Any = None, json: Any = None, timeout: Any = _UNSET,
                  retries: Optional[int] = None) -> Response:
        return await self._send("PUT", url, params, headers, content, json, timeout, retries)

    async def patch(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                    content: Any = None, json: Any = None, timeout: Any = _UNSET,
                    retries: Optional[int] = None) -> Response:
        return await self._send("PATCH", url, params, headers, content, json, timeout, retries)

    async def _send(self, method, url, params, headers, content, json, timeout,
                    retries) -> Response:
        start = monotonic_ns()
        data, method, target, head = self._prepare(method, url, params, headers, content, json)
        tmo = self._timeout if timeout is _UNSET else Timeout.of(timeout)
        deadline = start + tmo.total_ns if tmo.total_ns else 0
        state = self._state
        if not self._opened:
            await self.open()
        attempts = None  # created at the first failure
        while True:
            conn = state.take_idle() if not state.closed else None
            fresh = False
            if conn is None:
                try:
                    conn, fresh = await self._acquire_slow(tmo, deadline)
                except FastpoolError as exc:  # PoolTimeout, PoolClosed, ConnectError, ...
                    attempts = attempts or Attempts(method, self._retries if retries is None
                                                    else retries, deadline)
                    raise attempts.give_up(exc, state.stats)
            try:
                if not fresh and conn.stale_after(self._cfg.stale_after_ns):
                    raise StaleConnection("the server closed the idle connection")
                conn.begin(data, head)
                rc = conn.step()
                while rc != self._step_done:
                    rc = await self._park(conn, rc, tmo, deadline)
                raw = conn.take()
            except BaseException as exc:
                self._drop(conn, exc)
                attempts = attempts or Attempts(method, self._retries if retries is None
                                                else retries, deadline)
                error = attempts.after(exc, fresh=fresh, stats=state.stats, closed=state.closed,
                                       now=monotonic_ns())
                if error is not None:
                    raise error
                continue
            state.stats.latency.record(raw[RAW_T_COMPLETE] - raw[RAW_T_START])
            self._release(conn)
            return make_response(raw, (self._response_ctx, method, target, start))

    async def _park(self, conn, want: int, tmo: Timeout, deadline: int) -> int:
        """Waits until the exchange on conn moves on, and returns the engine's step result;
        or raises the phase's timeout. Reads happen in the connection's reader
        (_on_readable), which wakes us only when the exchange progressed: asyncio runs a
        ready task before the reader callbacks of the same loop iteration, so a readability
        event can describe bytes the task has already read, and waking on it would cost a
        loop iteration and a read that finds nothing."""
        loop = self._loop
        writing = want != self._want_read  # reads wake through the connection's reader
        written = conn.written
        limit_ns = tmo.read_ns if written else tmo.write_ns
        if deadline:
            left = deadline - monotonic_ns()
            if limit_ns < 0 or left < limit_ns:
                limit_ns = max(left, 0)
        fut = loop.create_future()
        fd = self._readers[conn]
        if writing:
            # The reader rests while the write is blocked: it is level-triggered, and bytes
            # the write phase does not read (a TLS 1.3 session ticket, an early response)
            # would make it fire on every loop iteration until the write timeout.
            loop.remove_reader(fd)
            loop.add_writer(fd, _wake, fut, _READY)
        timer = loop.call_later(limit_ns / 1e9, _wake, fut, _EXPIRED) if limit_ns >= 0 else None
        self._parked[conn] = fut
        try:
            why = await fut
        finally:
            del self._parked[conn]
            if writing:
                loop.remove_writer(fd)
                loop.add_reader(fd, self._on_readable, conn)
            if timer is not None:
                timer.cancel()
        if why >= 0:
            return why  # the reader stepped the exchange
        if why == _READY:
            return conn.step()
        sent = conn.sent
        total = deadline and monotonic_ns() >= deadline
        what = "total deadline ran out" if total else "timed out"
        if written:
            raise ReadTimeout(f"{what} waiting for the response")
        if sent:
            raise WriteTimeout(f"{what} sending the request")
        raise WriteTimeoutNotSent(f"{what} sending the request")

    # ---- connections -----------------------------------------------------------------------

    async def _acquire_slow(self, tmo: Timeout, deadline: int):
        """(connection, fresh) when none was idle: a new one when the limit allows, else the
        first to come free (in arrival order) within the pool timeout."""
        state = self._state
        if state.closed:
            raise PoolClosed("the pool is closed")
        if state.reserve():
            return await self._open_reserved(deadline), True
        until = None if tmo.pool is None else monotonic_ns() + int(tmo.pool * 1e9)
        if deadline and (until is None or deadline < until):
            until = deadline
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        timer = None
        if until is not None:
            timer = self._loop.call_later(max(until - monotonic_ns(), 0) / 1e9, _wake_waiter,
                                          waiter, PoolTimeout(
                                              f"no connection came free within the pool "
                                              f"timeout ({state.open} open, limit {state.limit})"))
        try:
            got = await waiter
        except BaseException:
            # Cancelled or timed out: if a connection was handed over meanwhile, pass it on.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._release(waiter.result())
            raise
        finally:
            if timer is not None:
                timer.cancel()
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
        if got is None:  # a slot was freed for us: open a connection in it
            return await self._open_reserved(deadline), True
        return got, False

    async def _open_reserved(self, deadline: int):
        """Opens a connection in a slot already reserved, in the opener threads."""
        fut = self._loop.run_in_executor(self._opener, self._cfg.open, False, deadline)
        try:
            conn = await asyncio.shield(fut)
        except asyncio.CancelledError:
            fut.add_done_callback(self._adopt)  # the thread goes on: keep what it opens
            raise
        except BaseException:
            self._state.unreserve()
            self._hand_slot()
            raise
        if self._state.closed:  # closed while it opened: the request is not sent
            self._state.unreserve()
            conn.close()
            raise PoolClosed("the pool was closed while the connection was opening")
        self._adopt_open(conn)
        return conn

    def _adopt(self, fut: asyncio.Future) -> None:
        """A connection opened for a request that was cancelled meanwhile."""
        if fut.cancelled() or fut.exception() is not None:
            self._state.unreserve()
            self._hand_slot()
            return
        conn = fut.result()
        self._adopt_open(conn)
        self._release(conn)

    def _release(self, conn) -> None:
        """A connection came back: to the first waiter, else idle; dropped if unusable."""
        state = self._state
        if not conn.reusable or state.closed:
            self._drop(conn, None)
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        state.put_idle(conn)

    def _adopt_open(self, conn) -> None:
        """A connection just opened joins the pool: counted, and its fd read by the loop."""
        self._state.opened(conn)
        fd = conn.fileno()
        self._loop.add_reader(fd, self._on_readable, conn)
        self._readers[conn] = fd

    def _on_readable(self, conn) -> None:
        fut = self._parked.get(conn)
        if fut is not None:
            if fut.done():
                return
            before = conn.received
            try:
                rc = conn.step()
            except BaseException as exc:  # the request's failure: raised in its task
                fut.set_exception(exc)
                return
            # Wake the request when the exchange is done, wants to write, or got bytes (its
            # read timeout is a silence between bytes, so it must restart its wait).
            if rc != self._want_read or conn.received != before:
                fut.set_result(rc)
            return
        state = self._state
        if conn in state.idle and conn.stale():
            # The server closed (or spoke on) an idle connection: replace it now. (A TLS 1.3
            # session ticket is processed by stale() and does not count.)
            state.idle.remove(conn)
            self._drop(conn, StaleConnection("closed by the server while idle"))
        # Otherwise a request holds it between steps and reads what arrived itself.

    def _close(self, conn) -> None:
        fd = self._readers.pop(conn, None)
        if fd is not None:
            self._loop.remove_reader(fd)
        conn.close()

    def _drop(self, conn, exc: Optional[BaseException]) -> None:
        self._close(conn)
        state = self._state
        state.dropped()
        if isinstance(exc, StaleConnection):
            state.stats.stale += 1
        self._hand_slot() or self._want_refill()

    def _hand_slot(self) -> bool:
        """A slot came free: a waiting request may open a connection in it."""
        state = self._state
        while self._waiters and not state.closed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                if state.reserve():
                    waiter.set_result(None)
                    return True
                self._waiters.appendleft(waiter)
                return False
        return False

    # ---- keeping `connections` warm in the background -------------------------------------

    def _want_refill(self) -> None:
        if self._state.deficit() > 0 and (self._refill_task is None or self._refill_task.done()):
            self._refill_task = self._loop.create_task(self._refill())

    async def _refill(self) -> None:
        """Reopens dropped connections in the opener threads; failures back off (bounded)."""
        state = self._state
        backoff = _REFILL_BACKOFF_MIN
        while state.deficit() > 0 and state.reserve():
            try:
                conn = await self._loop.run_in_executor(self._opener, self._cfg.open, False)
            except FastpoolError:
                state.unreserve()
                # A request waiting for the slot this attempt held tries on its own now
                # (and fails typed, or succeeds) instead of sleeping to its pool timeout.
                self._hand_slot()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _REFILL_BACKOFF_MAX)
                continue
            except BaseException:
                state.unreserve()
                raise
            backoff = _REFILL_BACKOFF_MIN
            if state.closed:
                state.unreserve()
                conn.close()
                return
            self._adopt_open(conn)
            self._release(conn)


def _wake_waiter(waiter: asyncio.Future, error: BaseException) -> None:
    if not waiter.done():
        waiter.set_exception(error)
