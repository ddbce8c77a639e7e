"""Keep-warm, rotation and outages in the policy (fastpool._policy.pool / maintenance /
lifecycle), with fake connections and a fake clock: every decision, no socket."""

from __future__ import annotations

import pytest

from fastpool._engine._pure._hist import Histogram
from fastpool._policy import lifecycle
from fastpool._policy.maintenance import Open, Ping
from fastpool._policy.pool import PoolPolicy
from fastpool._policy.waiters import GENERAL, RESERVED, Waiter

S = 1_000_000_000


class Conn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.lane = GENERAL
        self.state = 0
        self.reusable = True
        self.resumed = False
        self.last_used_ns = 0
        self.born_ns = self.retire_at_ns = self.uses = 0
        self.retire_uses = lifecycle.NO_LIMIT
        self.closed = False

    def __repr__(self) -> str:
        return self.name


def make(connections=2, reserved=0, **kw) -> PoolPolicy:
    p = PoolPolicy(connections, None, Histogram(), reserved, **kw)
    p.maintenance._random = lambda: 0.0  # no jitter: exact times
    for lane, n in ((GENERAL, connections), (RESERVED, reserved)):
        for i in range(n):
            assert p.slots.reserve(lane)
            c = Conn(f"{'gr'[lane]}{i}")
            p.opened(c, lane, 0)
            p.idle[lane].append(c)
    return p


def use(p: PoolPolicy, conn: Conn, now: int) -> None:
    """A request on conn at `now`, as the lane does it (then hands it back when due)."""
    p.idle[conn.lane].remove(conn)
    conn.uses += 1
    conn.last_used_ns = now
    if conn.uses >= conn.retire_uses or (conn.retire_at_ns and now >= conn.retire_at_ns):
        p.released(conn, now)
    else:
        p.idle[conn.lane].append(conn)


# ---- keep-warm ------------------------------------------------------------------------------


def test_idle_connections_are_pinged_every_interval_and_only_those():
    p = make(2, keep_warm_ns=25 * S)
    g0, g1 = p.idle[GENERAL]
    assert p.maintenance.due(10 * S) == ([], 25 * S)
    use(p, g1, 20 * S)  # g1 was used at 20 s: not due until 45 s
    actions, wake = p.maintenance.due(25 * S)
    assert actions == [Ping(g0)] and wake == 45 * S
    assert g0 not in p.idle[GENERAL] and g0.state == lifecycle.PINGING  # not idle meanwhile
    g0.last_used_ns = 25 * S
    woken, close, maintain = p.ping_done(g0, None)
    assert woken is None and close is None and maintain
    assert p.idle[GENERAL][0] is g0 and g0.state == lifecycle.IN_SERVICE  # back, at the bottom
    assert p.stats.pings == 1 and p.stats.ping_failures == 0


def test_connections_idle_together_are_pinged_one_at_a_time():
    # After a burst every connection goes idle at once; pinging them all at once would take
    # them all off the idle stack together, and the next order would find none.
    p = make(3, keep_warm_ns=25 * S)
    (first,), _ = p.maintenance.due(30 * S)
    assert len(p.idle[GENERAL]) == 2  # the others stay idle while it is pinged
    assert p.maintenance.due(30 * S)[0] == []
    first.conn.last_used_ns = 30 * S
    p.ping_done(first.conn, None)
    (second,), _ = p.maintenance.due(30 * S)
    assert second.conn is not first.conn
    p.ping_done(second.conn, ConnectionResetError("reset"))  # a failure frees the turn too
    actions, _ = p.maintenance.due(30 * S)
    pings = [a for a in actions if isinstance(a, Ping)]
    assert Open(GENERAL) in actions and len(pings) == 1  # the refill, and the next ping
    assert pings[0].conn not in (first.conn, second.conn)


def test_a_failed_ping_replaces_the_connection_quietly():
    p = make(1, keep_warm_ns=25 * S)
    (action,), _ = p.maintenance.due(30 * S)
    conn = action.conn
    conn.reusable = False
    woken, close, _ = p.ping_done(conn, ConnectionResetError("reset"))
    assert close is conn and conn.state == lifecycle.CLOSED
    assert p.stats.ping_failures == 1 and p.slots.deficit() == 1
    actions, _ = p.maintenance.due(30 * S)
    assert actions == [Open(GENERAL)]  # the refill replaces it


