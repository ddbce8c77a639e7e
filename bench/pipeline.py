"""A burst of 10 quotes: one pipeline vs 10 sequential requests vs 10 concurrent ones.

    .venv/bin/python bench/pipeline.py [-n 1000] [--rounds 3] [--burst 10] [--plain]
                                       [--gap-ms 0] [--engine c|python] [--only NAME,...]

The embedded server (HTTPS, TLS 1.3, unless --plain) runs in a child process, so its CPU is
not counted. This process runs, in interleaved rounds of shuffled order, n bursts of `burst`
GETs of /api/v3/ticker (each with its own symbol) for each client:

    floor             the raw C loop (floor_latencies) on one connection: burst requests
                      one after the other, no Python (the sequential floor)
    *-pipeline        pool.pipeline(): one connection, one write, the responses in order
    *-sequential      burst x pool.get() one after the other (one connection)
    sync-threads      burst threads (a ThreadPoolExecutor) each doing one pool.get()
                      (burst connections)
    async-*-gather    asyncio.gather of burst pool.get() (burst connections)

Wall time is per burst (the last response in hand), p50 and p99 over the round; CPU is this
process's user + system time (getrusage, every thread) per burst. Printed: medians over
rounds, and each p50 and CPU as a ratio to the floor's. --gap-ms sleeps between bursts (not
counted): a strategy's bursts are sporadic, and the first request after an idle gap pays for
cold caches and a sleeping CPU (the floor keeps no gap: it is one C loop).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import cpu_seconds, pct  # noqa: E402

import fastpool  # noqa: E402

SERVER = """
import sys
from fastpool._bench._server import EmbeddedServer
srv = EmbeddedServer(tls={tls}, body_size=137).start()
if {tls}:
    srv.write_ca({ca!r})
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""
PATH = "/api/v3/ticker"
WARM = 200
GAP = [0.0]  # seconds between bursts (--gap-ms)




def _items(burst: int) -> list:
    return [("GET", PATH, {"symbol": f"SYM{i}USDT"}) for i in range(burst)]


