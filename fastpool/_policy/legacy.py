"""Decisions shared by Pool and AsyncPool, with no I/O, no locks and no event loop.

The sync driver calls PoolState under its lock; the async driver calls it from the event
loop thread. Both ask `should_retry` after a failure, so order safety is decided once:
nothing that may have reached the server is sent again unless the method is idempotent and
the caller allowed retries.
"""

from __future__ import annotations

from typing import Any, Optional

from .._model.errors import FastpoolError, MaybeSentError, NotSentError, TimeoutException

#: RFC 9110 §9.2.2. POST and PATCH are never re-sent by the pool.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def should_retry(exc: BaseException, *, fresh: bool, attempt: int, method: str,
                 retries: int) -> bool:
    """Whether a failed attempt may be sent again, on another connection.

    - NotSent on a connection that had been idle in the pool: the server closed or reset it
      while idle, and no byte of the request left. Sending again is always safe. (On a
      connection opened for this very request the failure is real: surface it.)
    - MaybeSent: only for idempotent methods, only `retries` times, only if allowed.
    """
    if isinstance(exc, NotSentError):
        return not fresh
    if isinstance(exc, MaybeSentError):
        return method in IDEMPOTENT_METHODS and attempt < retries
    return False


class Attempts:
    """The failed attempts of one request and the policy's verdict after each (both pools
    create one at the first failure; the hot path never does).

    Once an attempt may have reached the server, the request as a whole may have: whatever
    ends it later (a retry that fails before sending, a pool timeout, a closed pool) surfaces
    as that MaybeSent error, with the last failure as its __cause__.
    """

    __slots__ = ("method", "allowed", "deadline", "retried", "maybe_sent")

    def __init__(self, method: str, allowed: int, deadline: int) -> None:
        self.method = method
        self.allowed = allowed        # MaybeSent retries the caller allows
        self.deadline = deadline      # ns, 0 = none
        self.retried = 0              # MaybeSent retries used
        self.maybe_sent: Optional[MaybeSentError] = None

    def after(self, exc: BaseException, *, fresh: bool, stats: Stats, closed: bool,
              now: int) -> Optional[BaseException]:
        """After a failed attempt (its connection already dropped): None to send again, else
        the exception the caller must get. Counts retries and errors in stats."""
        if not isinstance(exc, FastpoolError):
            return exc  # interrupted or cancelled mid-exchange: nothing is retried
        if isinstance(exc, MaybeSentError) and self.maybe_sent is None:
            self.maybe_sent = exc
        if (should_retry(exc, fresh=fresh, attempt=self.retried, method=self.method,
                         retries=self.allowed)
                and not closed and not (self.deadline and now >= self.deadline)):
            stats.retries += 1
            if isinstance(exc, MaybeSentError):
                self.retried += 1
            return None
        return self.give_up(exc, stats)

    def give_up(self, exc: BaseException, stats: Stats) -> BaseException:
        """The exception that ends the request (counted once in stats)."""
        stats.failed(exc)
        if self.maybe_sent is not None and self.maybe_sent is not exc and not isinstance(
                exc, MaybeSentError):
            self.maybe_sent.__cause__ = exc
            return self.maybe_sent
        return exc


class Stats:
    """Counters of a pool, plus a latency histogram of successful requests."""

    __slots__ = ("errors", "retries", "connects", "reconnects", "resumed", "stale", "timeouts",
                 "latency")

    def __init__(self, histogram: Any) -> None:
        # requests answered with a response = latency.count (one record per response)
        self.errors = 0        # requests that raised
        self.retries = 0       # attempts sent again (NotSent, or allowed idempotent retries)
        self.connects = 0      # connections opened (TCP, and TLS handshakes when https)
        self.reconnects = 0    # connections opened after the initial ones
        self.resumed = 0       # TLS handshakes that resumed a session
        self.stale = 0         # idle connections found closed and replaced before a request
        self.timeouts = 0      # requests that raised a timeout
        self.latency = histogram

    def failed(self, exc: BaseException) -> None:
        self.errors += 1
        if isinstance(exc, TimeoutException):
            self.timeouts += 1

    def snapshot(self, open_: int, idle: int) -> dict:
        h = self.latency
        return {
            "requests": h.count, "errors": self.errors, "retries": self.retries,
            "timeouts": self.timeouts, "connects": self.connects,
            "reconnects": self.reconnects, "resumed": self.resumed, "stale": self.stale,
            "open": open_, "idle": idle,
            "latency_ns": {
                "count": h.count, "min": h.min, "mean": round(h.mean),
                "p50": h.quantile(0.5), "p90": h.quantile(0.9), "p99": h.quantile(0.99),
                "p999": h.quantile(0.999), "max": h.max,
            },
        }


class PoolState:
    """The pool's connections and limits.

    Thread safety (sync pool): take_idle and put_idle are safe without the driver's lock,
    because list.pop() and list.append() are atomic (CPython's GIL, and per-list locks in
    free-threaded builds) — they are the only operations of the hot path. Everything else
    runs under the driver's lock. A driver must re-check `closed` after put_idle (close()
    may have drained the stack meanwhile) and register a waiter before checking for an
    idle connection (so a put_idle that follows always sees it).

    `idle` is a stack: the most recently used connection is reused first, because its
    socket, TLS state and the server's worker for it are the warmest (and the coldest ones
    at the bottom are the ones a server's idle timeout will reap, which is fine to lose).
    `open` counts connections open or being opened, so concurrent openers never exceed
    `limit`.
    """

    __slots__ = ("target", "limit", "idle", "open", "closed", "initial_done", "stats")

    def __init__(self, connections: int, max_connections: Optional[int], histogram: Any) -> None:
        if not isinstance(connections, int) or connections < 1:
            raise ValueError(f"connections must be a positive int, got {connections!r}")
        limit = connections if max_connections is None else max_connections
        if not isinstance(limit, int) or limit < connections:
            raise ValueError(f"max_connections must be an int >= connections ({connections}), got {max_connections!r}")
        self.target = connections
        self.limit = limit
        self.idle: list = []
        self.open = 0
        self.closed = False
        self.initial_done = False
        self.stats = Stats(histogram)

    def take_idle(self):
        """The hottest idle connection, or None. Atomic; the caller checks `closed`."""
        try:
            return self.idle.pop()
        except IndexError:
            return None

    def put_idle(self, conn) -> bool:
        """Makes a connection idle again when it may carry another request. Atomic.
        False: the caller must drop it (not reusable) with `dropped` under its lock."""
        if conn.reusable:
            self.idle.append(conn)
            return True
        return False

    def drain(self) -> list:
        """Every idle connection, removed (close, and after put_idle saw `closed`)."""
        out = []
        while True:
            conn = self.take_idle()
            if conn is None:
                return out
            out.append(conn)

    def reserve(self) -> bool:
        """Claims a slot for a new connection, when the limit allows one."""
        if self.open < self.limit:
            self.open += 1
            return True
        return False

    def unreserve(self) -> None:
        """A claimed slot was not used: the open failed."""
        self.open -= 1

    def opened(self, conn) -> None:
        """A reserved slot now holds an open connection."""
        stats = self.stats
        stats.connects += 1
        if self.initial_done:
            stats.reconnects += 1
        if getattr(conn, "resumed", False):
            stats.resumed += 1

    def dropped(self, count: int = 1) -> None:
        """Connections were closed (failed, not reusable, or the pool closed)."""
        self.open -= count

    def deficit(self) -> int:
        """How many connections to open in the background to get back to `target`."""
        return 0 if self.closed else max(0, self.target - self.open)
