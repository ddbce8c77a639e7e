"""ExchangeGate: what the exchange asks of every request, decided once for both drivers.

Before a request: the cooldown after a 429/418 (raise at once, nothing sent), then the rate
limits (go, wait so long, or raise), then the timestamp a signer puts in (the server's
clock, never ahead of it). After a response: the server's usage headers correct the counts,
a 429/418 starts a cooldown and fails the request, and a response carrying the server's time
may calibrate the clock. On a failure that certainly never reached the server the request's
charge is refunded.

Sans-IO: every call takes ``now`` (monotonic ns) and, where an HTTP-date may need it, the wall
clock; the drivers wait (sleep, or await) and call again. Not thread-safe: the sync driver
calls it under its lock, the async driver on its loop.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .._model.errors import InvalidRequestError, RateLimitedError
from .clock import ClockEstimator
from .cooldown import Cooldown
from .ratelimit import RateLimiter

#: Until the clock is calibrated, fixed windows align to the local wall clock, which may be
#: off the exchange's by this much (NTP-synchronised hosts: milliseconds; say 50 ms).
UNCALIBRATED_ERROR_NS = 50_000_000


class ExchangeGate:
    """Cooldown, rate limits and the server clock of one pool."""

    __slots__ = ("limiter", "cooldown", "clock", "on_limit", "statuses", "rate_limited")

    def __init__(self, limiter: Optional[RateLimiter], cooldown: Optional[Cooldown],
                 clock: ClockEstimator, on_limit: str = "wait") -> None:
        if on_limit not in ("wait", "raise"):
            raise ValueError(f"on_limit must be 'wait' or 'raise', got {on_limit!r}")
        self.limiter = limiter
        self.cooldown = cooldown
        self.clock = clock
        self.on_limit = on_limit
        #: statuses that start a cooldown (429, 418, and any the user added)
        self.statuses = frozenset(cooldown.defaults) if cooldown is not None else frozenset()
        self.rate_limited = 0   #: requests refused for a rate limit (any of the three ways)

    @property
    def held_until(self) -> int:
        """Monotonic ns before which no request may go (0: none): the pool-wide cooldown,
        read by the drivers' hot path."""
        c = self.cooldown
        return c._until if c is not None else 0

    # ---- before a request ------------------------------------------------------------

    def admit(self, now: int, weight: int, order: int, priority: bool,
              on_limit: Optional[str], deadline: int) -> int:
        """0: the request may go now (its weight is counted). Else the ns to wait before
        asking again. Raises RateLimitedError (NotSent) in a cooldown, or when the budget
        has no room and the caller said raise or its deadline comes first; and
        InvalidRequestError for a weight no budget could ever admit."""
        cooldown = self.cooldown
        if cooldown is not None:
            left = cooldown.check(now, bool(order))
            if left:
                info = cooldown.info(now)
                self.rate_limited += 1
                raise RateLimitedError(
                    f"the pool is cooling down after a {info.status if info else 429} for "
                    f"another {left / 1e9:.3f} s: not sent",
                    retry_after=left / 1e9, scope="orders" if info and info.orders_only
                    else "pool")
        limiter = self.limiter
        if limiter is None:
            return 0
        try:
            wait = limiter.acquire(now, weight, order, priority)
        except ValueError as exc:
            raise InvalidRequestError(str(exc), code="weight_invalid") from None
        if not wait:
            return 0
        how = on_limit or self.on_limit
        if how == "raise" or (deadline and now + wait > deadline):
            self.rate_limited += 1
            why = ("the request's deadline comes first" if how == "wait"
                   else "on_limit='raise'")
            raise RateLimitedError(
                f"the rate limit has no room for this request for {wait / 1e9:.3f} s "
                f"({why}): not sent", retry_after=wait / 1e9)
        return wait

    def admit_now(self, now: int, weight: int, order: int, priority: bool) -> bool:
        """A hedge's copy (fastpool._policy.hedging.admit_copy): True when it may go at once
        (its weight is counted); False in a cooldown, or when a budget has no room now (or
        could never admit it). Never waits, never counts as rate limited: the copy is
        simply not sent."""
        cooldown = self.cooldown
        if cooldown is not None and cooldown.check(now, bool(order)):
            return False
        limiter = self.limiter
        if limiter is None:
            return True
        try:
            return not limiter.acquire(now, weight, order, priority)
        except ValueError:
            return False

    def refund(self, now: int, weight: int, order: int, granted: int) -> None:
        """A request admitted at `granted` certainly never reached the server."""
        if self.limiter is not None:
            self.limiter.refund(now, weight, order, granted)

    def timestamp_ms(self, now: int) -> int:
        """The timestamp for a signed request: the server's time, never ahead of it."""
        return self.clock.server_time_ms(now)

    # ---- after a response ------------------------------------------------------------

    def observe(self, now: int, status: int, header: Callable[[str], Optional[str]],
                body: Callable[[], bytes], granted: int, order: int, wall_now: float,
                describe: str) -> Optional[RateLimitedError]:
        """A response arrived: the usage headers correct the counts; a cooldown status
        (429/418) starts the cooldown and is returned as the RateLimitedError the caller gets
        (its response attached by the driver)."""
        limiter = self.limiter
        if limiter is not None:
            limiter.observe(now, header, sent_ns=granted)
        if status not in self.statuses or self.cooldown is None:
            return None
        clock = self.clock
        seconds = self.cooldown.on_response(
            now, status, header("retry-after"), wall_now, body=body(), order=bool(order),
            server_now_ms=clock.server_time_ms(now) if clock.calibrated else None)
        if seconds is None:  # pragma: no cover - statuses are the cooldown's own
            return None
        info = self.cooldown.info(now)
        self.rate_limited += 1
        scope = "orders" if info is not None and info.orders_only else "pool"
        return RateLimitedError(
            f"{describe} was answered {status}"
            f"{' (banned)' if status == 418 else ''}: "
            f"{'order requests' if scope == 'orders' else 'the pool'} cooling down for "
            f"{seconds:.3f} s", retry_after=seconds, status_code=status, scope=scope)

    def clock_sample(self, now: int, sent_ns: int, received_ns: int, server_time: float,
                     unit: str = "ms") -> bool:
        """A response carrying the server's time, for a request written at sent_ns and
        answered from received_ns (its first byte). Realigns the fixed windows. False if
        the sample was refused (too slow, inverted)."""
        ok = self.clock.add(sent_ns, received_ns, server_time, unit)
        if ok and self.limiter is not None:
            offset, error = self.clock.offset_for_limiter(now)
            est = self.clock.estimate(now)
            self.limiter.set_clock_offset(offset, error, est.rtt_ns if est else None)
        return ok

    def snapshot(self, now: int) -> dict[str, Any]:
        """The rate limits, the cooldown and the clock, for stats()."""
        limits = [s._asdict() for s in self.limiter.snapshot(now)] if self.limiter else []
        info = self.cooldown.info(now) if self.cooldown is not None else None
        est = self.clock.estimate(now)
        return {
            "rate_limits": limits,
            "rate_limited": self.rate_limited,
            "cooldown": info._asdict() if info is not None else None,
            "clock": est._asdict() if est is not None else None,
        }
