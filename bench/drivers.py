"""CPU and wall time per request of each driver over the same engine, against the floor.

    .venv/bin/python bench/drivers.py [-n 20000] [--rounds 5] [--plain] [--only NAME,...]
                                      [--parked]

The embedded server runs in a child process (so its CPU is not counted); this process runs,
in interleaved rounds of shuffled order, n sequential GETs on one pre-opened connection for
each client: the floor (a raw C loop on the C engine's connection), Pool and AsyncPool
(asyncio, uvloop) on the C engine, and the same on the pure engine. CPU is this process's user
+ system time (all threads, getrusage) per request: steadier than wall time on a shared VM.
Printed: median over rounds of p50 wall (us), of CPU per request (us), and the ratio to the
floor's. Used for the before/after figures of a change to a driver or the hot path.

On loopback the AsyncPool mostly reads the response right after writing (the server has
answered by then); over a network it parks on the loop every time. --parked turns the read
at once off, so the async rows show that path.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import cpu_seconds, pct  # noqa: E402

import fastpool  # noqa: E402
from fastpool._bench.features.common import run_on  # noqa: E402

SERVER = """
import sys, time
from fastpool._bench._server import EmbeddedServer
srv = EmbeddedServer(tls={tls}, body_size=137).start()
if {tls}:
    srv.write_ca({ca!r})
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""




def run_floor(url: str, ca: str, n: int) -> tuple:
    from fastpool._engine import get_engine

    core = get_engine("c")
    with fastpool.Pool(url, connections=1, verify=ca or True, engine="c") as pool:
        req = b"GET /api/v3/ticker HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fastpool\r\n\r\n"
        conn = pool._policy.idle[0][0]
        core.floor_latencies(conn, req, 2000)
        c0 = cpu_seconds()
        lat, bad = core.floor_latencies(conn, req, n)
        c1 = cpu_seconds()
    assert not bad
    return lat, (c1 - c0) / n


def run_sync(url: str, ca: str, n: int, engine: str) -> tuple:
    with fastpool.Pool(url, connections=1, verify=ca or True, engine=engine) as pool:
        for _ in range(2000):
            pool.get("/api/v3/ticker")
        lat = []
        c0 = cpu_seconds()
        for _ in range(n):
            t = time.perf_counter_ns()
            pool.get("/api/v3/ticker")
            lat.append(time.perf_counter_ns() - t)
        c1 = cpu_seconds()
    return lat, (c1 - c0) / n


def run_async(url: str, ca: str, n: int, engine: str, loop_kind: str) -> tuple:
    async def main():
        async with fastpool.AsyncPool(url, connections=1, verify=ca or True,
                                      engine=engine) as pool:
            for _ in range(2000):
                await pool.get("/api/v3/ticker")
            lat = []
            c0 = cpu_seconds()
            for _ in range(n):
                t = time.perf_counter_ns()
                await pool.get("/api/v3/ticker")
                lat.append(time.perf_counter_ns() - t)
            c1 = cpu_seconds()
        return lat, (c1 - c0) / n

    return run_on(loop_kind, main())


CLIENTS = {
    "floor": lambda u, ca, n: run_floor(u, ca, n),
    "pool-c": lambda u, ca, n: run_sync(u, ca, n, "c"),
    "async-c-asyncio": lambda u, ca, n: run_async(u, ca, n, "c", "asyncio"),
    "async-c-uvloop": lambda u, ca, n: run_async(u, ca, n, "c", "uvloop"),
    "pool-py": lambda u, ca, n: run_sync(u, ca, n, "python"),
    "async-py-asyncio": lambda u, ca, n: run_async(u, ca, n, "python", "asyncio"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--plain", action="store_true", help="HTTP instead of HTTPS (TLS 1.3)")
    ap.add_argument("--only", default="", help="comma-separated client names")
    ap.add_argument("--parked", action="store_true",
                    help="AsyncPool: no read right after the write (every request parks)")
    args = ap.parse_args()
    if args.parked:
        import fastpool._drivers.aio as aio

        aio._READ_AT_ONCE_NS = 0
    names = [c for c in CLIENTS if not args.only or c in args.only.split(",")]
    if "floor" not in names:
        names.insert(0, "floor")
    tmp = tempfile.mkdtemp()
    ca = "" if args.plain else os.path.join(tmp, "ca.pem")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tls=not args.plain, ca=ca)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        port = int(server.stdout.readline())
        url = f"{'http' if args.plain else 'https'}://127.0.0.1:{port}"
        results: dict = {name: ([], []) for name in names}
        for r in range(args.rounds):
            order = names[:]
            random.shuffle(order)
            for name in order:
                lat, cpu = CLIENTS[name](url, ca, args.n)
                results[name][0].append(pct(lat, 0.5) / 1000)
                results[name][1].append(cpu * 1e6)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        server.stdin.close()
        server.wait(10)
    floor_p50 = statistics.median(results["floor"][0])
    floor_cpu = statistics.median(results["floor"][1])
    print(f"{'HTTP' if args.plain else 'HTTPS (TLS 1.3)'}, embedded server in a child process, "
          f"n={args.n} x {args.rounds} rounds, medians over rounds"
          f"{', AsyncPool parked (no read at once)' if args.parked else ''}")
    print(f"{'client':18} {'p50 us':>8} {'x floor':>8} {'CPU us/req':>11} {'x floor':>8} "
          f"{'p50 spread':>11}")
    for name in names:
        p50s, cpus = results[name]
        p50, cpu = statistics.median(p50s), statistics.median(cpus)
        spread = f"{min(p50s):.1f}-{max(p50s):.1f}"
        print(f"{name:18} {p50:8.1f} {p50 / floor_p50:8.2f} {cpu:11.1f} {cpu / floor_cpu:8.2f} "
              f"{spread:>11}")


if __name__ == "__main__":
    main()
