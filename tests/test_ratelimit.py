"""RateLimit / RateLimiter / SharedLedger: budgets counted the way the exchange counts them.

Unit tests on a fake clock (now_ns passed in), except the SharedLedger tests, which use
real processes (multiprocessing, spawn) hammering one ledger file.
"""

from __future__ import annotations

import collections
import fcntl
import multiprocessing
import os
import pickle
import random
import time

import pytest

import fastpool
from fastpool import RateLimit, SharedLedger
from fastpool._policy.ratelimit import RateLimiter

S = 1_000_000_000
MS = 1_000_000
#: A fake monotonic origin far from 0, and a server offset like a real epoch one.
T0 = 1_000 * S
EPOCH = 19_675 * 86_400 * S  # a UTC midnight: every window starts here


# --- RateLimit: the value ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"limit": 0}, "limit"),
    ({"limit": True}, "limit"),
    ({"limit": 1.5}, "limit"),
    ({"limit": 10, "per": 0}, "per"),
    ({"limit": 10, "per": -1}, "per"),
    ({"limit": 10, "per": "60"}, "per"),
    ({"limit": 10, "per": 10**9}, "per"),
    ({"limit": 10, "orders": 1}, "orders"),
    ({"limit": 10, "header": "bad header"}, "header"),
    ({"limit": 10, "header": ""}, "header"),
    ({"limit": 10, "header_kind": "left"}, "header_kind"),
    ({"limit": 10, "window": "token"}, "window"),
    ({"limit": 10, "reserve": 10}, "reserve"),
    ({"limit": 10, "reserve": -1}, "reserve"),
    ({"limit": 10, "reserve": 0.1}, "reserve"),
    ({"limit": 10, "buckets": 0}, "buckets"),
    ({"limit": 10, "buckets": 100_000}, "buckets"),
    ({"limit": 10, "name": ""}, "name"),
    ({"limit": 10, "shared": "yes"}, "shared"),
])
def test_ratelimit_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RateLimit(**kwargs)


def test_ratelimit_value():
    rl = RateLimit(6000, per=60, header="X-MBX-USED-WEIGHT-1M")
    assert rl.header == "x-mbx-used-weight-1m"  # matched case-insensitively
    assert rl.per_ns == 60 * S and rl.window == "fixed" and not rl.orders
    assert fastpool.RateLimit is RateLimit
    # The ledger key names the budget, not the cap a process gives itself.
    assert RateLimit(5000, per=60).key == RateLimit(6000, per=60, reserve=100).key
    assert RateLimit(50, per=10, orders=True).key != RateLimit(50, per=10).key
    assert RateLimit(50, per=10, name="a").key != RateLimit(50, per=10, name="b").key
    assert "6000/60s" in str(rl)
    with pytest.raises(TypeError):
        RateLimiter([(6000, 60)])


# --- fixed windows -------------------------------------------------------------------------


def test_fixed_window_counts_then_waits_until_the_aligned_boundary():
    rl = RateLimiter([RateLimit(10, per=1.0)], offset_ns=EPOCH - T0)
    start = T0 + 300 * MS  # 0.3 s into a server second
    assert [rl.acquire(start + i) for i in range(10)] == [0] * 10
    wait = rl.acquire(start + 10)
    assert wait == 700 * MS - 10  # the window is aligned to the server's second
    assert rl.acquire(start + 10 + wait - 1) > 0
    assert rl.acquire(start + 10 + wait) == 0  # a new window: counted from zero
    (state,) = rl.snapshot(start + 10 + wait)
    assert state.used == 1 and state.remaining == 9


def test_fixed_window_follows_the_server_clock_offset():
    rl = RateLimiter([RateLimit(2, per=10.0)], offset_ns=EPOCH - T0)  # EPOCH: a 10-s edge
    assert rl.acquire(T0) == 0 and rl.acquire(T0) == 0
    assert rl.acquire(T0) == 10 * S
    # Calibration says the server is 4 s ahead of what we thought: its window ends sooner.
    rl.set_clock_offset(EPOCH - T0 + 4 * S)
    assert rl.acquire(T0) == 6 * S