def test_a_ping_is_handed_to_a_waiter_when_one_queued_meanwhile():
    p = make(1, keep_warm_ns=25 * S)
    (action,), _ = p.maintenance.due(30 * S)
    w = Waiter()
    p.queue.add(w)
    woken, _, _ = p.ping_done(action.conn, None)
    assert woken is w and w.conn is action.conn


# ---- rotation -------------------------------------------------------------------------------


def test_lifetime_rotation_is_make_before_break():
    p = make(2, lifetime_ns=60 * S)
    g0, g1 = p.idle[GENERAL]
    assert g0.retire_at_ns == 60 * S
    assert p.maintenance.due(59 * S) == ([], 60 * S)
    actions, _ = p.maintenance.due(60 * S)
    # one replacement at a time per lane, the old ones still in service meanwhile
    assert actions == [Open(GENERAL, "rotate", g0)]
    assert g0.state == lifecycle.RETIRING and g1.state == lifecycle.RETIRING
    assert p.idle_count() == 2 and p.slots.open[GENERAL] == 3
    new = Conn("new")
    woken, close, _ = p.opened_in_background(actions[0], new, 61 * S)
    assert close is g0 and g0.state == lifecycle.CLOSED  # idle: retired at once
    assert p.slots.open[GENERAL] == 2 and p.stats.rotations == 1
    assert p.stats.reconnects == 0
    actions, _ = p.maintenance.due(61 * S)
    assert actions == [Open(GENERAL, "rotate", g1)]


def test_a_busy_connection_retires_when_its_request_ends():
    p = make(1, lifetime_ns=60 * S)
    (old,) = p.idle[GENERAL]
    p.idle[GENERAL].remove(old)  # carrying a request
    woken, close, maintain = p.released(old, 61 * S)  # the lane saw it due
    assert maintain and old.state == lifecycle.RETIRING and p.idle[GENERAL] == [old]
    assert old.retire_at_ns == 0  # handed back once
    (action,), _ = p.maintenance.due(61 * S)
    p.idle[GENERAL].remove(old)  # busy again when its replacement arrives
    _, close, _ = p.opened_in_background(action, Conn("new"), 62 * S)
    assert close is None and old.state == lifecycle.RETIRED and old.retire_uses == 0
    woken, close, _ = p.released(old, 63 * S)  # its request ends: closed, no refill owed
    assert close is old and woken is None and p.slots.open[GENERAL] == 1


def test_request_budget_is_a_hard_limit_with_the_replacement_started_early():
    p = make(1, max_requests=5)
    (c,) = p.idle[GENERAL]
    c.retire_uses = 4  # what a jitter of 20 % gives: the replacement starts at 4 of 5
    for t in (1, 2, 3):
        use(p, c, t)
    assert c.state == lifecycle.IN_SERVICE
    use(p, c, 4)
    assert c.state == lifecycle.RETIRING and c.retire_uses == 5 and p.idle[GENERAL] == [c]
    (action,), _ = p.maintenance.due(4)
    assert action == Open(GENERAL, "rotate", c)
    use(p, c, 5)  # the replacement is late: the budget still holds
    assert c.state == lifecycle.CLOSED and p.idle[GENERAL] == []
    assert p.slots.open[GENERAL] == 1  # only the replacement's slot: no refill on top
    p.opened_in_background(action, Conn("new"), 6)
    assert p.slots.open[GENERAL] == 1 and p.idle_count() == 1


def test_jitter_spreads_lifetimes_by_up_to_a_fifth():
    p = PoolPolicy(1, None, Histogram(), lifetime_ns=100 * S, max_requests=1000)
    seq = iter([0.0, 1.0, 0.5, 0.5])
    p.maintenance._random = lambda: next(seq)
    a, b = Conn("a"), Conn("b")
    p.slots.reserve(), p.opened(a, GENERAL, 0)
    p.slots.reserve(), p.opened(b, GENERAL, 0)
    assert (a.retire_at_ns, a.retire_uses) == (100 * S, 800)
    assert (b.retire_at_ns, b.retire_uses) == (90 * S, 900)


