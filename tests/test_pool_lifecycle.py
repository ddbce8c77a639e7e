"""Connections that stay hot: keep-warm, rotation (max_lifetime, max_requests, rotate()), the
reserved lane, TCP keepalive, outages. Every driver (Pool, AsyncPool on asyncio and uvloop),
both engines, real servers on loopback."""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest
from conftest import load_server
from pool_helpers import tls_kwargs, wait_until
from support import faults
from support.pools import on_pool_thread, serving_count, waiting_requests

import fastpool


def _targets(server) -> list:
    return [r.target for r in server.requests]


def _gate(release: threading.Event, close_on: str = "") -> faults.Behavior:
    """Answers at once, except /hold (waits for release); closes on `close_on`."""

    def run(conn: faults.FaultConnection) -> None:
        while (req := conn.read_request()) is not None:
            if close_on and req.target == close_on:
                conn.close()
                return
            if req.target == "/hold":
                while not release.is_set() and not conn.stopping:
                    conn.sleep(0.01)
            conn.send(faults.http_response(200, req.target.encode()))
        conn.close()

    return faults.Behavior("gate", run)


# ---- keep-warm ------------------------------------------------------------------------------


def test_keep_warm_pings_every_idle_connection(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url(), connections=2,
                     keep_warm=fastpool.KeepWarm("/api/v3/ping", every=0.2))
    wait_until(lambda: pool.stats()["pings"] >= 6, timeout=10, what="three rounds of pings")
    pings = [r for c in server.connections for r in c.requests if r.target == "/api/v3/ping"]
    assert len({id(c) for c in server.connections if c.requests}) == 2  # both connections
    assert all(r.method == "GET" for r in pings)
    assert pool.get("/x").status_code == 200
    stats = pool.stats()
    assert stats["ping_failures"] == 0 and stats["connects"] == 2 and stats["errors"] == 0
    assert stats["requests"] == 1  # pings are not counted as the caller's requests


def test_keep_warm_outlives_the_servers_idle_timeout(make_pool):
    server = load_server()(idle_timeout_ms=600).start()
    try:
        warm = make_pool(server.url, connections=2,
                         keep_warm=fastpool.KeepWarm("/ping", every=0.2))
        time.sleep(1.6)  # more than twice the server's idle timeout, no request
        assert warm.get("/order").status_code == 200
        stats = warm.stats()
        assert stats["reconnects"] == 0 and stats["stale"] == 0 and stats["pings"] >= 8
        # the control: without keep-warm the server reaps them
        cold = make_pool(server.url, connections=1)
        time.sleep(1.0)
        assert cold.get("/order").status_code == 200
        s = cold.stats()
        assert s["stale"] + s["reconnects"] >= 1
    finally:
        server.stop()


def test_a_failed_ping_replaces_the_connection_quietly(fault_server, make_pool):
    server = fault_server(_gate(threading.Event(), close_on="/ping"))
    pool = make_pool(server.url(), connections=1, keep_warm=fastpool.KeepWarm("/ping", every=0.1))
    wait_until(lambda: pool.stats()["ping_failures"] >= 2, timeout=10, what="failed pings")
    assert pool.get("/x").content == b"/x"
    stats = pool.stats()
    assert stats["errors"] == 0 and stats["connects"] >= 3


def test_keep_warm_validation():
    for bad in (dict(path=""), dict(path="/p", every=0), dict(path="/p", every=float("nan")),
                dict(path="/p", method="POST")):
        with pytest.raises(ValueError):
            fastpool.KeepWarm(**bad)
    with pytest.raises(TypeError):
        fastpool.Pool("http://127.0.0.1:1", keep_warm="/ping")


# ---- rotation -------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_max_lifetime_rotates_make_before_break(fault_server, certs, make_pool, tls):
    server = fault_server(faults.respond(), tls=certs.server if tls else None)
    pool = make_pool(server.url(), connections=2, max_lifetime=0.3, **tls_kwargs(certs, tls))
    fewest = 2
    deadline = time.monotonic() + 10
    while pool.stats()["rotations"] < 4 and time.monotonic() < deadline:
        fewest = min(fewest, serving_count(pool))
        time.sleep(0.01)
    stats = pool.stats()
    assert stats["rotations"] >= 4, stats
    # Capacity never dipped: the old one served until the new was open. (A new connection is
    # checked once, off its idle stack for microseconds, 200 ms after it opened: counted.)
    assert fewest == 2
    assert stats["reconnects"] == 0 and stats["errors"] == 0
    if tls:
        assert stats["resumed"] >= stats["rotations"]  # replacements resume the TLS session
    assert pool.get("/x").status_code == 200


def test_max_requests_rotates_after_the_budget(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url(), connections=1, max_requests=4)
    for i in range(20):
        assert pool.get(f"/r{i}").status_code == 200
    wait_until(lambda: pool.stats()["rotations"] >= 4, timeout=10, what="rotations")
    per_connection = [len(c.requests) for c in server.connections if c.requests]
    assert max(per_connection) <= 4 and len(per_connection) >= 5
    assert pool.stats()["errors"] == 0


