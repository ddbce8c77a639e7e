"""Stats: a pool's counters and latency histogram, and the typed snapshot `stats()` returns."""

from __future__ import annotations

from typing import Any, Optional, TypedDict

from .._model.errors import TimeoutException


class LatencyStats(TypedDict):
    """Latency of answered requests, in nanoseconds (connection in hand to response
    complete), from a histogram with ~1.6 % precision."""

    count: int
    min: int
    mean: int
    p50: int
    p90: int
    p99: int
    p999: int
    max: int


class EndpointStats(LatencyStats):
    """One endpoint's latency (``stats(by_endpoint=True)["endpoints"]["GET /api/v3/order"]``);
    ``jitter`` is p99 - p50: how far the slow tail sits from the typical request."""

    jitter: int


class RateLimitState(TypedDict):
    """One budget (fastpool.RateLimit) as the pool counts it now."""

    name: str
    limit: int
    per: float
    window: str
    orders: bool
    used: int
    remaining: int
    resets_in: float


class _PoolStats(TypedDict):
    """What ``pool.stats()`` returns (a dict: ``stats["requests"]``)."""

    requests: int       #: requests answered with a response
    errors: int         #: requests that raised
    retries: int        #: attempts sent again (NotSent, or allowed idempotent retries)
    timeouts: int       #: requests that raised a timeout
    connects: int       #: connections opened (TCP, and the TLS handshake for https)
    reconnects: int     #: connections opened to replace ones that were lost
    resumed: int        #: TLS handshakes that resumed a session
    stale: int          #: idle connections found closed and replaced before a request
    pings: int          #: keep-warm requests sent
    ping_failures: int  #: keep-warm requests that failed (the connection was replaced)
    rotations: int      #: connections replaced make-before-break (lifetime, budget, rotate())
    hedges: int         #: hedged requests' copies sent (fastpool.Hedge)
    hedge_wins: int     #: requests the copy answered first (its answer returned)
    open: int           #: connections open (or opening) now
    idle: int           #: connections idle now
    waiting: int        #: requests waiting for a connection now
    latency_ns: LatencyStats
    rate_limits: list[RateLimitState]   #: the pool's budgets (empty without rate_limits=)
    rate_limited: int   #: requests refused for a rate limit (budget, cooldown, 429/418)
    cooldown: Optional[dict[str, Any]]  #: the cooldown in force: remaining s, status, scope
    clock: Optional[dict[str, Any]]     #: the server clock estimate (after calibrate())


class PoolStats(_PoolStats, total=False):
    """What ``pool.stats()`` returns; ``endpoints`` only with ``by_endpoint=True``."""

    endpoints: dict[str, EndpointStats]  #: with stats(by_endpoint=True): per "METHOD path"


class Stats:
    """Counters of a pool, plus a latency histogram of successful requests (an engine
    Histogram: the C engine records into it from its hot path without Python)."""

    __slots__ = ("errors", "retries", "connects", "reconnects", "resumed", "stale", "timeouts",
                 "pings", "ping_failures", "rotations", "hedges", "hedge_wins", "latency")

    def __init__(self, histogram: Any) -> None:
        # requests answered with a response = latency.count (one record per response)
        self.errors = 0
        self.retries = 0
        self.connects = 0
        self.reconnects = 0
        self.resumed = 0
        self.stale = 0
        self.timeouts = 0
        self.pings = 0
        self.ping_failures = 0
        self.rotations = 0
        self.hedges = 0
        self.hedge_wins = 0
        self.latency = histogram

    def failed(self, exc: BaseException) -> None:
        """A request raised exc (counted once per request)."""
        self.errors += 1
        if isinstance(exc, TimeoutException):
            self.timeouts += 1

    def opened(self, *, reconnect: bool, resumed: bool) -> None:
        self.connects += 1
        if reconnect:
            self.reconnects += 1
        if resumed:
            self.resumed += 1

    def reset(self) -> None:
        """Every counter back to zero (the histogram too)."""
        self.errors = self.retries = self.connects = self.reconnects = self.resumed = 0
        self.stale = self.timeouts = self.pings = self.ping_failures = self.rotations = 0
        self.hedges = self.hedge_wins = 0
        self.latency.reset()

    def snapshot(self, open_: int, idle: int, waiting: int) -> _PoolStats:
        h = self.latency
        return {
            "requests": h.count, "errors": self.errors, "retries": self.retries,
            "timeouts": self.timeouts, "connects": self.connects,
            "reconnects": self.reconnects, "resumed": self.resumed, "stale": self.stale,
            "pings": self.pings, "ping_failures": self.ping_failures,
            "rotations": self.rotations, "hedges": self.hedges, "hedge_wins": self.hedge_wins,
            "open": open_, "idle": idle, "waiting": waiting,
            "latency_ns": latency(h),
            "rate_limits": [], "rate_limited": 0, "cooldown": None, "clock": None,
        }


def latency(h: Any) -> LatencyStats:
    """The percentiles of a latency histogram (ns)."""
    return {"count": h.count, "min": h.min, "mean": round(h.mean), "p50": h.quantile(0.5),
            "p90": h.quantile(0.9), "p99": h.quantile(0.99), "p999": h.quantile(0.999),
            "max": h.max}


def endpoint(h: Any) -> EndpointStats:
    base = latency(h)
    return {**base, "jitter": base["p99"] - base["p50"]}