def test_rotate_replaces_every_connection_one_at_a_time():
    p = make(2, reserved=1)
    p.rotate()
    actions, _ = p.maintenance.due(5)
    assert sorted((a.lane, a.reason) for a in actions) == [(GENERAL, "rotate"),
                                                           (RESERVED, "rotate")]
    for a in actions:
        p.opened_in_background(a, Conn(f"new{a.lane}"), 6)
    actions, _ = p.maintenance.due(7)
    assert [(a.lane, a.reason) for a in actions] == [(GENERAL, "rotate")]
    p.opened_in_background(actions[0], Conn("new-last"), 8)
    assert p.maintenance.due(9) == ([], None) and p.stats.rotations == 3
    assert all(c.name.startswith("new") for c in p.connections())


def test_a_failed_replacement_keeps_the_old_one_and_retries_after_back_off():
    p = make(1, lifetime_ns=10 * S)
    (action,), _ = p.maintenance.due(10 * S)
    old = action.replaces
    assert p.open_failed(action, 10 * S, "refused") is None
    assert old.state == lifecycle.RETIRING and p.idle[GENERAL] == [old]  # still serving
    actions, wake = p.maintenance.due(10 * S)
    assert actions == [] and wake is not None and wake > 10 * S
    actions, _ = p.maintenance.due(wake)
    assert actions == [Open(GENERAL, "rotate", old)]


def test_a_retiring_connection_that_dies_is_not_refilled_twice():
    p = make(1, lifetime_ns=10 * S)
    (action,), _ = p.maintenance.due(10 * S)
    old = action.replaces
    p.idle[GENERAL].remove(old)
    assert p.dropped(old) is None  # its replacement is opening: it takes the place
    assert p.maintenance.due(10 * S) == ([], None)
    p.opened_in_background(action, Conn("new"), 11 * S)
    assert p.slots.open[GENERAL] == 1 and p.slots.deficit() == 0


# ---- outage ---------------------------------------------------------------------------------


def test_outage_is_declared_only_when_nothing_is_open_and_opens_fail():
    p = make(1)
    (c,) = p.idle[GENERAL]
    p.idle[GENERAL].remove(c)
    p.dropped(c)
    assert p.outage() is None  # nothing failed yet: a request may try itself
    (action,), _ = p.maintenance.due(0)
    p.open_failed(action, 0, "connect: Connection refused")
    reason = p.outage()
    assert reason is not None and "Connection refused" in reason
    (action,), _ = p.maintenance.due(p.maintenance.backoff.next_at)
    p.opened_in_background(action, Conn("back"), 1)
    assert p.outage() is None


def test_the_lifecycle_table_refuses_impossible_moves():
    c = Conn("c")
    c.state = lifecycle.CLOSED
    with pytest.raises(lifecycle.TransitionError):
        lifecycle.move(c, lifecycle.IN_SERVICE)
    c.state = lifecycle.RETIRING
    with pytest.raises(lifecycle.TransitionError):
        lifecycle.move(c, lifecycle.PINGING)


# ---- slots leaked by interrupts --------------------------------------------------------------


def test_reconcile_gives_back_slots_nothing_holds():
    import gc

    p = make(1)
    (c,) = p.idle[GENERAL]
    p.idle[GENERAL].remove(c)
    del c  # a connection lost between two statements: nobody closes it, nobody drops it
    gc.collect()
    claim = p.reserve_for_request()
    assert claim is None  # the lost one still counts
    assert p.reconcile() and p.slots.open[GENERAL] == 0
    held = p.reserve_for_request()
    assert held is not None and not p.reconcile()  # a live claim is held: kept
    lost = p.reserve_for_request()
    assert lost is None


def test_reconcile_keeps_busy_connections_and_background_opens():
    p = make(2)
    busy = p.idle[GENERAL].pop()   # carrying a request in another thread
    p.dropped(p.idle[GENERAL].pop())
    (action,), _ = p.maintenance.due(0)  # the refill opens in the background
    assert not p.reconcile() and p.slots.open[GENERAL] == 2
    assert busy.state == lifecycle.IN_SERVICE
