"""Keep-alive: many requests on N connections open exactly N TCP connections; connections
the server closes (keepalive_requests, keepalive_timeout, silent closes) are replaced
without an error for requests that were never written, and TLS reconnects resume."""

from __future__ import annotations

import threading
import time

import pytest
from pool_helpers import (  # noqa: F401
    answer_then_close,
    nginx_mark,
    run_threads,
    tls_kwargs,
    wait_until,
)
from support.nginx import TICKER_BODY
from support.pools import is_async

N = 4


def _occupy_every_connection(pool, n: int) -> None:
    """n concurrent slow requests: each holds a different connection, so every connection
    of the pool carries a request (the access log then names each of them)."""
    barrier = threading.Barrier(n, timeout=10)

    def slow(i: int):
        barrier.wait()
        r = pool.get("/slow", params={"s": "0.3", "i": i})
        assert r.status_code == 200
        return r.headers["x-connection"]

    serials = run_threads(slow, n)
    assert len(set(serials)) == n, serials


@nginx_mark
@pytest.mark.parametrize("listener", ["plain", "tls"])
def test_ten_thousand_requests_on_four_connections(nginx_factory, certs, make_pool, listener):
    server = nginx_factory(keepalive_requests=100_000)
    if not server.has_echo:
        pytest.skip("nginx echo module not installed")
    lst = server.listeners[listener]
    pool = make_pool(server.url(listener, "/"), connections=N, **tls_kwargs(certs, lst.tls))
    _occupy_every_connection(pool, N)
    threads, per_thread, sequential = 8, 750, 4000  # 6000 threaded + 4000 sequential

    def hammer(t: int) -> int:
        for i in range(per_thread):
            r = pool.get("/api/v3/ticker", params={"t": t, "i": i})
            assert r.status_code == 200 and r.content == TICKER_BODY
        return per_thread

    assert sum(run_threads(hammer, threads, timeout=120)) == threads * per_thread
    for i in range(sequential):
        r = pool.get("/api/v3/ticker", params={"s": i})
        assert r.content == TICKER_BODY
    total = N + threads * per_thread + sequential
    entries = server.access_log.wait_for(total, timeout=10)
    assert len(entries) == total
    by_conn = server.access_log.connections()
    assert len(by_conn) == N, sorted(by_conn)
    for serial, reqs in by_conn.items():
        # one TCP connection each: request numbers on it run 1, 2, 3, ... without a gap
        assert [e.connection_requests for e in reqs] == list(range(1, len(reqs) + 1))
        assert len({e.remote_port for e in reqs}) == 1
    s = pool.stats()
    assert s["connects"] == N and s["reconnects"] == 0 and s["stale"] == 0
    assert s["requests"] == total and s["errors"] == 0 and s["retries"] == 0
    assert s["open"] == N and s["idle"] == N
    assert s["latency_ns"]["count"] == total
    assert 0 < s["latency_ns"]["min"] <= s["latency_ns"]["p50"] <= s["latency_ns"]["p99"] \
        <= s["latency_ns"]["max"]


@nginx_mark
@pytest.mark.parametrize("listener", ["plain", "tls12", "tls13"])
def test_keepalive_requests_limit_is_transparent(nginx_factory, certs, make_pool, listener):
    """nginx closes each connection after 100 requests (Connection: close on the 100th):
    no request fails, the pool replaces the connection, and TLS reconnects resume."""
    server = nginx_factory(keepalive_requests=100)
    lst = server.listeners[listener]
    pool = make_pool(server.url(listener, "/"), connections=2, **tls_kwargs(certs, lst.tls))
    count = 450
    for i in range(count):
        r = pool.get("/api/v3/order", params={"i": i})
        assert r.status_code == 200 and r.json()["uri"] == f"/api/v3/order?i={i}"
    entries = server.access_log.wait_for(count)
    by_conn = server.access_log.connections()
    assert all(len(reqs) <= 100 for reqs in by_conn.values())
    assert len(by_conn) >= 5  # 450 requests, at most 100 per connection
    # Each connection nginx closed (its 100th answer said so) is replaced in the background
    # (the last one perhaps only now). While one is replaced the other connection serves, so
    # the 450 may spread: at most two connections are left open under 100 at the end, hence
    # at least (450 - 2 x 99) / 100 closes.
    closed = sum(1 for reqs in by_conn.values() if len(reqs) == 100)
    assert closed >= 3
    wait_until(lambda: pool.stats()["reconnects"] >= closed,
               what=f"a replacement for each of the {closed} connections nginx closed")
    s = pool.stats()
    assert s["errors"] == 0 and s["requests"] == count
    assert s["connects"] == 2 + s["reconnects"]
    assert s["retries"] == 0  # every close was announced: nothing had to be sent again
    if lst.tls:
        # every reconnect resumed; only the initial connections (opened in parallel, before
        # any session existed) may have done a full handshake
        assert s["resumed"] >= s["reconnects"] >= closed
        full = [serial for serial, reqs in by_conn.items() if not reqs[0].ssl_session_reused]
        assert len(full) <= 2, full
        assert {e.ssl_protocol for e in entries} == {"TLSv1.2" if listener == "tls12" else "TLSv1.3"}