def run_floor(url: str, ca: str, n: int, burst: int, engine: str) -> Tuple[List[int], float]:
    from fastpool._engine import get_engine

    core = get_engine("c")
    with fastpool.Pool(url, connections=1, verify=ca or True, engine="c") as pool:
        req = (f"GET {PATH}?symbol=SYM0USDT HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"User-Agent: fastpool\r\n\r\n").encode()
        conn = pool._policy.idle[0][0]
        core.floor_latencies(conn, req, WARM * burst)
        c0 = cpu_seconds()
        lat, bad = core.floor_latencies(conn, req, n * burst)
        c1 = cpu_seconds()
    assert not bad
    bursts = [sum(lat[i:i + burst]) for i in range(0, len(lat), burst)]
    return bursts, (c1 - c0) / n


def _timed(n: int, one: Callable[[], Any]) -> Tuple[List[int], float]:
    for _ in range(WARM):
        one()
    lat = []
    gap = GAP[0]
    cpu = 0.0
    c0 = cpu_seconds()
    for _ in range(n):
        if gap:  # the sleep's own CPU is not the burst's: read the clock around each burst
            time.sleep(gap)
            c0 = cpu_seconds()
        t = time.perf_counter_ns()
        one()
        lat.append(time.perf_counter_ns() - t)
        if gap:
            cpu += cpu_seconds() - c0
    return lat, (cpu if gap else cpu_seconds() - c0) / n


def _check(results: list, burst: int) -> None:
    if len(results) != burst or not all(isinstance(r, fastpool.Response)
                                        and r.status_code == 200 for r in results):
        raise RuntimeError(f"a burst failed: {results!r}")


def run_sync(url: str, ca: str, n: int, burst: int, engine: str,
             how: str) -> Tuple[List[int], float]:
    items = _items(burst)
    conns = burst if how == "threads" else 1
    with fastpool.Pool(url, connections=conns, verify=ca or True, engine=engine) as pool:
        if how == "pipeline":
            def one() -> None:
                _check(pool.pipeline(items), burst)
        elif how == "sequential":
            def one() -> None:
                _check([pool.get(u, params=p) for _, u, p in items], burst)
        else:
            executor = ThreadPoolExecutor(max_workers=burst)

            def one() -> None:
                _check(list(executor.map(lambda it: pool.get(it[1], params=it[2]), items)),
                       burst)
        try:
            return _timed(n, one)
        finally:
            if how == "threads":
                executor.shutdown()


def run_async(url: str, ca: str, n: int, burst: int, engine: str, how: str,
              loop_kind: str) -> Tuple[List[int], float]:
    items = _items(burst)

    async def main() -> Tuple[List[int], float]:
        conns = burst if how == "gather" else 1
        async with fastpool.AsyncPool(url, connections=conns, verify=ca or True,
                                      engine=engine) as pool:
            async def one() -> None:
                if how == "pipeline":
                    results = await pool.pipeline(items)
                elif how == "sequential":
                    results = [await pool.get(u, params=p) for _, u, p in items]
                else:
                    results = await asyncio.gather(*(pool.get(u, params=p)
                                                     for _, u, p in items))
                _check(list(results), burst)

            for _ in range(WARM):
                await one()
            lat = []
            gap = GAP[0]
            cpu = 0.0
            c0 = cpu_seconds()
            for _ in range(n):
                if gap:  # as _timed: the clock around each burst only
                    await asyncio.sleep(gap)
                    c0 = cpu_seconds()
                t = time.perf_counter_ns()
                await one()
                lat.append(time.perf_counter_ns() - t)
                if gap:
                    cpu += cpu_seconds() - c0
            return lat, (cpu if gap else cpu_seconds() - c0) / n

    if loop_kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(main())
    finally:
        loop.close()


Runner = Callable[[str, str, int, int, str], Tuple[List[int], float]]
CLIENTS: dict[str, Runner] = {
    "floor": run_floor,
    "sync-pipeline": lambda u, ca, n, b, e: run_sync(u, ca, n, b, e, "pipeline"),
    "sync-sequential": lambda u, ca, n, b, e: run_sync(u, ca, n, b, e, "sequential"),
    "sync-threads": lambda u, ca, n, b, e: run_sync(u, ca, n, b, e, "threads"),
    "asyncio-pipeline": lambda u, ca, n, b, e: run_async(u, ca, n, b, e, "pipeline", "asyncio"),
    "asyncio-sequential": lambda u, ca, n, b, e: run_async(u, ca, n, b, e, "sequential",
                                                           "asyncio"),
    "asyncio-gather": lambda u, ca, n, b, e: run_async(u, ca, n, b, e, "gather", "asyncio"),
    "uvloop-pipeline": lambda u, ca, n, b, e: run_async(u, ca, n, b, e, "pipeline", "uvloop"),
    "uvloop-sequential": lambda u, ca, n, b, e: run_async(u, ca, n, b, e, "sequential",
                                                          "uvloop"),
    "uvloop-gather": lambda u, ca, n, b, e: run_async(u, ca, n, b, e, "gather", "uvloop"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("-n", type=int, default=1000, help="bursts per client and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--burst", type=int, default=10)
    ap.add_argument("--plain", action="store_true", help="HTTP instead of HTTPS (TLS 1.3)")
    ap.add_argument("--gap-ms", type=float, default=0.0, help="idle gap between bursts")
    ap.add_argument("--engine", default="c", choices=["c", "python"])
    ap.add_argument("--only", default="", help="comma-separated client names")
    args = ap.parse_args()
    GAP[0] = args.gap_ms / 1000
    names = [c for c in CLIENTS if not args.only or c in args.only.split(",")]
    try:
        import uvloop  # noqa: F401
    except ImportError:
        names = [c for c in names if not c.startswith("uvloop")]
    if "floor" not in names:
        names.insert(0, "floor")
    tmp = tempfile.mkdtemp()
    ca = "" if args.plain else os.path.join(tmp, "ca.pem")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tls=not args.plain, ca=ca)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    try:
        assert server.stdout is not None and server.stdin is not None
        port = int(server.stdout.readline())
        url = f"{'http' if args.plain else 'https'}://127.0.0.1:{port}"
        results: dict = {name: ([], [], []) for name in names}
        for r in range(args.rounds):
            order = names[:]
            random.shuffle(order)
            for name in order:
                lat, cpu = CLIENTS[name](url, ca, args.n, args.burst, args.engine)
                results[name][0].append(pct(lat, 0.5) / 1000)
                results[name][1].append(pct(lat, 0.99) / 1000)
                results[name][2].append(cpu * 1e6)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)
    floor_p50 = statistics.median(results["floor"][0])
    floor_cpu = statistics.median(results["floor"][2])
    print(f"{'HTTP' if args.plain else 'HTTPS (TLS 1.3)'}, embedded server in a child process, "
          f"engine {args.engine}, bursts of {args.burst}, n={args.n} bursts x {args.rounds} "
          f"rounds{f', {args.gap_ms:g} ms idle between bursts' if args.gap_ms else ''}, "
          f"medians over rounds; per burst")
    print(f"{'client':20} {'p50 us':>8} {'x floor':>8} {'p99 us':>8} {'CPU us':>8} "
          f"{'x floor':>8}")
    for name in names:
        p50s, p99s, cpus = results[name]
        p50, p99, cpu = (statistics.median(p50s), statistics.median(p99s),
                         statistics.median(cpus))
        print(f"{name:20} {p50:8.1f} {p50 / floor_p50:8.2f} {p99:8.1f} {cpu:8.1f} "
              f"{cpu / floor_cpu:8.2f}")


if __name__ == "__main__":
    main()
