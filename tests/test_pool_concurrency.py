"""Many threads on one Pool: every response belongs to its request, connections stay within
their limits, server-side closes under load surface no error, and close() is safe while
threads wait or have requests in flight."""

from __future__ import annotations

import threading

import pytest
from pool_helpers import nginx_mark, run_threads, tls_kwargs, wait_until  # noqa: F401
from support.faults import Behavior, http_response, respond
from support.pools import waiting_requests

import fastpool


@nginx_mark
@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_threads_share_a_pool_and_every_response_is_their_own(nginx_factory, certs, make_pool,
                                                              listener):
    server = nginx_factory(keepalive_requests=100_000)
    lst = server.listeners[listener]
    pool = make_pool(server.url(listener, "/"), connections=4, **tls_kwargs(certs, lst.tls))
    threads, per_thread = 8, 500

    def work(t: int) -> int:
        for i in range(per_thread):
            tag = f"t{t}-{i}"
            if i % 3 == 0:
                r = pool.post("/api/v3/order", params={"id": tag}, content=tag.encode(),
                              headers={"X-Test-Tag": tag})
            else:
                r = pool.get("/api/v3/order", params={"id": tag}, headers={"X-Test-Tag": tag})
            assert r.status_code == 200
            doc = r.json()
            assert doc["uri"] == f"/api/v3/order?id={tag}", (tag, doc)
            assert doc["method"] == ("POST" if i % 3 == 0 else "GET")
            assert r.headers["x-test-tag"] == tag
            assert str(doc["connection"]) == r.headers["x-connection"]
        return per_thread

    assert sum(run_threads(work, threads, timeout=120)) == threads * per_thread
    total = threads * per_thread
    entries = server.access_log.wait_for(total, timeout=10)
    assert len(entries) == total
    assert sorted(e.tag for e in entries) == sorted(f"t{t}-{i}" for t in range(threads)
                                                    for i in range(per_thread))
    assert len({e.connection for e in entries}) <= 4
    s = pool.stats()
    assert s["requests"] == total and s["errors"] == 0 and s["retries"] == 0
    assert s["connects"] == 4 and s["open"] == 4 and s["idle"] == 4


def test_pool_grows_under_load_and_never_past_max_connections(fault_server, make_pool):
    peak = {"now": 0, "max": 0}
    lock = threading.Lock()
    ok = respond()

    def counting(conn) -> None:
        with lock:
            peak["now"] += 1
            peak["max"] = max(peak["max"], peak["now"])
        try:
            ok(conn)
        finally:
            with lock:
                peak["now"] -= 1

    server = fault_server(Behavior("counting", counting), max_connections=64)
    pool = make_pool(server.url("/"), connections=2, max_connections=5)

    def work(t: int) -> None:
        for i in range(200):
            r = pool.get(f"/t{t}/{i}")
            assert r.headers["x-request-target"] == f"/t{t}/{i}"

    run_threads(work, 10)
    s = pool.stats()
    assert s["errors"] == 0 and s["requests"] == 2000
    assert 2 <= s["connects"] <= 5 and s["open"] <= 5
    assert server.connection_count == s["connects"] and peak["max"] <= 5
    assert len(server.requests) == 2000


@nginx_mark
@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_server_closes_under_concurrent_load_are_transparent(nginx_factory, certs, make_pool,
                                                             listener):
    """nginx closes every connection after 50 requests while 8 threads hammer 4 connections:
    replacements (background and on demand) race with waiters, and no request fails."""
    server = nginx_factory(keepalive_requests=50)
    lst = server.listeners[listener]
    pool = make_pool(server.url(listener, "/"), connections=4, **tls_kwargs(certs, lst.tls))

    def work(t: int) -> None:
        for i in range(150):
            r = pool.get("/api/v3/order", params={"id": f"{t}-{i}"})
            assert r.json()["uri"] == f"/api/v3/order?id={t}-{i}"

    run_threads(work, 8, timeout=120)
    entries = server.access_log.wait_for(1200, timeout=10)
    assert len(entries) == 1200  # each request exactly once
    s = pool.stats()
    assert s["errors"] == 0 and s["requests"] == 1200
    assert s["reconnects"] >= 1200 // 50 - 4
    assert s["open"] <= 4


def _gated(gate: threading.Event) -> Behavior:
    """Answers every request, but only once the test opens the gate."""

    def run(conn) -> None:
        while (req := conn.read_request()) is not None:
            while not gate.is_set():
                conn.sleep(0.01)
            conn.send(http_response(200, b"done", [("X-Request-Target", req.target)]))
        conn.close()

    return Behavior("gated", run)


