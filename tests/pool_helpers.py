"""Helpers shared by the behaviour tests of fastpool.Pool (tests/test_pool_*.py).

Fixture (import it into a test module to use it):

    sync_pool     factory(url, **Pool kwargs) -> fastpool.Pool on conftest's ``engine_name``
                  ("c" / "python": test ids end in ``[c]`` / ``[python]``, so
                  ``-k "not python"`` selects one engine); every pool it made is closed at
                  teardown, also when the test fails. (support.pools' ``make_pool`` runs a
                  case through Pool and both AsyncPool loops; these tests are about the sync
                  Pool itself: its threads, its lock, its ``_policy``.)

Plain helpers: ``wait_until`` (bounded polling), ``fd_count``, ``run_threads`` (bounded
threads whose exceptions are re-raised), ``tls_kwargs``, ``answer_then_close`` (a fault
behavior that closes only when the test says so), ``new_tag`` / ``tagged_entries`` (find
this test's lines in the shared nginx's access log), ``room_in_window`` (start a test that
counts inside a clock-aligned window far enough from the window's end).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Callable

import pytest

import fastpool

#: Upper bound of any wait in these tests (a hung pool fails the test instead of the run).
WAIT = 10.0

nginx_mark = pytest.mark.nginx


@pytest.fixture
def sync_pool(engine_name):
    pools: list[fastpool.Pool] = []

    def make(url: str, **kwargs) -> fastpool.Pool:
        kwargs.setdefault("engine", engine_name)
        pool = fastpool.Pool(url, **kwargs)
        pools.append(pool)
        assert pool.engine == kwargs["engine"]
        return pool

    yield make
    for pool in pools:
        pool.close()


def tls_kwargs(certs, listener_tls: bool) -> dict:
    """verify= for a listener: the test CA on TLS listeners, nothing on plain ones."""
    return {"verify": str(certs.ca)} if listener_tls else {}


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT, what: str = "") -> None:
    """Polls predicate every 10 ms; AssertionError after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(0.01)


def room_in_window(seconds: float, need: float) -> None:
    """Sleep until the current clock-aligned window of ``seconds`` (the mock exchange's and
    the rate limiter's fixed windows start at multiples of it since the epoch) has at least
    ``need`` seconds left. A test that counts requests into one fixed window would otherwise
    fail whenever its run happened to cross the window's edge (at most ``need`` seconds lost,
    and only in ``need / seconds`` of the runs)."""
    assert need < seconds
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.01)


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def run_threads(target: Callable[[int], object], count: int, timeout: float = 60.0) -> list:
    """Runs target(i) in count threads, joins them (bounded) and returns their results in
    order; the first exception a thread raised is re-raised here."""
    results: list = [None] * count
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            results[i] = target(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    alive = [t for t in threads if t.is_alive()]
    if alive:
        raise AssertionError(f"{len(alive)} of {count} threads still running after {timeout}s")
    if errors:
        raise errors[0]
    return results


def answer_then_close(signal: threading.Event, how: str = "fin", k: int = 1):
    """A fault-server behavior: answer k requests on the connection (keep-alive, no
    Connection: close), then wait (bounded by the connection lifetime) until the test sets
    ``signal``, then close with FIN or RST. Unlike stale_after, the test decides when the
    close happens: after it has the response in hand, so a RST cannot destroy a response
    still in flight."""
    from support.faults import Behavior, http_response

    def run(conn) -> None:
        for _ in range(k):
            req = conn.read_request()
            if req is None:
                conn.close()
                return
            conn.send(http_response(200, b'{"ok":true}', [
                ("Content-Type", "application/json"), ("X-Request-Target", req.target),
                ("X-Request-Index", str(req.index))], head=req.method == "HEAD"))
        while not signal.is_set():
            conn.sleep(0.01)
        if how == "rst":
            conn.reset()
        else:
            conn.close()

    return Behavior(f"answer_then_close[{k},{how}]", run)


def new_tag() -> str:
    """A tag unique to one test, for X-Test-Tag: the shared nginx's access log also holds
    other tests' lines, some written after the next test took its mark."""
    import uuid

    return uuid.uuid4().hex


def tagged_entries(access_log, tag: str, count: int, since: int = 0,
                   timeout: float = WAIT) -> list:
    """The access-log entries carrying ``tag``, once there are at least ``count``."""
    deadline = time.monotonic() + timeout
    while True:
        got = [e for e in access_log.entries(since) if e.tag == tag]
        if len(got) >= count:
            return got
        if time.monotonic() >= deadline:
            raise AssertionError(f"{len(got)} access-log entries tagged {tag}, expected {count}")
        time.sleep(0.01)
