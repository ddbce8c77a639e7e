"""Hedged requests' decisions, sans-IO: which requests, when, how many, which answer."""

from __future__ import annotations

import pytest

import fastpool
from fastpool._policy.clock import ClockEstimator
from fastpool._policy.cooldown import Cooldown
from fastpool._policy.exchange import ExchangeGate
from fastpool._policy.hedging import (
    Budget,
    admit_copy,
    check_pool_hedge,
    delay_ns,
    hedge_for,
    outcome_error,
    settles,
)
from fastpool._policy.ratelimit import RateLimiter


class _Hist:
    def __init__(self, count: int, value: int) -> None:
        self.count, self.value, self.asked = count, value, []

    def quantile(self, q: float) -> int:
        self.asked.append(q)
        return self.value


@pytest.mark.parametrize("after", [0, -1, float("nan"), float("inf"), True, "p49", "p100",
                                   "95", "p95.5555", "fast", None])
def test_hedge_after_is_validated(after):
    with pytest.raises(ValueError, match="after"):
        fastpool.Hedge(after=after)


@pytest.mark.parametrize("kw", [dict(budget=-0.1), dict(budget=1.5), dict(burst=0.5),
                                dict(min_samples=0), dict(budget=float("nan"))])
def test_hedge_budget_is_validated(kw):
    with pytest.raises(ValueError):
        fastpool.Hedge(**kw)


def test_hedge_delay_is_fixed_or_a_quantile_of_the_endpoint_then_the_pool():
    assert fastpool.Hedge(after=0.002).after_ns == 2_000_000
    assert fastpool.Hedge(after="p99.9").quantile == pytest.approx(0.999)
    fixed = fastpool.Hedge(after=0.002)
    assert delay_ns(fixed, None, None) == 2_000_000
    p95 = fastpool.Hedge(after="p95", min_samples=20)
    endpoint, pool = _Hist(25, 700_000), _Hist(1000, 300_000)
    assert delay_ns(p95, endpoint, pool) == 700_000 and endpoint.asked == [0.95]
    assert delay_ns(p95, _Hist(19, 700_000), pool) == 300_000  # the endpoint is too new
    assert delay_ns(p95, _Hist(0, 0), _Hist(5, 1)) == 0        # nothing to go by: no hedge


def test_which_requests_are_hedged():
    pool_hedge = fastpool.Hedge(after=0.001)
    assert hedge_for("GET", pool_hedge, None) is pool_hedge
    assert hedge_for("POST", pool_hedge, None) is None        # the pool's: safe ones only
    assert hedge_for("GET", pool_hedge, False) is None        # this one: not
    own = fastpool.Hedge(after=0.003)
    assert hedge_for("HEAD", None, own) is own
    with pytest.raises(fastpool.InvalidRequestError, match="deduplicated"):
        hedge_for("POST", None, own)
    with pytest.raises(fastpool.InvalidRequestError, match="deduplicated"):
        hedge_for("DELETE", None, own)                        # a second cancel misleads
    dedup = fastpool.Hedge(after=0.003, deduplicated=True)
    assert hedge_for("POST", None, dedup) is dedup
    with pytest.raises(fastpool.InvalidRequestError):
        hedge_for("GET", None, 0.002)
    # The error is NotSent: nothing went out.
    assert issubclass(fastpool.InvalidRequestError, fastpool.NotSentError)


def test_a_pools_hedge_is_never_deduplicated():
    assert check_pool_hedge(None) is None
    with pytest.raises(ValueError, match="per request"):
        check_pool_hedge(fastpool.Hedge(deduplicated=True))
    with pytest.raises(TypeError):
        check_pool_hedge(0.002)


def test_the_budget_bounds_hedges_to_a_fraction_of_requests():
    hedge = fastpool.Hedge(after=0.001, budget=0.1, burst=3)
    budget = Budget()
    assert not budget.spend()  # a new pool earns its hedges
    sent = 0
    for _ in range(1000):
        budget.earn(hedge)
        sent += budget.spend()
    assert sent == 100
    for _ in range(1000):  # idle of hedges: the saving stops at the burst
        budget.earn(hedge)
    assert [budget.spend() for _ in range(4)] == [True, True, True, False]


def test_which_answer_settles_the_race():
    safe = fastpool.Hedge(after=0.001)
    dedup = fastpool.Hedge(after=0.001, deduplicated=True)
    assert settles(200, safe) and settles(503, safe)
    assert settles(201, dedup) and not settles(400, dedup) and not settles(409, dedup)


def _gate(limit=None, per=60.0):
    limiter = RateLimiter([fastpool.RateLimit(limit, per=per)]) if limit else None
    return ExchangeGate(limiter, Cooldown(), ClockEstimator())


def test_a_copy_needs_the_budget_and_room_at_once_in_the_rate_limits():
    hedge = fastpool.Hedge(after=0.001, budget=1.0, burst=2)
    budget = Budget()
    gate = _gate(limit=5)
    now = 1_000_000_000
    assert admit_copy(budget, gate, now, 1, 0, False) == 0  # nothing earned yet
    budget.earn(hedge)
    budget.earn(hedge)
    assert admit_copy(budget, gate, now, 3, 0, False) == now  # counted: 3 of 5
    assert admit_copy(budget, gate, now, 3, 0, False) == 0    # 6 > 5: no copy ...
    assert budget.spend() and not budget.spend()              # ... and its hedge given back
    assert gate.rate_limited == 0  # a copy not sent is not a request refused
    assert gate.limiter is not None and gate.limiter.snapshot(now)[0].used == 3


def test_no_copy_in_a_cooldown_and_none_beyond_what_any_window_admits():
    gate = _gate()
    now = 1_000_000_000
    assert gate.admit_now(now, 1, 0, False)  # no limits: only a cooldown stops a copy
    assert gate.cooldown is not None
    gate.cooldown.on_response(now, 429, "2", 0.0)
    assert not gate.admit_now(now + 1, 1, 0, False)
    assert gate.admit_now(now + 3_000_000_000, 1, 0, False)
    assert not _gate(limit=5).admit_now(now, 6, 0, False)  # could never be admitted


def test_when_both_copies_fail_the_worst_case_is_raised():
    not_sent = fastpool.StaleConnection("idle connection closed")
    maybe = fastpool.ReadTimeout("no answer")
    other = fastpool.ServerDisconnected("closed")
    assert outcome_error(not_sent, maybe) is maybe
    assert outcome_error(maybe, not_sent) is maybe
    assert outcome_error(other, maybe) is other  # both MaybeSent: the primary's
    assert outcome_error(not_sent, fastpool.StaleConnection("x")) is not_sent
    interrupt = KeyboardInterrupt()
    assert outcome_error(maybe, interrupt) is interrupt
