"""Several gateway addresses and the latency-aware choice: `addresses=` spreads connections
over them, `choose="fastest"` sends requests on the connection with the smallest smoothed
round trip, and a persistently slow connection is rotated out. Every driver, both engines,
two real servers on two loopback addresses (127.0.0.1 and 127.0.0.2, one port).
"""

from __future__ import annotations

import threading

import pytest
from pool_helpers import wait_until
from support import faults
from support.pools import idle_connections

import fastpool
from fastpool._policy.choice import Addresses, fastest_index, slow_ones


class _C:
    """A stand-in connection for the choice's pure functions."""

    def __init__(self, rtt_ns: int, uses: int = 5, address: int = 0) -> None:
        self.rtt_ns, self.uses, self.address = rtt_ns, uses, address


# ---- the choice, sans-IO --------------------------------------------------------------------


def test_fastest_index_takes_the_smallest_round_trip_and_the_hottest_among_equals():
    stack = [_C(100_000), _C(30_000), _C(200_000), _C(120_000)]  # hottest last
    assert fastest_index(stack) == 1
    # Within SAME_RTT of each other: the hottest (top of the stack) wins.
    assert fastest_index([_C(100_000), _C(110_000)]) == 1
    assert fastest_index([_C(50_000), _C(110_000)]) == 0
    # Not measured yet: taken first, to be measured.
    assert fastest_index([_C(0), _C(10_000)]) == 0
    assert fastest_index([_C(10_000)]) == 0


def test_slow_ones_are_far_above_the_best_by_a_real_margin():
    assert slow_ones([_C(5_000_000)]) == []  # one says nothing
    fast = [_C(100_000), _C(110_000), _C(120_000)]
    slow = _C(5_000_000)
    assert slow_ones(fast + [slow]) == [slow]
    assert slow_ones([_C(100_000), slow]) == [slow]
    # Half of them slow (one of two gateway addresses): the median is slow, the best is not.
    slow2 = _C(4_000_000)
    assert slow_ones([_C(100_000), _C(110_000), slow, slow2]) == [slow, slow2]
    # Three times the best but within the margin (tiny round trips vary by multiples).
    assert slow_ones([_C(10_000), _C(11_000), _C(12_000), _C(90_000)]) == []
    # Everyone equally slow: nobody is.
    assert slow_ones([_C(5_000_000), _C(5_100_000), _C(4_900_000)]) == []
    # Not measured yet: never slow.
    assert slow_ones(fast + [_C(5_000_000, uses=0)]) == []


def test_new_connections_spread_first_then_go_to_the_faster_address():
    a = Addresses(2)
    assert a.pick([]) in (0, 1)
    assert a.pick([_C(1, address=0)]) == 1
    assert a.pick([_C(100_000, address=0), _C(900_000, address=1)]) == 0
    # A slow one's replacement goes to the fastest other address, even when that one has
    # more connections already (spreading evenly would send it back to the slow one).
    slow = _C(900_000, address=1)
    assert a.pick([_C(100_000, address=0), slow], avoid=slow) == 0
    crowded = [_C(100_000, address=0), _C(100_000, address=0), _C(110_000, address=0), slow]
    assert a.pick(crowded, avoid=slow) == 0
    three = Addresses(3)
    measured = [_C(100_000, address=0), _C(50_000, address=2), slow]
    assert three.pick(measured, avoid=slow) == 2
    assert three.pick([_C(100_000, address=0), slow], avoid=slow) == 2  # unmeasured: try it
    assert Addresses(1).pick([_C(1)]) == 0


# ---- pools on two addresses -----------------------------------------------------------------


def _two_servers(fault_server, behavior_a, behavior_b):
    """Servers on 127.0.0.1:p and 127.0.0.2:p (the same port: one URL reaches both)."""
    for _ in range(20):
        a = fault_server(behavior_a, host="127.0.0.1")
        try:
            b = fault_server(behavior_b, host="127.0.0.2", port=a.port)
        except OSError:  # the port is taken on 127.0.0.2: another one
            continue
        return a, b
    pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")


