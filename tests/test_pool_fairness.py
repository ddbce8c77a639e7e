"""Waiting for a connection: served in arrival order, priority requests first, nobody starved
under contention; and the pool back to strength by itself after an outage. Every driver
(Pool, AsyncPool on asyncio and uvloop) and both engines."""

from __future__ import annotations

import threading
import time

import pytest
from conftest import load_server
from pool_helpers import run_threads, wait_until
from support import faults
from support.pools import open_count, waiting_requests

import fastpool


def _gate(release: threading.Event) -> faults.Behavior:
    """Answers at once, except /hold, which waits until release is set."""

    def run(conn: faults.FaultConnection) -> None:
        while (req := conn.read_request()) is not None:
            if req.target == "/hold":
                while not release.is_set() and not conn.stopping:
                    conn.sleep(0.01)
            conn.send(faults.http_response(200, req.target.encode()))
        conn.close()

    return faults.Behavior("gate", run)


def test_waiters_get_the_connection_in_arrival_order(fault_server, make_pool):
    release = threading.Event()
    server = fault_server(_gate(release))
    pool = make_pool(server.url(), connections=1, timeout=10)
    results: dict = {}
    threads = [threading.Thread(target=lambda: results.setdefault("hold", pool.get("/hold")),
                                daemon=True)]
    threads[0].start()
    server.wait_for_requests(1)
    for i in range(8):
        t = threading.Thread(target=lambda i=i: results.setdefault(i, pool.get(f"/w{i}")),
                             daemon=True)
        t.start()
        threads.append(t)
        wait_until(lambda i=i: waiting_requests(pool) == i + 1, what=f"waiter {i} to queue")
    release.set()
    for t in threads:
        t.join(10)
    assert all(not t.is_alive() for t in threads)
    assert [r.target for r in server.requests] == ["/hold"] + [f"/w{i}" for i in range(8)]
    assert all(results[i].content == f"/w{i}".encode() for i in range(8))


@pytest.mark.parametrize("connections", [2, 4])
def test_64_threads_on_a_few_connections_nobody_times_out(fault_server, make_pool,
                                                          connections):
    server = fault_server(faults.delay(2), max_connections=connections + 2)
    # The pool timeout is far above what 64 fair waiters need (64 x 2 ms / connections):
    # a request that waits it out was overtaken again and again.
    pool = make_pool(server.url(), connections=connections,
                     timeout=fastpool.Timeout(10, pool=5))

    def work(i: int) -> int:
        for k in range(5):
            assert pool.get(f"/t{i}/{k}").status_code == 200
        return 5

    assert sum(run_threads(work, 64, timeout=120)) == 320
    stats = pool.stats()
    assert stats["errors"] == 0 and stats["timeouts"] == 0 and stats["requests"] == 320
    assert stats["open"] <= connections


def test_a_waiter_that_gives_up_loses_no_connection(fault_server, engine_name):
    """A waiter that gives up (here: its pool timeout) while a connection is delivered to it
    hands it to the next waiter instead of losing it."""
    release = threading.Event()
    server = fault_server(_gate(release))
    with fastpool.Pool(server.url(), connections=1, engine=engine_name,
                       timeout=fastpool.Timeout(10, pool=0.2)) as pool:
        holder = threading.Thread(target=lambda: pool.get("/hold"), daemon=True)
        holder.start()
        server.wait_for_requests(1)
        with pytest.raises(fastpool.PoolTimeout):
            pool.get("/late")
        release.set()
        holder.join(10)
        assert pool.get("/after").content == b"/after"
        assert pool.stats()["open"] == 1 and pool.stats()["waiting"] == 0


def test_the_pool_refills_by_itself_after_an_outage(make_pool):
    """The gateway goes away for a while (requests keep coming and fail NotSent, fast), then
    comes back: the pool is back to `connections` open without any request asking."""
    server = load_server()()
    server.start()
    port = server.port
    try:
        pool = make_pool(server.url, connections=2, timeout=fastpool.Timeout(2, connect=0.5))
        assert pool.get("/up").status_code == 200
        server.stop()  # closes every connection: the pool sees them go
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pool.get("/down")
            except fastpool.NotSentError:
                pass  # refused: certainly not sent
            except fastpool.MaybeSentError:
                pass  # a connection the server closed just as the request went out
            time.sleep(0.05)
        server2 = load_server()(port=port)
        server2.start()
        try:
            wait_until(lambda: open_count(pool) == 2 and pool.stats()["idle"] == 2,
                       timeout=10, what="the pool to refill by itself")
            assert pool.get("/back").status_code == 200
            assert server2.stats()["accepted"] == 2  # the refill's, not the request's
        finally:
            server2.stop()
    finally:
        if server.running:
            server.stop()


def test_waiting_for_a_connection_does_not_collect_garbage(fault_server, make_pool):
    # A busy pool is normal: a request that finds no free connection must not pay for a
    # full cyclic collection (milliseconds with a large heap) on its way to waiting. Only a
    # request ended by an interrupt can leave a connection held by a reference cycle.
    import gc

    release = threading.Event()
    server = fault_server(_gate(release))
    pool = make_pool(server.url(), connections=1,
                     timeout=fastpool.Timeout(10, pool=0.05))
    holder = threading.Thread(target=lambda: pool.get("/hold"), daemon=True)
    holder.start()
    server.wait_for_requests(1)
    collections = []

    def count(phase: str, info: dict) -> None:
        if phase == "start" and info["generation"] == 2:
            collections.append(info)

    gc.callbacks.append(count)
    enabled = gc.isenabled()
    gc.disable()  # automatic collections would be counted too
    try:
        for _ in range(3):
            with pytest.raises(fastpool.PoolTimeout):
                pool.get("/waits")
    finally:
        if enabled:
            gc.enable()
        gc.callbacks.remove(count)
        release.set()
    holder.join(10)
    assert collections == []
    assert pool.get("/after").status_code == 200
