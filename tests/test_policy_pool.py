"""PoolPolicy, Maintenance and Backoff (fastpool._policy), alone, with a fake clock and fake
connections: the decisions both drivers share, without sockets, threads or an event loop."""

from __future__ import annotations

from fastpool._engine._pure._hist import Histogram
from fastpool._model.errors import StaleConnection
from fastpool._policy.backoff import Backoff
from fastpool._policy.maintenance import Maintenance, Open
from fastpool._policy.pool import PoolPolicy
from fastpool._policy.slots import Slots
from fastpool._policy.waiters import GENERAL, GOT_CONN, GOT_SLOT, RESERVED, Waiter

MS = 1_000_000


class FakeConn:
    def __init__(self, name: str, resumed: bool = False) -> None:
        self.name = name
        self.lane = GENERAL
        self.resumed = resumed
        self.reusable = True
        self.state = 0
        self.last_used_ns = 0

    def __repr__(self) -> str:
        return self.name


def policy(connections=2, max_connections=None, reserved=0) -> PoolPolicy:
    p = PoolPolicy(connections, max_connections, Histogram(), reserved=reserved)
    for lane, n in ((GENERAL, connections), (RESERVED, reserved)):
        for i in range(n):
            assert p.slots.reserve(lane)
            conn = FakeConn(f"{'gr'[lane]}{i}")
            p.opened(conn, lane, 0)
            p.idle[lane].append(conn)
    return p


def test_idle_is_a_stack_hottest_first():
    p = policy(3)
    a = p.take_idle()
    b = p.take_idle()
    assert (a.name, b.name) == ("g2", "g1")
    assert p.returned(b) is None and p.returned(a) is None
    assert p.take_idle() is a  # the last returned is the hottest


def test_a_returned_connection_goes_to_the_oldest_waiter_not_the_stack():
    p = policy(1)
    conn = p.take_idle()
    w1, w2 = Waiter(), Waiter()
    p.queue.add(w1), p.queue.add(w2)
    assert p.returned(conn) is w1 and w1.state == GOT_CONN and w1.conn is conn
    assert p.idle_count() == 0


def test_background_connections_go_below_the_hot_ones():
    p = policy(2)
    fresh = FakeConn("new")
    fresh.lane = GENERAL
    p.returned(fresh, fresh=True)
    assert p.idle[GENERAL][0] is fresh and p.take_idle() is not fresh


def test_priority_takes_the_reserved_lane_first_and_ordinary_never():
    p = policy(1, reserved=1)
    assert p.take_idle(priority=True).name == "r0"
    assert p.take_idle(priority=False).name == "g0"
    assert p.take_idle(priority=False) is None


def test_settle_moves_idle_connections_to_waiters():
    p = policy(2)
    w = Waiter()
    p.queue.add(w)  # queued while two were idle: the race the lanes' double check closes
    assert p.settle() == [w] and p.idle_count() == 1


def test_a_drop_gives_the_slot_to_a_waiter_else_to_the_refill():
    p = policy(1)
    conn = p.take_idle()
    w = Waiter()
    p.queue.add(w)
    assert p.dropped(conn, StaleConnection("gone")) is w
    assert w.state == GOT_SLOT and p.stats.stale == 1
    assert p.slots.open[GENERAL] == 1  # the waiter holds the slot now
    p2 = policy(1)
    c2 = p2.take_idle()
    assert p2.dropped(c2) is None and p2.slots.deficit() == 1


def test_close_returns_the_idle_connections():
    p = policy(2, reserved=1)
    idle, _ = p.close()
    assert sorted(c.name for c in idle) == ["g0", "g1", "r0"]
    assert p.closed and p.slots.total_open == 0 and p.reserve_for_request() is None


def test_stats_snapshot_is_typed_and_counts_reconnects():
    p = policy(2)
    c = p.take_idle()
    p.dropped(c)
    assert p.slots.reserve()
    p.opened(FakeConn("again", resumed=True), GENERAL, 0)
    snap = p.snapshot()
    assert snap["connects"] == 3 and snap["reconnects"] == 1 and snap["resumed"] == 1
    assert snap["open"] == 2 and snap["idle"] == 1 and snap["waiting"] == 0
    assert set(snap["latency_ns"]) == {"count", "min", "mean", "p50", "p90", "p99", "p999", "max"}


# ---- maintenance and back-off --------------------------------------------------------------


def test_refill_one_at_a_time_reserved_lane_first():
    s = Slots(2, reserved=1)
    m = Maintenance(s, ([], []), backoff=Backoff(rand=lambda: 1.0))
    actions, wake = m.due(0)
    assert actions == [Open(RESERVED)] and wake is None
    assert m.due(0) == ([], None)  # one open in flight: nothing more until it reports
    assert m.open_done(actions[0], True, 1) is False
    actions, _ = m.due(1)
    assert actions == [Open(GENERAL)]


def test_failed_opens_back_off_with_jitter_and_recover():
    s = Slots(1)
    m = Maintenance(s, ([], []), backoff=Backoff(base_ns=50 * MS, cap_ns=2000 * MS,
                                                    rand=lambda: 1.0))
    now = 0
    delays = []
    for _ in range(8):
        (action,), _ = m.due(now)
        m.open_done(action, False, now)
        actions, wake = m.due(now)
        assert actions == [] and wake is not None
        delays.append(wake - now)
        assert m.due(wake - 1) == ([], wake)  # not before its time
        now = wake
    assert delays == [50 * MS, 100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS,
                      2000 * MS, 2000 * MS]
    assert m.failing
    (action,), _ = m.due(now)
    m.open_done(action, True, now)
    assert not m.failing and m.due(now) == ([], None)  # back to strength: nothing scheduled


def test_full_jitter_is_bounded_below():
    b = Backoff(base_ns=100, cap_ns=10_000, rand=lambda: 0.0)
    assert b.failed(0) == 50  # never a zero wait (it would spin)
    b2 = Backoff(base_ns=100, cap_ns=10_000, rand=lambda: 0.5)
    assert [b2.failed(0) for _ in range(4)] == [50, 100, 200, 400]


def test_nothing_is_due_on_a_closed_pool():
    s = Slots(1)
    s.closed = True
    assert Maintenance(s, ([], [])).due(0) == ([], None)
