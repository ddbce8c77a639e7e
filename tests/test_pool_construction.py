"""Construction opens (and TLS-handshakes) ``connections`` connections before it returns; a
failure closes the ones that did open and raises the typed error; the background refill
and the pool's lifecycle leak nothing and never leave a waiting request behind."""

from __future__ import annotations

import socket
import threading

import pytest
from pool_helpers import fd_count, nginx_mark, tls_kwargs, wait_until  # noqa: F401
from support.faults import Behavior, handshake_close, http_response, respond
from support.pools import idle_connections, is_async, on_pool_thread, open_count
from support.ports import free_port

import fastpool

TLS_IDS = ["plain", "tls"]


def _refill_threads() -> list:
    return [t for t in threading.enumerate() if t.name == "fastpool-maintenance" and t.is_alive()]


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
@pytest.mark.parametrize("n", [1, 3, 8])
def test_construction_opens_every_connection_before_returning(fault_server, certs, make_pool,
                                                              tls, n):
    server = fault_server(respond(), tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=n, **tls_kwargs(certs, tls))
    # Before any request: n connected sockets, each already past its TLS handshake.
    idle = on_pool_thread(pool, lambda: [(c.fileno(), c.tls_version)
                                         for c in pool._policy.connections()])
    assert len(idle) == n
    for fileno, tls_version in idle:
        sock = socket.socket(fileno=socket.dup(fileno))
        try:
            assert sock.getpeername()[:2] == ("127.0.0.1", server.port)
        finally:
            sock.close()
        assert tls_version == ("TLSv1.3" if tls else "")
    server.wait_for_connections(n)
    if tls:
        wait_until(lambda: all(c.tls_version for c in server.connections),
                   what="the server's side of every handshake")
    assert server.connection_count == n and server.requests == []
    s = pool.stats()
    assert s["connects"] == n and s["open"] == n and s["idle"] == n
    assert s["reconnects"] == 0 and s["requests"] == 0
    # and the first request uses one of them: no connection is opened for it
    assert pool.get("/first").status_code == 200
    assert server.connection_count == n and pool.stats()["connects"] == n


@nginx_mark
@pytest.mark.parametrize("listener", ["plain", "tls12", "tls13"])
def test_construction_against_nginx_is_pre_handshaked(nginx, certs, make_pool, listener):
    lst = nginx.listeners[listener]
    mark = nginx.access_log.mark()
    pool = make_pool(nginx.url(listener, "/"), connections=4, **tls_kwargs(certs, lst.tls))
    expected = {"plain": "", "tls12": "TLSv1.2", "tls13": "TLSv1.3"}[listener]
    versions = on_pool_thread(pool, lambda: [c.tls_version for c in pool._policy.connections()])
    assert versions == [expected] * 4
    # no request was needed for any of it (other tests' lines may still arrive: by port)
    assert [e for e in nginx.access_log.entries(mark) if e.server_port == lst.port] == []
    r = pool.get("/api/v3/ticker")
    assert r.headers["x-connection-requests"] == "1"


def test_failure_during_construction_closes_the_opened_connections(fault_server, certs,
                                                                   make_pool):
    server = fault_server(respond(), tls=certs.server, max_connections=2)
    before_fds = fd_count()
    before_threads = len(_refill_threads())
    with pytest.raises(fastpool.TLSError) as info:
        make_pool(server.url("/"), connections=4, verify=str(certs.ca))
    assert isinstance(info.value, fastpool.NotSentError)
    assert server.rejected >= 1
    # the two connections that did open were closed by the pool: the server sees EOF
    wait_until(lambda: server.connection_count == 2 and all(
        c.done.is_set() for c in server.connections), what="the opened connections to close")
    assert all(c.peer_closed for c in server.connections)
    assert server.requests == []
    wait_until(lambda: fd_count() <= before_fds, timeout=5, what="no leaked descriptors")
    assert len(_refill_threads()) == before_threads


@pytest.mark.parametrize("case", ["refused", "verify", "handshake-close"])
def test_failed_construction_leaks_no_descriptor(fault_server, certs, make_pool, case):
    if case == "refused":
        url, kwargs, exc_type = f"http://127.0.0.1:{free_port()}/", {}, fastpool.ConnectError
    elif case == "verify":
        server = fault_server(respond(), tls=certs.self_signed)
        url, kwargs, exc_type = server.url("/"), {"verify": str(certs.ca)}, fastpool.TLSError
    else:
        server = fault_server(handshake_close(), tls=certs.server)
        url, kwargs, exc_type = server.url("/"), {"verify": str(certs.ca)}, fastpool.TLSError
    before = fd_count()
    for _ in range(5):
        with pytest.raises(exc_type):
            make_pool(url, connections=4, **kwargs)
    wait_until(lambda: fd_count() <= before, timeout=5, what="no leaked descriptors")


def test_pools_opened_and_closed_leak_nothing(fault_server, certs, make_pool):
    server = fault_server(respond(), tls=certs.server, max_connections=128)
    before_fds = fd_count()
    before_threads = threading.active_count()
    for i in range(10):
        with make_pool(server.url("/"), connections=3, verify=str(certs.ca)) as pool:
            assert pool.get(f"/p{i}").status_code == 200
    wait_until(lambda: all(c.done.is_set() for c in server.connections), what="closes")
    wait_until(lambda: fd_count() <= before_fds, timeout=5, what="no leaked descriptors")
    wait_until(lambda: threading.active_count() <= before_threads, timeout=5,
               what="no leftover threads")
    assert server.connection_count == 30 and len(server.requests) == 10


