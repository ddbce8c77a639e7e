"""The wait queue and the slots (fastpool._policy.waiters, .slots), alone: no I/O, no clock."""

from __future__ import annotations

import pytest

from fastpool._policy.slots import Slots
from fastpool._policy.waiters import (
    CANCELLED,
    FAILED,
    GENERAL,
    GOT_CONN,
    GOT_SLOT,
    RESERVED,
    WAITING,
    Waiter,
    WaitQueue,
)


def queue_of(*priorities: bool) -> tuple:
    q = WaitQueue()
    ws = [Waiter(p) for p in priorities]
    for w in ws:
        q.add(w)
    return q, ws


def test_connections_go_to_waiters_oldest_first():
    q, ws = queue_of(False, False, False)
    assert [q.offer_conn(f"c{i}") for i in range(3)] == ws
    assert [w.conn for w in ws] == ["c0", "c1", "c2"]
    assert all(w.state == GOT_CONN for w in ws)
    assert q.offer_conn("c3") is None and len(q) == 0


def test_priority_waiters_are_served_first_each_lane_in_order():
    q, (a, p1, b, p2) = queue_of(False, True, False, True)
    order = [q.offer_conn(i) for i in range(4)]
    assert order == [p1, p2, a, b]


def test_a_reserved_connection_goes_only_to_a_priority_waiter():
    q, (a, p) = queue_of(False, True)
    assert q.offer_conn("r1", RESERVED) is p
    assert q.offer_conn("r2", RESERVED) is None  # the ordinary waiter may not use it
    assert q.wants(GENERAL) and not q.wants(RESERVED)
    assert q.offer_conn("g", GENERAL) is a


def test_slots_are_offered_like_connections():
    q, (a, p) = queue_of(False, True)
    assert q.offer_slot(RESERVED) is p and p.state == GOT_SLOT and p.slot_lane == RESERVED
    assert q.offer_slot(RESERVED) is None
    assert q.offer_slot(GENERAL) is a and a.slot_lane == GENERAL


def test_cancel_hands_back_what_was_delivered_meanwhile():
    q, (a, b, c) = queue_of(False, False, False)
    assert q.cancel(a) == (None, None) and a.state == CANCELLED  # still waiting: just removed
    assert q.offer_conn("conn") is b
    assert q.cancel(b) == ("conn", None)  # delivered after it gave up: the caller passes it on
    assert q.offer_slot() is c
    c.claim = "the claim"  # set by the policy with the slot
    assert q.cancel(c) == (None, "the claim")
    assert len(q) == 0


def test_fail_all_empties_the_queue():
    q, ws = queue_of(False, True, False)
    failed = q.fail_all(RuntimeError("closed"))
    assert set(map(id, failed)) == set(map(id, ws)) and len(q) == 0
    assert all(w.state == FAILED and str(w.error) == "closed" for w in ws)


def test_waiter_repr_and_done():
    w = Waiter(True)
    assert not w.done and w.state == WAITING and "priority waiting" in repr(w)


# ---- slots ----------------------------------------------------------------------------------


def test_slots_bound_each_lane():
    s = Slots(2, 3, reserved=1)
    assert [s.reserve() for _ in range(4)] == [True, True, True, False]
    assert s.reserve(RESERVED) and not s.reserve(RESERVED)
    assert s.total_open == 4 and s.total_target == 3


def test_reconnects_are_derived_from_the_high_water_mark():
    s = Slots(2, 3)
    s.reserve(), s.reserve()
    assert s.opened() is False and s.opened() is False  # initial: growing
    s.dropped()
    s.reserve()
    assert s.opened() is True  # back to a level reached before: a reconnect
    s.reserve()
    assert s.opened() is False  # growth under load (3 > 2)


def test_opening_in_parallel_counts_established_connections_only():
    s = Slots(3)
    for _ in range(3):
        s.reserve()
    assert [s.opened() for _ in range(3)] == [False, False, False]


def test_deficit_and_replacement_beyond_the_limit():
    s = Slots(2)
    assert s.deficit() == 2
    s.reserve(), s.reserve()
    s.opened(), s.opened()
    assert s.deficit() == 0 and not s.reserve()
    assert s.reserve_replacement() and not s.reserve_replacement()  # one at a time
    assert s.deficit() == 0 and s.open[GENERAL] == 3
    assert s.opened(replacement=True) is False  # a rotation is not a reconnect
    s.dropped()  # the replaced one retires
    assert s.open[GENERAL] == 2 and s.deficit() == 0


def test_unreserve_and_closed():
    s = Slots(1)
    assert s.reserve()
    s.unreserve()
    assert s.open[GENERAL] == 0 and s.deficit() == 1
    s.closed = True
    assert not s.reserve() and s.deficit() == 0 and not s.has_room()


@pytest.mark.parametrize("kwargs", [dict(connections=0), dict(connections=True),
                                    dict(connections=2, max_connections=1),
                                    dict(connections=1, reserved=-1),
                                    dict(connections=1, max_connections="2")])
def test_slots_validate(kwargs):
    with pytest.raises(ValueError):
        Slots(**kwargs)
