"""Busy-poll (Pool(busy_poll=seconds), csrc/fp_conn.h): the sync Pool on the C engine spins
on the non-blocking socket before each blocking read sleeps. Answers are the same with it,
the read timeout and the total deadline end the exchange as without it (the spin counts
against them), an answer that comes after the spin is still read, and where the pool cannot
spin (AsyncPool, the pure engine) it refuses the setting instead of ignoring it."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import load_engine
from pool_helpers import tls_kwargs
from support import faults
from support.pools import is_async

import fastpool


@pytest.fixture
def c_pool(certs):
    """``c_pool(server, **Pool kwargs)`` -> a sync Pool on the C engine (the only one that
    spins) for a FaultServer, verified against the test CA when it speaks TLS; all closed
    at teardown."""
    load_engine("c")
    made: list[fastpool.Pool] = []

    def make(server: faults.FaultServer, **kwargs) -> fastpool.Pool:
        kwargs.setdefault("connections", 1)
        pool = fastpool.Pool(server.url(), engine="c",
                             **tls_kwargs(certs, server.tls_context is not None), **kwargs)
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close()


def _tls(certs, tls: bool):
    return certs.server if tls else None


def _spin_of(pool: fastpool.Pool) -> list[int]:
    return [conn.busy_poll_ns for conn in pool._policy.connections()]


def _pieces(gap: float) -> faults.Behavior:
    """Answers each request in two writes `gap` seconds apart (head, then body): the
    response needs a second wait, which spins again."""

    def run(conn: faults.FaultConnection) -> None:
        while (req := conn.read_request()) is not None:
            whole = faults.http_response(200, f"piece-{req.index}".encode() * 50)
            cut = whole.index(b"\r\n\r\n") + 4
            conn.send(whole[:cut])
            conn.sleep(gap)
            conn.send(whole[cut:])
        conn.close()

    return faults.Behavior("pieces", run)


# ---- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
@pytest.mark.parametrize("busy", [20e-6, 0.2])
def test_answers_are_the_same_with_busy_poll(fault_server, c_pool, certs, tls, busy):
    server = fault_server(faults.respond(body=b'{"price":"1.5"}'), tls=_tls(certs, tls))
    pool = c_pool(server, busy_poll=busy)
    assert _spin_of(pool) == [int(busy * 1e9)]
    for i in range(20):
        r = pool.get("/api/v3/ticker", params={"i": i})
        assert r.status_code == 200 and r.json() == {"price": "1.5"}
        assert r.headers["x-request-target"] == f"/api/v3/ticker?i={i}"
    r = pool.post("/api/v3/order", content=b"x")
    assert r.headers["x-request-index"] == "20"
    stats = pool.stats()
    assert stats["connects"] == 1 and stats["errors"] == 0, stats


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_an_answer_after_the_spin_ended_is_still_read(fault_server, c_pool, certs, tls):
    # 1 ms of spin, then the read sleeps in the kernel until the answer comes at 150 ms.
    server = fault_server(faults.delay(150, body=b"late"), tls=_tls(certs, tls))
    pool = c_pool(server, busy_poll=1e-3, timeout=5)
    for _ in range(2):
        assert pool.get("/late").content == b"late"
    assert pool.stats()["connects"] == 1


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_response_in_pieces_spins_again_and_completes(fault_server, c_pool, certs, tls):
    server = fault_server(_pieces(0.05), tls=_tls(certs, tls))
    pool = c_pool(server, busy_poll=0.01, timeout=fastpool.Timeout(5, read=1.0))
    for i in range(3):
        assert pool.get("/p").content == f"piece-{i}".encode() * 50
    assert pool.stats()["connects"] == 1


def test_the_spin_uses_the_cpu_and_without_it_the_wait_does_not(fault_server, c_pool):
    """What makes busy-poll busy: the waiting thread runs through the server's delay (CPU
    time of the same order), where a sleeping read costs next to none. Bounds are loose on
    purpose (a loaded machine gives the spinning thread only a share of a core)."""
    server = fault_server(faults.delay(300))
    spinning = c_pool(server, busy_poll=2.0, timeout=5)
    sleeping = c_pool(server, timeout=5)
    used = {}
    for name, pool in (("spin", spinning), ("sleep", sleeping)):
        pool.get("/warm")
        t0 = time.thread_time()
        assert pool.get("/wait").status_code == 200
        used[name] = time.thread_time() - t0
    assert used["spin"] >= 0.015, used
    assert used["sleep"] < 0.015, used


# ---- the limits hold ----------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_read_timeout_cuts_a_longer_spin(fault_server, c_pool, certs, tls):
    server = fault_server(faults.stall_after_request(), tls=_tls(certs, tls))
    pool = c_pool(server, busy_poll=2.0, timeout=fastpool.Timeout(5, read=0.1))
    t0 = time.monotonic()
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/stall")
    # Ends at the read timeout, not after the 2 s of spin (a loose bound between the two).
    assert time.monotonic() - t0 < 1.5
    assert isinstance(info.value, fastpool.MaybeSentError)
    assert "total deadline" not in str(info.value)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_total_deadline_cuts_a_longer_spin(fault_server, c_pool, certs, tls):
    server = fault_server(faults.stall_after_request(), tls=_tls(certs, tls))
    pool = c_pool(server, busy_poll=2.0, timeout=fastpool.Timeout(5, total=0.2))
    t0 = time.monotonic()
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/stall")
    assert time.monotonic() - t0 < 1.5
    assert isinstance(info.value, fastpool.MaybeSentError)
    assert "total deadline" in str(info.value)


def test_read_timeout_counts_the_spin_between_pieces(fault_server, c_pool):
    # The body comes 0.6 s after the head: a silence longer than read=0.2, spin or not.
    server = fault_server(_pieces(0.6))
    pool = c_pool(server, busy_poll=2.0, timeout=fastpool.Timeout(5, read=0.2))
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/p")
    assert isinstance(info.value, fastpool.MaybeSentError)


class _Interrupt(KeyboardInterrupt):
    pass


def test_a_signal_after_the_spin_interrupts_the_wait(fault_server, c_pool):
    """The spin is short (1 ms); the alarm comes while the read sleeps, which returns EINTR:
    the handler's exception surfaces at once, marked maybe-sent, and the pool goes on."""
    server = fault_server(faults.delay(3000))

    def handler(signum, frame):
        raise _Interrupt()

    previous = signal.signal(signal.SIGALRM, handler)
    pool = c_pool(server, busy_poll=1e-3, timeout=10)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(_Interrupt) as info:
            pool.get("/slow")
        assert time.monotonic() - t0 < 2.5  # before the 3 s answer
        assert isinstance(getattr(info.value, "fastpool_error", None),
                          fastpool.InterruptedMaybeSent)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ---- the setting ----------------------------------------------------------------------------