@nginx_mark
@pytest.mark.parametrize("listener", ["plain", "tls12", "tls13"])
def test_keepalive_timeout_closes_are_transparent(nginx_factory, certs, make_pool, listener):
    """nginx closes idle connections after 0.3 s: after sleeping past it, requests still
    succeed (the stale connections are detected before anything is written), counted as
    stale, and TLS reconnects resume the session."""
    server = nginx_factory(keepalive_timeout=0.3)
    lst = server.listeners[listener]
    pool = make_pool(server.url(listener, "/"), connections=2, **tls_kwargs(certs, lst.tls))
    first = pool.get("/api/v3/ticker")
    assert first.content == TICKER_BODY
    stale_total = 0
    for round_ in range(2):
        time.sleep(0.6)  # bounded: twice the server's idle timeout
        for i in range(3):
            r = pool.get("/api/v3/ticker", params={"r": round_, "i": i})
            assert r.status_code == 200 and r.content == TICKER_BODY
        s = pool.stats()
        assert s["errors"] == 0
        assert s["stale"] > stale_total
        stale_total = s["stale"]
    s = pool.stats()
    # (nginx applies keepalive_timeout only to connections that carried a request: a
    # connection the pool opened but never used stays open, so fewer may be replaced)
    assert s["reconnects"] >= 1 and s["stale"] >= 2
    if is_async(pool):  # most closes are seen while idle: nothing to move
        assert s["retries"] <= s["stale"]
    else:
        assert s["retries"] >= s["stale"]  # each stale connection's request moved once
    entries = server.access_log.wait_for(7)
    assert len(entries) == 7  # nothing was sent twice, nothing was lost
    if lst.tls:
        assert s["resumed"] >= s["reconnects"]
        by_conn = server.access_log.connections()
        full = [serial for serial, reqs in by_conn.items() if not reqs[0].ssl_session_reused]
        # only the initial connections (opened in parallel, so the second may already
        # resume the first's TLS 1.2 session) can have done a full handshake
        assert len(full) <= 2, full


@pytest.mark.parametrize("how", ["fin", "rst"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_stale_connection_closed_before_the_write_moves_transparently(
        fault_server, certs, make_pool, how, tls):
    """The server answers once per connection and then closes it (FIN or RST) while it is
    idle: the next request is detected as stale before a byte is written (NotSent) and goes
    on a fresh connection without the caller seeing anything."""
    close_now = threading.Event()
    server = fault_server(answer_then_close(close_now, how), tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    for i in range(4):
        r = pool.get(f"/r{i}")
        assert r.status_code == 200
        assert r.headers["x-request-target"] == f"/r{i}"
        served_on = server.connections[server.requests[-1].connection]
        close_now.set()  # the server closes the connection the response came on
        wait_until(served_on.done.is_set, what="the server to close the connection")
        close_now.clear()
    assert [(q.connection, q.index, q.target) for q in server.requests] == [
        (q.connection, 0, f"/r{i}") for i, q in enumerate(server.requests)]
    assert len({q.connection for q in server.requests}) == 4
    for rec in server.connections:
        assert rec.partial == b""  # no connection received the start of a second request
    s = pool.stats()
    assert s["errors"] == 0 and s["requests"] == 4
    if is_async(pool):
        # Every close is seen by the connection's reader, the last one too; a request
        # that took the connection before the loop saw the close moved (NotSent).
        wait_until(lambda: pool.stats()["stale"] == 4, what="the last close to be seen")
        s = pool.stats()
        assert s["reconnects"] >= 3 and s["retries"] <= 3
    else:
        assert s["stale"] == 3 and s["reconnects"] >= 3 and s["retries"] == 3


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_idle_connection_that_receives_unsolicited_bytes_is_not_reused(
        fault_server, certs, make_pool, tls):
    """A connection on which the server sent bytes after the response is not trusted with
    another request."""
    from support.faults import extra_bytes

    server = fault_server(extra_bytes(), tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    assert pool.get("/one").status_code == 200
    r = pool.get("/two")
    assert r.status_code == 200 and r.content == b'{"ok":true}'  # a real response
    assert [(q.connection, q.index) for q in server.requests] == [(0, 0), (1, 0)]
    assert pool.stats()["errors"] == 0


@pytest.mark.parametrize("fault", ["close_on_accept", "reset_on_accept"])
def test_every_connection_closed_by_the_server(fault_server, make_pool, fault):
    """The server closes (or resets) every connection as soon as it accepts it. Usually the
    pool is built (TCP connects complete in the kernel), its idle connections are all stale,
    and a request walks past all of them and fails, typed, on the fresh connection it opens;
    the server never receives a byte of it, with or without retries. When a reset arrives
    before the connect is confirmed, construction itself fails with ConnectError (NotSent):
    that is the other correct outcome of the race."""
    from support import faults

    import fastpool

    server = fault_server(getattr(faults, fault)(), max_connections=64)
    try:
        pool = make_pool(server.url("/"), connections=3)
    except fastpool.ConnectError as exc:
        assert fault == "reset_on_accept" and isinstance(exc, fastpool.NotSentError)
        assert server.received == b""
        return
    server.wait_for_connections(3)
    wait_until(lambda: all(c.done.is_set() for c in server.connections), what="closes")
    for method, retries in (("GET", 0), ("GET", 3), ("POST", 3)):
        with pytest.raises(fastpool.FastpoolError) as info:
            pool.request(method, "/x", retries=retries)
        exc = info.value
        assert isinstance(exc, fastpool.NotSentError) != isinstance(exc, fastpool.MaybeSentError)
    assert server.received == b"" and server.requests == []
    assert pool.stats()["stale"] >= 3
