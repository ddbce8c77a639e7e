"""Footprint: pools closed leave no descriptor or thread behind; idle connections cost a
bounded amount of memory each (both engines; Pool, AsyncPool on asyncio and on uvloop).

The figures (1 000 idle TLS connections in one pool, a million requests) come from
bench/footprint.py and bench/soak.py (``make soak``); here only what holds on any machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ASAN_DIR, load_server
from pool_helpers import fd_count, wait_until

import fastpool

#: Pools per engine and driver: 6 variants make about 500.
POOLS = 84
#: Idle TLS connections in the memory measurement (bench/footprint.py does 1 000).
IDLE = 200
#: Growth of RSS per idle TLS connection, pool overhead included, that no build should
#: reach: both engines measure 32-36 KiB (bench/footprint.py).
#: ASan's redzones and quarantine multiply every allocation.
KIB_PER_CONNECTION = 1024 if ASAN_DIR else 256
FOOTPRINT = Path(__file__).resolve().parents[1] / "bench" / "footprint.py"


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))  # C threads too, not only Python's


@pytest.fixture
def tls_server(tmp_path):
    server = load_server()(tls=True).start()
    try:
        yield server, server.write_ca(str(tmp_path / "ca.pem"))
    finally:
        server.stop()


def test_pools_closed_leave_no_descriptor_or_thread(make_pool, tls_server):
    server, ca = tls_server

    def one_pool() -> None:
        pool = make_pool(server.url, connections=2, verify=ca)
        assert pool.get("/").status_code == 200
        pool.close()

    def settled() -> bool:
        return server.stats()["open"] == 0  # the server's ends are fds of this process too

    # The first pool starts what lives as long as the process (an event loop's executor,
    # OpenSSL's tables): the baseline is taken after it.
    one_pool()
    wait_until(settled, what="the server to close its end of the first pool's connections")
    fds, threads = fd_count(), _threads()
    for _ in range(POOLS - 1):
        one_pool()
    wait_until(lambda: settled() and fd_count() <= fds and _threads() <= threads,
               what=f"descriptors back to {fds} and threads to {threads} after {POOLS} pools "
                    f"(now {fd_count()} and {_threads()}, server open "
                    f"{server.stats()['open']})")
    assert server.stats()["accepted"] == 2 * POOLS


@pytest.mark.parametrize("driver", ["sync", "asyncio", "uvloop"])
def test_idle_tls_connections_cost_bounded_memory(engine_name, driver, tls_server):
    if driver == "uvloop":
        pytest.importorskip("uvloop")
    server, ca = tls_server
    # The child imports the package under test (this one), not whatever is installed.
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastpool.__file__)))
    out = subprocess.run(
        [sys.executable, str(FOOTPRINT), "--child", server.url, ca, str(IDLE), driver,
         engine_name], check=True, capture_output=True, text=True, timeout=300, env=env)
    m = json.loads(out.stdout.strip().splitlines()[-1])
    assert m["fds"] >= IDLE, m  # the connections really were open while measured
    per_connection = (m["rss_after"] - m["rss_before"]) / IDLE / 1024
    assert per_connection < KIB_PER_CONNECTION, (
        f"{per_connection:.1f} KiB of RSS per idle TLS connection ({engine_name}, {driver}): "
        f"{m}")
