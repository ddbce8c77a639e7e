"""Read and write timeouts across requests on one connection (sync pool, both engines).

The C engine keeps a kernel timeout armed between requests and changes it only when it must
shrink or is far too short (a total deadline would otherwise cost a setsockopt per request);
a wait that ends on a shorter armed value must go on, never surface as a false timeout.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
from pool_helpers import tls_kwargs, wait_until
from support import faults
from support.pools import is_async

import fastpool


def _delays(*ms: float) -> faults.Behavior:
    """Answers the i-th request on a connection after ms[i] milliseconds (0 after the list)."""

    def run(conn: faults.FaultConnection) -> None:
        i = 0
        while conn.read_request() is not None:
            if i < len(ms):
                conn.sleep(ms[i] / 1000)
            conn.send(faults.http_response(200, f"r{i}".encode(), [("X-I", str(i))]))
            i += 1
        conn.close()

    return faults.Behavior("delays", run)


def test_longer_timeout_after_a_shorter_one_is_not_cut_short(fault_server, make_pool):
    server = fault_server(_delays(0, 0, 700))
    pool = make_pool(server.url(), connections=1)
    assert pool.get("/a", timeout=5).content == b"r0"
    assert pool.get("/b", timeout=0.5).content == b"r1"   # the kernel timeout now 0.5 s
    t0 = time.monotonic()
    r = pool.get("/c", timeout=0.9)                      # 0.5 >= 0.9/2: kept, wakes early
    assert r.content == b"r2" and time.monotonic() - t0 >= 0.65
    assert pool.stats()["connects"] == 1 and pool.stats()["errors"] == 0


def test_total_deadline_across_requests_times_out_when_due(fault_server, make_pool):
    server = fault_server(_delays(0, 0, 0, 600))
    pool = make_pool(server.url(), connections=1, timeout=fastpool.Timeout(5, total=0.4))
    for path in ("/a", "/b", "/c"):
        assert pool.get(path).status_code == 200
    t0 = time.monotonic()
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/d")
    elapsed = time.monotonic() - t0
    assert 0.35 <= elapsed < 2.0
    assert "total deadline" in str(info.value)
    assert isinstance(info.value, fastpool.MaybeSentError)


def test_read_timeout_after_longer_ones_is_still_enforced(fault_server, make_pool):
    server = fault_server(_delays(0, 0, 800))
    pool = make_pool(server.url(), connections=1)
    pool.get("/a", timeout=5)
    pool.get("/b", timeout=5)
    t0 = time.monotonic()
    with pytest.raises(fastpool.ReadTimeout):
        pool.get("/c", timeout=0.3)                      # must shrink the armed 5 s
    assert time.monotonic() - t0 < 0.7


def test_a_close_is_caught_before_the_write_whatever_stale_check_after_says(fault_server,
                                                                              make_pool):
    """The engine checks every connection before it writes (a poll(0), issue 10 #1): a
    server's close on a connection used moments ago is seen before any byte goes out, and
    the request moves to a new connection (NotSent, transparent). stale_check_after no longer
    skips it."""
    # The server closes each connection right after its first response, unannounced.
    server = fault_server(faults.stale_after(1, when="after_response"))
    with pytest.warns(DeprecationWarning, match="stale_check_after"):
        legacy = make_pool(server.url(), connections=1, stale_check_after=60.0)
    for pool in (make_pool(server.url(), connections=1), legacy):
        pool.get("/a")
        time.sleep(0.05)  # the FIN arrives
        assert pool.post("/b", content=b"x").status_code == 200
        if is_async(pool):  # its reader sees the second connection's close as well
            wait_until(lambda: pool.stats()["stale"] == 2, what="the second close")
        else:
            assert pool.stats()["stale"] == 1
    assert sorted(r.target for r in server.requests) == ["/a", "/a", "/b", "/b"]


def test_stale_check_after_must_be_seconds(fault_server, make_pool):
    server = fault_server(faults.respond())
    for bad in (-1, "1", True):
        with pytest.raises(ValueError):
            make_pool(server.url(), connections=1, stale_check_after=bad)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_signals_during_a_wait_are_not_timeouts(fault_server, certs, make_pool, tls):
    """A blocking read or write with a kernel timeout (SO_RCVTIMEO) is not restarted after a
    signal handler ran: it fails with EINTR, which OpenSSL's socket BIO reports as "retry"
    like a timeout. The wait must go on, not surface as a ReadTimeout (CPython's own
    handlers, SIGCHLD of a subprocess, a profiler's SIGPROF all do this)."""
    server = fault_server(faults.delay(300), tls=certs.server if tls else None)
    pool = make_pool(server.url(), connections=1, timeout=fastpool.Timeout(5.0, read=2.0),
                     **tls_kwargs(certs, tls))
    assert pool.get("/warm").status_code == 200
    delivered = []
    previous = signal.signal(signal.SIGUSR1, lambda *_: delivered.append(1))
    stop = threading.Event()

    def interrupt() -> None:  # bounded: until the request ends, at most 10 s
        deadline = time.monotonic() + 10
        while not stop.wait(0.01) and time.monotonic() < deadline:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)

    sender = threading.Thread(target=interrupt, daemon=True)
    try:
        sender.start()
        for i in range(2):
            r = pool.get(f"/r{i}")
            assert r.status_code == 200 and r.content == faults.DEFAULT_BODY
    finally:
        stop.set()
        sender.join(10)
        signal.signal(signal.SIGUSR1, previous)
    assert delivered  # the signals did arrive during the waits
    s = pool.stats()
    assert s["errors"] == 0 and s["timeouts"] == 0 and s["connects"] == 1


def test_a_shorter_timeout_parked_after_a_longer_one_expires_first(fault_server, make_pool):
    """Each waiting request keeps its own timeout: a short read timeout that starts while
    another request waits with a long one expires on its own schedule, and the long one
    still gets its response (whatever mechanism times the waits)."""
    server = fault_server(faults.delay(1500))
    pool = make_pool(server.url(), connections=2)
    outcome: list = []

    def long_wait() -> None:
        try:
            outcome.append(pool.get("/long", timeout=fastpool.Timeout(5.0, read=4.0)))
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    waiter = threading.Thread(target=long_wait, daemon=True)
    waiter.start()
    server.wait_for_requests(1)
    started = time.monotonic()
    with pytest.raises(fastpool.ReadTimeout):
        pool.get("/short", timeout=fastpool.Timeout(5.0, read=0.2))
    assert time.monotonic() - started < 1.2  # its own 0.2 s, not the other's 4 s or the 1.5 s
    waiter.join(10)
    (r,) = outcome
    assert isinstance(r, fastpool.Response) and r.status_code == 200
    s = pool.stats()
    assert s["timeouts"] == 1 and s["requests"] >= 1