@pytest.mark.parametrize("value, error", [
    (-1e-6, ValueError), (float("nan"), ValueError), (float("inf"), ValueError),
    ("50us", TypeError), (True, TypeError), ([50e-6], TypeError),
])
def test_bad_values_are_refused(fault_server, make_pool, value, error):
    server = fault_server(faults.respond())
    with pytest.raises(error, match="busy_poll"):
        make_pool(server.url(), connections=1, busy_poll=value)


@pytest.mark.parametrize("value", [None, 0, 0.0])
def test_off_is_accepted_everywhere(fault_server, make_pool, value):
    server = fault_server(faults.respond())
    pool = make_pool(server.url(), connections=1, busy_poll=value)
    assert pool.get("/").status_code == 200
    if pool.engine == "c" and not is_async(pool):
        assert _spin_of(pool) == [0]


def test_on_only_where_it_spins(fault_server, make_pool, engine_name, pool_mode):
    """The sync Pool on the C engine spins; AsyncPool (the event loop would stall) and the
    pure engine (it would spin holding the GIL) refuse, saying why: a setting that silently
    did nothing would have a trader dedicate a core for nothing."""
    server = fault_server(faults.respond())
    if engine_name == "c" and pool_mode == "sync":
        pool = make_pool(server.url(), connections=1, busy_poll=50e-6)
        assert _spin_of(pool) == [50_000]
        assert pool.get("/").status_code == 200
        return
    why = "sync Pool only" if pool_mode != "sync" else "needs the C engine"
    with pytest.raises(ValueError, match=why):
        make_pool(server.url(), connections=1, busy_poll=50e-6)


@pytest.mark.parametrize("engine_name", ["c", "python"])
def test_asyncpool_refuses_it_on_either_engine(fault_server, engine_name):
    load_engine(engine_name)
    server = fault_server(faults.respond())
    with pytest.raises(ValueError, match="sync Pool only"):
        fastpool.AsyncPool(server.url(), connections=1, engine=engine_name, busy_poll=50e-6)


def test_the_pure_engine_refuses_it(fault_server):
    server = fault_server(faults.respond())
    with pytest.raises(ValueError, match="needs the C engine"):
        fastpool.Pool(server.url(), connections=1, engine="python", busy_poll=50e-6)


def test_a_signal_during_a_long_spin_interrupts_it(fault_server, c_pool):
    """A signal that lands in the spin itself finds no sleeping syscall to return EINTR; the
    spin returns to run the handlers every millisecond, so the handler's exception surfaces
    long before the 2 s spin would end (and the 3 s answer), marked maybe-sent."""
    server = fault_server(faults.delay(3000))

    def handler(signum, frame):
        raise _Interrupt()

    previous = signal.signal(signal.SIGALRM, handler)
    pool = c_pool(server, busy_poll=2.0, timeout=10)
    try:
        pool.get("/warm")
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(_Interrupt) as info:
            pool.get("/slow")
        assert time.monotonic() - t0 < 1.5  # inside the spin, not at its end
        assert isinstance(getattr(info.value, "fastpool_error", None),
                          fastpool.InterruptedMaybeSent)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert pool.get("/after").status_code == 200  # the interrupted connection was replaced


def test_a_handler_that_returns_runs_during_the_spin_and_the_exchange_goes_on(fault_server,
                                                                              c_pool):
    """The handler runs while the spin is under way (not when the answer comes), then the
    exchange resumes where it was: the answer is read, on the same connection."""
    server = fault_server(faults.delay(1500))
    ran: list[float] = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: ran.append(time.monotonic()))
    pool = c_pool(server, busy_poll=2.0, timeout=10)
    try:
        pool.get("/warm")
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        r = pool.get("/slow")
        answered = time.monotonic()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert r.status_code == 200
    # The alarm rings at 0.1 s and the answer comes at 1.5 s: the handler ran in between,
    # not when the exchange returned (a loose bound between the two).
    assert len(ran) == 1 and ran[0] - t0 < 1.0 < answered - t0
    assert pool.stats()["connects"] == 1