def test_rotate_replaces_every_connection_now(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url(), connections=3)
    pool.get("/before")
    pool.rotate()
    wait_until(lambda: pool.stats()["rotations"] == 3, timeout=10, what="three rotations")
    server.wait_for_connections(6)
    assert pool.get("/after").status_code == 200
    wait_until(lambda: sum(not c.done.is_set() for c in server.connections) == 3,
               what="the three old connections to be closed")
    assert pool.stats()["open"] == 3


# ---- the reserved lane ----------------------------------------------------------------------


def test_priority_requests_use_the_reserved_lane_while_polling_holds_the_rest(fault_server,
                                                                                make_pool):
    release = threading.Event()
    server = fault_server(_gate(release))
    pool = make_pool(server.url(), connections=1, reserved=1,
                     timeout=fastpool.Timeout(10, pool=0.3))
    holder = threading.Thread(target=lambda: pool.get("/hold"), daemon=True)
    holder.start()
    server.wait_for_requests(1)
    try:
        with pytest.raises(fastpool.PoolTimeout):
            pool.get("/poll")  # ordinary: the reserved connection is not for it
        assert pool.post("/order", content=b"x", priority=True).content == b"/order"
    finally:
        release.set()
        holder.join(10)
    assert "/poll" not in _targets(server)
    assert pool.stats()["open"] == 2


def test_priority_waiters_go_before_ordinary_ones(fault_server, make_pool):
    release = threading.Event()
    server = fault_server(_gate(release))
    pool = make_pool(server.url(), connections=1, timeout=10)
    threads = [threading.Thread(target=lambda: pool.get("/hold"), daemon=True)]
    threads[0].start()
    server.wait_for_requests(1)
    for i, (path, prio) in enumerate([("/w0", False), ("/w1", False), ("/cancel", True)]):
        t = threading.Thread(target=lambda p=path, q=prio: pool.get(p, priority=q), daemon=True)
        t.start()
        threads.append(t)
        wait_until(lambda i=i: waiting_requests(pool) == i + 1, what="the waiter to queue")
    release.set()
    for t in threads:
        t.join(10)
    assert _targets(server) == ["/hold", "/cancel", "/w0", "/w1"]


# ---- TCP keepalive, outages, logging --------------------------------------------------------


def test_tcp_keepalive_is_set_on_every_connection(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url(), connections=2, tcp_keepalive=30)

    def options() -> list:
        out = []
        for conn in pool._policy.connections():
            s = socket.socket(fileno=socket.dup(conn.fileno()))
            try:
                out.append((s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)))
            finally:
                s.close()
        return out

    assert on_pool_thread(pool, options) == [(1, 30), (1, 30)]
    with pytest.raises(ValueError):
        make_pool(server.url(), connections=1, tcp_keepalive=0)


def test_during_an_outage_requests_fail_fast_not_sent(make_pool):
    server = load_server()().start()
    port = server.port
    pool = make_pool(server.url, connections=1, timeout=fastpool.Timeout(5, connect=1.0))
    assert pool.get("/up").status_code == 200
    server.stop()
    outage = None
    deadline = time.monotonic() + 5
    while outage is None and time.monotonic() < deadline:
        try:
            pool.get("/down")
        except fastpool.OutageError as exc:
            outage = exc
        except fastpool.FastpoolError:
            pass
        time.sleep(0.02)
    assert isinstance(outage, fastpool.NotSentError) and "unreachable" in str(outage)
    t0 = time.monotonic()
    with pytest.raises(fastpool.NotSentError):
        pool.post("/order", content=b"x")
    assert time.monotonic() - t0 < 0.5  # at once, not a connect attempt per request
    back = load_server()(port=port).start()
    try:
        wait_until(lambda: pool.stats()["idle"] == 1, timeout=10, what="recovery")
        assert pool.get("/back").status_code == 200
    finally:
        back.stop()


def test_lifecycle_events_are_logged(fault_server, make_pool, caplog):
    server = fault_server(_gate(threading.Event(), close_on="/ping"))
    with caplog.at_level(logging.DEBUG, logger="fastpool"):
        pool = make_pool(server.url(), connections=1,
                         keep_warm=fastpool.KeepWarm("/ping", every=0.1))
        wait_until(lambda: pool.stats()["ping_failures"] >= 1 and pool.stats()["idle"] == 1,
                   timeout=10, what="a failed ping and its replacement")

        def messages() -> list:
            return [r.getMessage() for r in caplog.records if r.name == "fastpool"]

        # (a driver logs after it let go of its lock: the stats can show an event first)
        wait_until(lambda: any("keep-warm request" in m and "replaced" in m
                               for m in messages()), what="the failed ping's log line")
        wait_until(lambda: any(m.startswith("opened ") for m in messages()),
                   what="the replacement's log line")