def _slow_first(ms: float, seen: list) -> faults.Behavior:
    """Answers every request; the first connection served (seen[0]) answers `ms` late."""
    lock = threading.Lock()

    def run(conn: faults.FaultConnection) -> None:
        with lock:
            slow = not seen
            seen.append(conn.record)
        while (req := conn.read_request()) is not None:
            if slow:
                conn.sleep(ms / 1000)
            conn.send(faults.http_response(200, req.target.encode()))
        conn.close()

    return faults.Behavior("slow-first", run)


def test_connections_spread_over_every_address_with_the_urls_host(fault_server, make_pool):
    a, b = _two_servers(fault_server, faults.respond(), faults.respond())
    pool = make_pool(a.url(host="localhost"), connections=4,
                     addresses=["127.0.0.1", "127.0.0.2"])
    a.wait_for_connections(2)
    b.wait_for_connections(2)
    assert a.connection_count == 2 and b.connection_count == 2
    assert sorted(c.address for c in idle_connections(pool)) == [0, 0, 1, 1]
    for i in range(8):
        assert pool.get(f"/{i}").status_code == 200
    served = a.requests + b.requests
    assert len(served) == 8
    assert {r.header("host") for r in served} == {f"localhost:{a.port}"}


def test_fastest_sends_requests_to_the_faster_address(fault_server, make_pool):
    a, b = _two_servers(fault_server, faults.respond(), faults.delay(25))
    pool = make_pool(a.url(), connections=2, addresses=["127.0.0.1", "127.0.0.2"])
    for i in range(20):
        assert pool.get(f"/{i}").status_code == 200
    # Each connection is measured once; after that the fast one carries the requests.
    assert len(b.requests) == 1 and len(a.requests) == 19
    by_address = {c.address: c.rtt_ns for c in idle_connections(pool)}
    assert by_address[1] > by_address[0] > 0


def test_hottest_keeps_to_one_connection_whatever_the_round_trips(fault_server, make_pool):
    a, b = _two_servers(fault_server, faults.respond(), faults.respond())
    pool = make_pool(a.url(), connections=2, addresses=["127.0.0.1", "127.0.0.2"],
                     choose="hottest")
    for i in range(10):
        pool.get(f"/{i}")
    counts = sorted([len(a.requests), len(b.requests)])
    assert counts == [0, 10]


def test_an_address_that_refuses_falls_back_to_the_next(fault_server, make_pool):
    a = fault_server(faults.respond())
    # Nothing listens on 127.0.0.3 at a's port: its connections go to 127.0.0.1.
    pool = make_pool(a.url(), connections=2, addresses=["127.0.0.3", "127.0.0.1"])
    a.wait_for_connections(2)
    assert [c.address for c in idle_connections(pool)] == [1, 1]
    assert pool.get("/x").status_code == 200


def test_a_persistently_slow_connection_is_rotated_out(fault_server, make_pool):
    seen: list = []
    server = fault_server(_slow_first(40, seen))
    pool = make_pool(server.url(), connections=3, choose="fastest")
    # Unmeasured connections go first: three requests measure all three.
    wait_until(lambda: (pool.get("/x"), pool.stats()["rotations"] >= 1)[1], timeout=15,
               what="the slow connection rotated out")
    slow = seen[0]
    wait_until(lambda: slow.ended, timeout=5, what="the slow one closed")
    server.wait_for_connections(4)
    before = len(slow.requests)
    for i in range(10):
        assert pool.get(f"/{i}").status_code == 200
    assert len(slow.requests) == before
    stats = pool.stats()
    assert stats["errors"] == 0 and stats["open"] == 3


def test_addresses_and_choose_are_validated():
    with pytest.raises(ValueError, match="choose"):
        fastpool.Pool("http://127.0.0.1:1", connections=0, choose="random")
    with pytest.raises(TypeError, match="addresses"):
        fastpool.Pool("http://127.0.0.1:1", connections=0, addresses="127.0.0.1")
    with pytest.raises(TypeError, match="addresses"):
        fastpool.Pool("http://127.0.0.1:1", connections=0, addresses=[1])
    with pytest.raises(ValueError, match="empty"):
        fastpool.Pool("http://127.0.0.1:1", connections=0, addresses=[])