def test_weight_and_invalid_requests():
    rl = RateLimiter([RateLimit(100, per=60.0, reserve=10)], offset_ns=EPOCH - T0)
    assert rl.acquire(T0, weight=0) == 0  # free requests pass and count nothing
    assert rl.acquire(T0, weight=90) == 0
    assert rl.acquire(T0, weight=1) > 0  # the last 10 are held back for priority
    assert rl.acquire(T0, weight=10, priority=True) == 0
    assert rl.acquire(T0, weight=1, priority=True) > 0
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError):
            rl.acquire(T0, weight=bad)
    with pytest.raises(ValueError, match="exceeds the limit"):
        rl.acquire(T0, weight=101)
    with pytest.raises(ValueError, match="ordinary share"):
        rl.acquire(T0, weight=95)  # fits the limit, never the ordinary share
    with pytest.raises(ValueError):
        rl.acquire(T0, order=-1)


def _true_windows(grants, per):
    per_window = collections.Counter()
    for arrival, n in grants:
        per_window[arrival // per] += n
    return per_window


def test_fixed_windows_never_exceed_the_limit_in_a_server_window():
    """Greedy senders, random weights, a clock known only within +-error and a random
    one-way delay: counted at their true arrival on the server, no server window gets more
    than the limit (requests near a boundary are charged to both windows)."""
    rng = random.Random(7)
    limit, per = 50, 1 * S
    for trial in range(20):
        err = rng.choice([0, 1 * MS, 20 * MS, 100 * MS])
        transit = rng.choice([0, 2 * MS, 30 * MS])
        true_offset = EPOCH - T0 + rng.randrange(-per, per)
        believed = true_offset + rng.randint(-err, err)
        rl = RateLimiter([RateLimit(limit, per=per / S)], offset_ns=believed, error_ns=err,
                         transit_ns=transit)
        grants = []
        now = T0
        end = T0 + 12 * per
        while now < end:
            weight = rng.choice([1, 1, 1, 2, 5])
            wait = rl.acquire(now, weight=weight)
            if wait == 0:
                arrival = now + true_offset + rng.randint(0, transit)
                grants.append((arrival, weight))
                now += rng.randrange(0, 3 * MS)
            else:
                assert wait > 0
                now += wait if rng.random() < 0.5 else rng.randrange(1, wait + 1)
        counts = _true_windows(grants, per)
        assert max(counts.values()) <= limit, (trial, err, transit, counts)
        # And the budget is used: the greedy sender fills most windows.
        full = sum(1 for v in counts.values() if v >= limit - 5)
        assert full >= 6, counts


class _TokenBucket:
    """What the fixed windows replace: capacity ``limit``, refilled at limit/per."""

    def __init__(self, limit, per):
        self.limit, self.rate, self.tokens, self.t = limit, limit / per, float(limit), None

    def acquire(self, now):
        if self.t is not None:
            self.tokens = min(self.limit, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0
        return int((1 - self.tokens) / self.rate) + 1


def test_a_token_bucket_would_let_twice_the_limit_into_one_window():
    """The scenario above is discriminating: a token bucket spends its full burst at the
    start of a server window and its refill before the window ends: ~2x the limit in it."""
    limit, per = 50, S
    for make in (lambda: _TokenBucket(limit, per),
                 lambda: RateLimiter([RateLimit(limit, per=1.0)], offset_ns=EPOCH - T0)):
        limiter = make()
        # Idle (a full bucket) until a window starts, then send as fast as allowed.
        now = T0 + per
        grants = []
        while now < T0 + 2 * per + per // 2:
            wait = limiter.acquire(now)
            if wait == 0:
                grants.append((now + EPOCH - T0, 1))
            else:
                now += wait
        worst = max(_true_windows(grants, per).values())
        if isinstance(limiter, _TokenBucket):
            assert worst > 1.9 * limit
        else:
            assert worst == limit


def test_a_request_near_a_boundary_is_charged_to_both_windows():
    rl = RateLimiter([RateLimit(10, per=1.0)], offset_ns=EPOCH - T0, error_ns=50 * MS)
    near = T0 + S - 20 * MS  # 20 ms before the boundary, error 50 ms
    assert rl.acquire(near, weight=4) == 0
    (this,) = rl.snapshot(near)
    (next_,) = rl.snapshot(T0 + S + 1)
    assert this.used == 4 and next_.used == 4
    # Far from a boundary only one window is charged.
    assert rl.acquire(T0 + S + 500 * MS) == 0
    (mid,) = rl.snapshot(T0 + S + 500 * MS)
    assert mid.used == 5


def test_straddle_zone_is_capped_at_half_the_shortest_window():
    rl = RateLimiter([RateLimit(10, per=1.0), RateLimit(100, per=60.0)], error_ns=10 * S,
                     transit_ns=10 * S)
    _offset, err, transit = rl.clock
    assert 2 * err + transit <= S // 2


# --- orders --------------------------------------------------------------------------------


def test_order_limits_count_only_orders_and_orders_count_their_weight():
    rl = RateLimiter([RateLimit(100, per=60.0), RateLimit(3, per=10.0, orders=True)],
                     offset_ns=EPOCH - T0)
    for _ in range(5):
        assert rl.acquire(T0, weight=2) == 0  # not orders: the order budget is untouched
    assert rl.acquire(T0, weight=1, order=True) == 0
    assert rl.acquire(T0, weight=1, order=2) == 0  # a batch of two
    assert rl.acquire(T0, weight=1, order=True) > 0
    assert rl.acquire(T0, weight=1) == 0  # other requests still go
    weight, orders = rl.snapshot(T0)
    assert weight.used == 10 + 1 + 1 + 1 and orders.used == 3
    with pytest.raises(ValueError):
        rl.acquire(T0, order=4)


# --- refund --------------------------------------------------------------------------------


def test_refund_gives_back_a_request_that_never_left():
    rl = RateLimiter([RateLimit(2, per=1.0), RateLimit(1, per=1.0, orders=True)],
                     offset_ns=EPOCH - T0)
    t = T0 + 100 * MS
    assert rl.acquire(t, order=True) == 0
    assert rl.acquire(t + 1, order=True) > 0
    rl.refund(t + 2 * MS, 1, True, granted_ns=t)
    assert rl.acquire(t + 3 * MS, order=True) == 0
    # A refund for a window that has ended changes nothing in the new one.
    later = T0 + S + 100 * MS
    assert rl.acquire(later) == 0 and rl.acquire(later) == 0
    rl.refund(later, 1, False, granted_ns=t)
    assert rl.acquire(later) > 0
    rl.refund(later, 5, False)  # never below zero
    (w, _o) = rl.snapshot(later)
    assert w.used == 0


def test_refund_of_a_straddling_request_frees_both_windows():
    rl = RateLimiter([RateLimit(3, per=1.0)], offset_ns=EPOCH - T0, error_ns=50 * MS)
    near = T0 + S - 10 * MS
    assert rl.acquire(near, weight=3) == 0
    rl.refund(near + 1, 3, False, granted_ns=near)
    assert rl.snapshot(near)[0].used == 0 and rl.snapshot(T0 + S + 1)[0].used == 0


# --- observe: the server's own count --------------------------------------------------------


def test_observe_takes_the_servers_count_as_a_floor():
    rl = RateLimiter([RateLimit(6000, per=60.0, header="x-mbx-used-weight-1m")],
                     offset_ns=EPOCH - T0)
    t = T0 + S
    assert rl.acquire(t, weight=10) == 0
    rl.observe(t + MS, {"x-mbx-used-weight-1m": "5995"}.get, sent_ns=t)
    assert rl.snapshot(t + MS)[0].used == 5995  # other processes on this IP spent it
    assert rl.acquire(t + 2 * MS, weight=10) > 0
    assert rl.acquire(t + 2 * MS, weight=5) == 0
    rl.observe(t + 3 * MS, {"x-mbx-used-weight-1m": "20"}.get)  # behind our in-flight
    assert rl.snapshot(t + 3 * MS)[0].used == 6000
    for junk in (None, "", "abc", "-5", "1e3", "9" * 30):
        rl.observe(t + 4 * MS, lambda name, v=junk: v)
    assert rl.snapshot(t + 4 * MS)[0].used == 6000


def test_observe_a_count_for_a_window_that_rolled_over_is_not_charged_to_the_new_one():
    rl = RateLimiter([RateLimit(6000, per=60.0, header="x-mbx-used-weight-1m")],
                     offset_ns=EPOCH - T0, error_ns=5 * MS)
    sent = T0 + 60 * S - 100 * MS  # 100 ms before the minute ends
    assert rl.acquire(sent) == 0
    back = T0 + 60 * S + 50 * MS  # the answer comes in the next minute
    rl.observe(back, {"x-mbx-used-weight-1m": "5800"}.get, sent_ns=sent)
    assert rl.snapshot(back)[0].used == 0  # the new minute is not blocked for nothing
    assert rl.snapshot(sent)[0].used == 5800  # the old one took it
    # Without sent_ns it is taken as this window's count.
    rl.observe(back, {"x-mbx-used-weight-1m": "70"}.get)
    assert rl.snapshot(back)[0].used == 70


def test_observe_remaining_kind_and_unrelated_headers():
    rl = RateLimiter([RateLimit(600, per=5.0, window="sliding", header="x-bapi-limit-status",
                                header_kind="remaining"),
                      RateLimit(1000, per=1.0)], offset_ns=EPOCH - T0)
    rl.observe(T0, {"x-bapi-limit-status": "100"}.get)
    sliding, fixed = rl.snapshot(T0)
    assert sliding.used == 500 and fixed.used == 0
    assert rl.acquire(T0, weight=100) == 0
    assert rl.acquire(T0, weight=1) > 0


# --- sliding windows -----------------------------------------------------------------------


def test_sliding_window_never_exceeds_the_limit_in_any_interval():
    rng = random.Random(11)
    limit, per = 40, 2 * S
    for buckets in (1, 7, 100):
        rl = RateLimiter([RateLimit(limit, per=per / S, window="sliding", buckets=buckets)])
        g = -(-per // buckets)
        grants = []
        now = T0 + rng.randrange(S)
        while now < T0 + 10 * per:
            weight = rng.choice([1, 1, 3])
            wait = rl.acquire(now, weight=weight)
            if wait == 0:
                grants.append((now, weight))
                now += rng.randrange(0, 20 * MS)
            else:
                # Precision: never later than an exact sliding log + one bucket width.
                in_window = [(t, n) for t, n in grants if t > now - per]
                need = sum(n for _, n in in_window) + weight - limit
                freed = 0
                exact = 0 if need <= 0 else None  # an exact log would admit it now
                for t, n in ([] if need <= 0 else in_window):
                    freed += n
                    if freed >= need:
                        exact = t + per - now
                        break
                assert exact is not None and exact <= wait <= exact + g, (buckets, wait, exact)
                now += wait
        times = [t for t, _ in grants]
        for i, (t, _) in enumerate(grants):
            inside = sum(n for u, n in grants[: i + 1] if u > t - per)
            assert inside <= limit
        assert len(times) > 3 * limit // 3  # the budget is used, not just respected


def test_sliding_window_refund_and_long_idle():
    rl = RateLimiter([RateLimit(3, per=1.0, window="sliding", buckets=10)])
    t = T0
    assert [rl.acquire(t + i) for i in range(3)] == [0, 0, 0]
    rl.refund(t + 10, 1, False, granted_ns=t)
    assert rl.acquire(t + 20) == 0
    assert rl.acquire(t + 30) > 0
    # After an idle hour everything has expired, in one step.
    assert rl.acquire(t + 3600 * S) == 0
    assert rl.snapshot(t + 3600 * S)[0].used == 1


def test_snapshot_reports_every_budget():
    rl = RateLimiter([RateLimit(6000, per=60.0, name="ip-weight"),
                      RateLimit(3, per=1.0, window="sliding", orders=True)],
                     offset_ns=EPOCH - T0)
    rl.acquire(T0 + 15 * S, weight=7, order=True)
    weight, orders = rl.snapshot(T0 + 15 * S)
    assert weight.name == "ip-weight" and weight.used == 7 and weight.remaining == 5993
    assert weight.resets_in == pytest.approx(45.0)
    assert orders.name == "orders" and orders.used == 1 and orders.window == "sliding"
    assert 1.0 <= orders.resets_in <= 1.1


# --- SharedLedger --------------------------------------------------------------------------


@pytest.fixture
def ledger_path(tmp_path):
    return str(tmp_path / "budget.ledger")


def test_two_limiters_on_one_ledger_share_the_budget(ledger_path):
    limits = [RateLimit(10, per=1.0), RateLimit(6, per=1.0, shared=False)]
    a = RateLimiter(limits, ledger=SharedLedger(ledger_path), offset_ns=EPOCH - T0)
    b = RateLimiter(limits, ledger=SharedLedger(ledger_path), offset_ns=EPOCH - T0)
    t = T0 + 100 * MS
    granted = collections.Counter()
    for i in range(30):
        who = "a" if i % 3 else "b"
        granted[who] += (a if who == "a" else b).acquire(t + i) == 0
    # 10 in all (the shared budget), each within its own local 6.
    assert sum(granted.values()) == 10 and max(granted.values()) <= 6
    assert a.snapshot(t)[0].used == 10 and b.snapshot(t)[0].used == 10
    assert a.snapshot(t)[1].used + b.snapshot(t)[1].used == 10


def test_ledger_joins_counts_and_checks_its_file(ledger_path, tmp_path):
    first = RateLimiter([RateLimit(10, per=60.0, window="sliding", buckets=60)],
                        ledger=SharedLedger(ledger_path))
    assert first.acquire(T0, weight=7) == 0
    later = RateLimiter([RateLimit(10, per=60.0, window="sliding", buckets=60)],
                        ledger=SharedLedger(ledger_path))
    assert later.snapshot(T0 + 1)[0].used == 7  # a process that starts later joins
    assert later.acquire(T0 + 2, weight=4) > 0
    with pytest.raises(ValueError, match="words"):
        SharedLedger(ledger_path).region(RateLimit(10, per=60.0, window="sliding",
                                                   buckets=60).key, 5)
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 8192)
    with pytest.raises(ValueError, match="not a fastpool ledger"):
        SharedLedger(str(junk))
    with pytest.raises(ValueError):
        SharedLedger(ledger_path, size=100)
    with pytest.raises(ValueError, match="distinct name"):
        RateLimiter([RateLimit(10, per=1.0), RateLimit(20, per=1.0)],
                    ledger=SharedLedger(ledger_path))
    copy = pickle.loads(pickle.dumps(SharedLedger(ledger_path)))
    assert copy.path == ledger_path
    assert "budget.ledger" in repr(copy)


def test_ledger_by_name_lives_in_shared_memory():
    name = f"test-{os.getpid()}-{random.randrange(1 << 30)}"
    ledger = SharedLedger(name)
    try:
        assert os.path.basename(ledger.path) == f"fastpool-{name}.ledger"
        assert os.path.exists(ledger.path)
    finally:
        ledger.close()
        os.unlink(ledger.path)


def _hammer(path, offset, start_at, stop_at, out):
    """A strategy process: sends as fast as its limiter lets it until stop_at; reports
    the (monotonic) times and weights it was granted."""
    limiter = RateLimiter([RateLimit(60, per=0.5)], ledger=SharedLedger(path),
                          offset_ns=offset)
    rng = random.Random(os.getpid())
    grants = []
    while time.monotonic_ns() < start_at:
        time.sleep(0.001)
    while True:
        now = time.monotonic_ns()
        if now >= stop_at:
            break
        weight = rng.choice([1, 2])
        if limiter.acquire(now, weight=weight) == 0:
            grants.append((now, weight))
        else:
            time.sleep(0.0005)
    out.put(grants)


def test_processes_hammering_one_ledger_never_exceed_the_limit(ledger_path):
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    offset = EPOCH - time.monotonic_ns()
    start_at = time.monotonic_ns() + 3 * S  # spawn is slow here: start together
    stop_at = start_at + 2 * S
    procs = [ctx.Process(target=_hammer, args=(ledger_path, offset, start_at, stop_at, out))
             for _ in range(4)]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    counts = collections.Counter()
    for grants in results:
        for now, weight in grants:
            counts[(now + offset) // (S // 2)] += weight
    assert counts and max(counts.values()) <= 60, counts
    assert sum(1 for g in results if g) >= 2  # several processes did get through
    assert max(counts.values()) >= 55  # and together they used the budget


def _hold_lock_forever(path, ready):
    ledger = SharedLedger(path)
    ledger.lock()
    ready.set()
    time.sleep(120)


def test_a_crashed_process_leaves_no_lock_held(ledger_path):
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    child = ctx.Process(target=_hold_lock_forever, args=(ledger_path, ready))
    child.start()
    try:
        assert ready.wait(60)
        fd = os.open(ledger_path, os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):  # the child does hold it
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(fd)
        child.kill()  # dies holding the flock
        child.join(timeout=10)
        started = time.monotonic()
        limiter = RateLimiter([RateLimit(5, per=1.0)], ledger=SharedLedger(ledger_path))
        assert limiter.acquire(T0) == 0  # would block for good had the lock survived
        assert time.monotonic() - started < 10
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)