def test_close_while_threads_wait_and_requests_are_in_flight(fault_server, make_pool):
    gate = threading.Event()
    server = fault_server(_gated(gate))
    pool = make_pool(server.url("/"), connections=2, timeout=fastpool.Timeout(5.0, pool=None))
    results: dict = {}

    def call(name: str) -> None:
        try:
            results[name] = pool.get(f"/{name}")
        except BaseException as exc:  # noqa: BLE001 - inspected below
            results[name] = exc

    in_flight = [threading.Thread(target=call, args=(f"busy{i}",), daemon=True) for i in range(2)]
    for t in in_flight:
        t.start()
    server.wait_for_requests(2)
    waiting = [threading.Thread(target=call, args=(f"wait{i}",), daemon=True) for i in range(3)]
    for t in waiting:
        t.start()
    wait_until(lambda: waiting_requests(pool) == 3, what="three requests waiting")
    pool.close()
    for t in waiting:
        t.join(10)
        assert not t.is_alive()
    for i in range(3):
        exc = results[f"wait{i}"]
        assert isinstance(exc, fastpool.PoolClosed), exc
        assert isinstance(exc, fastpool.NotSentError)
    gate.set()  # the in-flight requests complete normally after close()
    for t in in_flight:
        t.join(10)
        assert not t.is_alive()
    for i in range(2):
        r = results[f"busy{i}"]
        assert isinstance(r, fastpool.Response), r
        assert r.content == b"done"
    assert sorted(q.target for q in server.requests) == ["/busy0", "/busy1"]
    # their connections were closed when they finished, not kept
    wait_until(lambda: all(c.done.is_set() for c in server.connections),
               what="the server to see every connection closed")
    assert pool._policy.slots.total_open == 0 and pool._policy.connections() == []
    assert pool.closed
    with pytest.raises(fastpool.PoolClosed):
        pool.get("/after")
    with pytest.raises(fastpool.PoolClosed):
        pool.post("/after", content=b"x")
    pool.close()  # twice is fine
    with pool:
        pass  # and the context manager on a closed pool too
    assert len(server.requests) == 2


def test_requests_after_close_raise_pool_closed(fault_server, make_pool):
    server = fault_server(respond())
    with make_pool(server.url("/"), connections=3) as pool:
        assert pool.get("/a").status_code == 200
    assert pool.closed
    for method in ("GET", "POST", "DELETE"):
        with pytest.raises(fastpool.PoolClosed) as info:
            pool.request(method, "/b")
        assert isinstance(info.value, fastpool.NotSentError)
    pool.close()
    wait_until(lambda: server.connection_count == 3 and all(
        c.done.is_set() for c in server.connections), what="every connection closed")
    assert [q.target for q in server.requests] == ["/a"]
    assert "closed" in repr(pool)


def test_concurrent_close_calls(fault_server, make_pool):
    server = fault_server(respond())
    pool = make_pool(server.url("/"), connections=4)
    pool.get("/warm")
    barrier = threading.Barrier(8, timeout=10)

    def closer(_: int) -> None:
        barrier.wait()
        pool.close()

    run_threads(closer, 8)
    assert pool.closed and pool._policy.slots.total_open == 0
    wait_until(lambda: all(c.done.is_set() for c in server.connections), what="closes")


def test_close_during_load(fault_server, make_pool):
    """close() while 6 threads are busy: every call either returns a response or raises a
    typed error (PoolClosed, never anything else); nothing hangs; everything is closed."""
    server = fault_server(respond(), max_connections=64)
    pool = make_pool(server.url("/"), connections=3)
    started = threading.Barrier(7, timeout=10)
    outcomes: list = []
    lock = threading.Lock()

    def work(t: int) -> None:
        started.wait()
        for i in range(100_000):  # bounded; ends at close
            try:
                pool.get(f"/t{t}/{i}")
                kind = "ok"
            except fastpool.PoolClosed:
                kind = "closed"
            except BaseException as exc:  # noqa: BLE001 - must not happen
                kind = repr(exc)
            with lock:
                outcomes.append(kind)
            if kind != "ok":
                return

    threads = [threading.Thread(target=work, args=(t,), daemon=True) for t in range(6)]
    for t in threads:
        t.start()
    started.wait()
    wait_until(lambda: len(server.requests) >= 300, what="some load")
    pool.close()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    bad = [o for o in outcomes if o not in ("ok", "closed")]
    assert bad == []
    assert outcomes.count("closed") == 6
    wait_until(lambda: all(c.done.is_set() for c in server.connections), what="closes")
    assert pool._policy.slots.total_open == 0


def test_close_while_a_request_opens_its_connection(fault_server, certs, make_pool):
    """A request that is still opening a connection when close() is called is a request
    waiting for a connection: it fails with PoolClosed and is not sent (close(): "requests
    waiting for a connection fail with PoolClosed")."""
    answer = threading.Event()
    handshake = threading.Event()

    def run(conn) -> None:
        if conn.record.index > 0:
            while not handshake.is_set():  # hold the ClientHello until the test says so
                conn.sleep(0.01)
        if not conn.server._handshake(conn):
            conn.close()
            return
        while (req := conn.read_request()) is not None:
            while not answer.is_set():
                conn.sleep(0.01)
            conn.send(http_response(200, b"done", [("X-Request-Target", req.target)]))
        conn.close()

    server = fault_server(Behavior("slow-handshake", run, auto_handshake=False), tls=certs.server)
    pool = make_pool(server.url("/"), connections=1, max_connections=2, verify=str(certs.ca))
    results: dict = {}

    def call(name: str) -> None:
        try:
            results[name] = pool.get(f"/{name}")
        except BaseException as exc:  # noqa: BLE001 - inspected below
            results[name] = exc

    busy = threading.Thread(target=call, args=("busy",), daemon=True)
    busy.start()
    server.wait_for_requests(1)
    late = threading.Thread(target=call, args=("late",), daemon=True)
    late.start()
    server.wait_for_connections(2)  # the late request's connection is in its handshake
    pool.close()
    handshake.set()
    answer.set()
    late.join(10)
    busy.join(10)
    assert not late.is_alive() and not busy.is_alive()
    assert isinstance(results["busy"], fastpool.Response)
    exc = results["late"]
    assert isinstance(exc, fastpool.PoolClosed), exc
    wait_until(lambda: all(c.done.is_set() for c in server.connections), what="closes")
    assert [q.target for q in server.requests] == ["/busy"]
    assert pool._policy.slots.total_open == 0
