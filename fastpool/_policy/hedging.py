"""Hedged requests, sans-IO: which requests may be hedged, when the second copy goes out,
the budget that bounds how many do, and which answer the caller gets. The drivers only
start the copy when told and report the answers (see fastpool._model.hedge.Hedge).
"""

from __future__ import annotations

from typing import Any, Optional

from .._model.errors import FastpoolError, InvalidRequestError, MaybeSentError
from .._model.hedge import Hedge

#: Hedged without asking: a second copy changes nothing on the server (RFC 9110 §9.2.1).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def hedge_for(method: str, pool_hedge: Optional[Hedge], request_hedge: Any) -> Optional[Hedge]:
    """The Hedge that applies to one request, or None. ``request_hedge``: the request's own
    (a Hedge; False: not this one; None: the pool's). A request's own Hedge on a method that
    is not safe needs ``deduplicated=True`` (else InvalidRequestError, before anything is
    sent); the pool's hedges safe methods only."""
    if request_hedge is None:
        return pool_hedge if pool_hedge is not None and method in SAFE_METHODS else None
    if request_hedge is False:
        return None
    if not isinstance(request_hedge, Hedge):
        raise InvalidRequestError(
            f"hedge must be a fastpool.Hedge, False or None, got {request_hedge!r}")
    if method not in SAFE_METHODS and not request_hedge.deduplicated:
        raise InvalidRequestError(
            f"a {method} is not hedged: a second copy could be carried out twice; "
            f"Hedge(deduplicated=True) says the exchange refuses duplicates of this one")
    return request_hedge


def check_pool_hedge(hedge: Any) -> Optional[Hedge]:
    """A pool's ``hedge=``: None or a Hedge that is not deduplicated (that is per request:
    only the caller knows which requests carry an id the exchange deduplicates)."""
    if hedge is None:
        return None
    if not isinstance(hedge, Hedge):
        raise TypeError(f"hedge must be a fastpool.Hedge or None, got {hedge!r}")
    if hedge.deduplicated:
        raise ValueError("a pool's hedge hedges safe requests only: deduplicated=True is "
                         "given per request (pool.post(..., hedge=Hedge(..., "
                         "deduplicated=True)))")
    return hedge


def delay_ns(hedge: Hedge, endpoint: Any, pool: Any) -> int:
    """How long (ns) after its exchange began a request unanswered gets its copy (the
    histograms measure the same span: begun -> complete); 0: no copy for this request (a
    quantile with too few samples yet). ``endpoint``, ``pool``: latency histograms (the
    endpoint's own, preferred once it holds enough samples)."""
    if hedge.after_ns:
        return hedge.after_ns
    q = hedge.quantile
    assert q is not None
    for hist in (endpoint, pool):
        if hist is not None and hist.count >= hedge.min_samples:
            return max(int(hist.quantile(q)), 1)
    return 0


class Budget:
    """How many hedges a pool may still send: a token bucket that each hedgeable request
    fills by the Hedge's ``budget`` (up to its ``burst``) and each hedge empties by one.
    Counted in millionths of a hedge (integers: ten requests at 0.1 earn exactly one)."""

    __slots__ = ("micros",)

    def __init__(self) -> None:
        self.micros = 0  # a pool earns its first hedges: none in its first requests

    def earn(self, hedge: Hedge) -> None:
        self.micros = min(self.micros + round(hedge.budget * 1e6), round(hedge.burst * 1e6))

    def spend(self) -> bool:
        if self.micros >= 1_000_000:
            self.micros -= 1_000_000
            return True
        return False

    def refund(self) -> None:
        """A hedge spent and then not sent (the rate limits had no room): given back."""
        self.micros += 1_000_000


def admit_copy(budget: Budget, gate: Any, now: int, weight: int, order: int,
               priority: bool) -> int:
    """Whether the copy of a request, due now, may go (the driver holds an idle connection
    for it): the budget must have a hedge, and the exchange gate room at once for the
    copy's weight (ExchangeGate.admit_now: a hedge never waits for a rate limit, never
    pushes the pool past one, and never goes in a cooldown). Returns when the gate granted
    it (> 0, for a refund if it never leaves), or 0: no copy."""
    if not budget.spend():
        return 0
    if not gate.admit_now(now, weight, order, priority):
        budget.refund()
        return 0
    return now or 1


def outcome_error(first: BaseException, second: BaseException) -> BaseException:
    """The error a hedged request raises when both of its copies failed: a MaybeSent one
    if either copy may have reached the server (the caller must learn the worst case),
    else the primary's (``first``); an exception from outside the model (an interrupt)
    goes before both."""
    for exc in (first, second):
        if not isinstance(exc, FastpoolError):
            return exc
    for exc in (first, second):
        if isinstance(exc, MaybeSentError):
            return exc
    return first


def settles(status: int, hedge: Hedge) -> bool:
    """Whether an answer ends the race: any answer to a safe request; a 2xx to a
    deduplicated one (the other copy's refusal as a duplicate is not the outcome)."""
    return not hedge.deduplicated or 200 <= status < 300