def test_context_manager_closes_every_connection(fault_server, make_pool, pool_mode):
    server = fault_server(respond())
    with make_pool(server.url("/"), connections=3) as pool:
        kind = "Pool" if pool_mode == "sync" else "AsyncPool"
        assert repr(pool).startswith(f"<{kind} http://127.0.0.1:")
        assert "open=3" in repr(pool) and pool.engine in repr(pool)
        pool.get("/x")
    assert pool.closed
    wait_until(lambda: server.connection_count == 3 and all(
        c.done.is_set() and c.peer_closed for c in server.connections),
        what="every connection closed by the pool")


def test_dropped_connection_is_refilled_in_the_background(fault_server, make_pool):
    """A connection lost to an error is replaced without a request having to wait for it."""
    from support.faults import close_after_request

    fail_first = close_after_request()
    ok = respond()

    def run(conn) -> None:
        (fail_first if conn.record.index == 0 else ok)(conn)

    server = fault_server(Behavior("first-fails", run))
    pool = make_pool(server.url("/"), connections=1)
    with pytest.raises(fastpool.ServerDisconnected):
        pool.get("/lost")
    # no request is made: the refill thread reopens the connection by itself
    wait_until(lambda: pool.stats()["idle"] == 1, what="the background refill")
    s = pool.stats()
    assert s["reconnects"] == 1 and s["open"] == 1
    server.wait_for_connections(2)  # (the server's accept loop may lag the kernel's)
    assert server.connection_count == 2


# --- the background refill and waiting requests ---------------------------------------------


def _stall_after_first(first_requests: int) -> Behavior:
    """TLS server: connection 0 handshakes and answers ``first_requests`` requests, then
    reads one more and never answers it. Every later connection stalls its handshake (reads
    the ClientHello, never answers), so reconnects fail with a connect timeout."""

    def run(conn) -> None:
        if conn.record.index == 0:
            if not conn.server._handshake(conn):
                conn.close()
                return
            for _ in range(first_requests):
                req = conn.read_request()
                if req is None:
                    conn.close()
                    return
                conn.send(http_response(200, b"ok", [("X-Request-Target", req.target)]))
            conn.read_request()
            conn.hold(3.0)
        else:
            conn.read_raw()
            conn.hold(3.0)
        conn.close()

    return Behavior("stall-after-first", run, auto_handshake=False)


def test_request_waiting_for_a_slot_the_refill_holds_is_woken_when_the_refill_fails(
        fault_server, certs, make_pool):
    """connections=1. The connection is lost (read timeout); the background refill takes
    the only slot and its handshake stalls. A request arriving now waits for the slot (no
    pool timeout). When the refill's attempt fails and frees the slot, the waiting request
    must get it (and fail typed on its own attempt) instead of sleeping on."""
    server = fault_server(_stall_after_first(1), tls=certs.server, max_connections=64)
    pool = make_pool(server.url("/"), connections=1, verify=str(certs.ca),
                     timeout=fastpool.Timeout(5.0, connect=0.3, read=0.2, pool=None))
    assert pool.get("/1").status_code == 200
    with pytest.raises(fastpool.ReadTimeout):
        pool.get("/2")
    # the refill thread has reserved the slot and is stuck in its handshake
    server.wait_for_connections(2)
    assert open_count(pool) == 1 and idle_connections(pool) == []
    outcome: list = []

    def waiting_request() -> None:
        try:
            outcome.append(pool.get("/3"))
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    t = threading.Thread(target=waiting_request, daemon=True)
    t.start()
    t.join(6.0)  # bounded: the refill fails after 0.3 s, the request's own attempt 0.3 s later
    hung = t.is_alive()
    if hung:
        pool.close()  # releases the waiter with PoolClosed
        t.join(5.0)
    assert not hung, "the request still waits for a slot the failed refill gave back"
    (exc,) = outcome
    assert isinstance(exc, fastpool.ConnectTimeout), exc
    assert isinstance(exc, fastpool.NotSentError)
    assert [q.target for q in server.requests] == ["/1", "/2"]


def test_pool_timeout_is_counted_in_stats(fault_server, make_pool):
    gate = threading.Event()

    def run(conn) -> None:
        while (req := conn.read_request()) is not None:
            while not gate.is_set():
                conn.sleep(0.01)
            conn.send(http_response(200, b"ok", [("X-Request-Target", req.target)]))
        conn.close()

    server = fault_server(Behavior("gated", run))
    pool = make_pool(server.url("/"), connections=1,
                     timeout=fastpool.Timeout(5.0, pool=0.05))
    busy = threading.Thread(target=lambda: pool.get("/busy"), daemon=True)
    busy.start()
    server.wait_for_requests(1)
    with pytest.raises(fastpool.PoolTimeout):
        pool.get("/waits")
    gate.set()
    busy.join(10)
    s = pool.stats()
    assert s["requests"] == 1
    # "errors: requests that raised", "timeouts: requests that raised a timeout"
    assert s["errors"] == 1 and s["timeouts"] == 1, s


def test_connect_error_of_a_request_is_counted_in_stats(fault_server, make_pool):
    """The server goes away: the idle connection is stale, the replacement is refused. The
    request fails NotSent (ConnectError) and counts as an error."""
    server = fault_server(respond())
    pool = make_pool(server.url("/"), connections=1)
    assert pool.get("/a").status_code == 200
    server.close()
    wait_until(lambda: all(c.done.is_set() for c in server.connections), what="server gone")
    with pytest.raises(fastpool.ConnectError) as info:
        pool.get("/b")
    assert isinstance(info.value, fastpool.NotSentError)
    assert not isinstance(info.value, fastpool.StaleConnection)
    s = pool.stats()
    # (an AsyncPool's refill may reconnect once more before the listener is gone, and see
    # that connection closed too)
    assert (s["stale"] >= 1 if is_async(pool) else s["stale"] == 1) and s["errors"] == 1, s
