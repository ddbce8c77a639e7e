"""Signals: an exception raised by a signal handler (KeyboardInterrupt on SIGINT) may land
anywhere in a request; the pool's accounting must survive it (never more connections than
the limit, none leaked at the server) and the pool must go on working. Sync Pool (signal
handlers run in the main thread), both engines."""

from __future__ import annotations

import random
import signal
import time

import pytest
from conftest import load_server
from pool_helpers import wait_until

import fastpool


class _Interrupt(KeyboardInterrupt):
    pass


# An interrupt that lands in a gc or weakref callback is reported as unraisable: expected.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("max_connections", [1, 2])
def test_random_interrupts_keep_the_pool_within_its_limit(engine_name, max_connections):
    server = load_server()(delay_ms=1).start()
    rnd = random.Random(1234)
    fired = caught = 0
    armed = False

    def handler(signum, frame):
        # Raises only inside the storm: a timer that fires late (after the loop ended on a
        # typed failure, its timer still set) must not interrupt the test's own checks or,
        # being a KeyboardInterrupt, end the whole test session.
        nonlocal fired
        if not armed:
            return
        fired += 1
        raise _Interrupt()

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        with fastpool.Pool(server.url, connections=1, max_connections=max_connections,
                           engine=engine_name, timeout=5) as pool:
            deadline = time.monotonic() + 15
            armed = True
            while fired < 300 and time.monotonic() < deadline:
                try:
                    try:
                        signal.setitimer(signal.ITIMER_REAL, rnd.uniform(0.0002, 0.004))
                        pool.post("/order", content=b"x")
                    finally:  # disarmed however the request ended: no late one outside
                        signal.setitimer(signal.ITIMER_REAL, 0)
                except _Interrupt as exc:
                    caught += 1
                    mark = getattr(exc, "fastpool_error", None)
                    assert mark is None or isinstance(
                        mark, (fastpool.InterruptedNotSent, fastpool.InterruptedMaybeSent))
                except fastpool.FastpoolError:
                    pass  # e.g. an interrupted open surfaces as a typed failure next time
            armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
            assert fired >= 50, "the storm was too short to mean anything"
            stats = pool.stats()
            assert stats["open"] <= max_connections, stats
            # The pool still answers, and the server holds no connection beyond the limit.
            for _ in range(5):
                assert pool.post("/after", content=b"y").status_code == 200
            wait_until(lambda: server.stats()["open"] <= max_connections, timeout=5,
                       what="the server to see at most the limit open")
    finally:
        armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        server.stop()
