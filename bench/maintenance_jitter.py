"""Jitter from maintenance: request latency with keep-warm pings active against inactive
(issue 11, item 1: a caller's request never waits behind maintenance).

    .venv/bin/python bench/maintenance_jitter.py [--requests 20000] [--blocks 5]
                                                 [--drivers sync,asyncio,uvloop] [--engine c]
                                                 [--plain] [--every 0.01,0.001]

One caller (a thread, or a task) sends GETs back to back through a pool of 4 connections to
the embedded server (a child process). It uses the hottest idle connection each time, so the
other three sit idle and, with keep-warm on, get a ping every ``every`` seconds from the
maintenance thread (Pool) or the event loop (AsyncPool): thousands of pings a second at 1 ms,
far more than any real setting (25 s), to make any interference visible. Blocks of each
setting alternate in a shuffled order (drift spreads over all). Printed per driver and
setting: p50, p99, p99.9 and max of the caller's latency (timed in Python around the call),
the CPU per request (the whole process: the pings' cost included) and pings sent.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import sys
import time

from bench_common import ServerProcess, pct

import fastpool

PATH = "/api/v3/ticker"


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def block_sync(url: str, kw: dict, n: int) -> tuple[list[int], float, int]:
    with fastpool.Pool(url, **kw) as pool:
        get, pc = pool.get, time.perf_counter_ns
        for _ in range(500):
            get(PATH)
        lat = [0] * n
        c0 = cpu_s()
        for i in range(n):
            t0 = pc()
            get(PATH)
            lat[i] = pc() - t0
        used = cpu_s() - c0
        return lat, used, pool.stats()["pings"]


def block_uvloop(url: str, kw: dict, n: int) -> tuple[list[int], float, int]:
    import uvloop

    return block_async(url, kw, n, uvloop.run)


def block_async(url: str, kw: dict, n: int, runner=asyncio.run) -> tuple[list[int], float, int]:
    async def run() -> tuple[list[int], float, int]:
        async with fastpool.AsyncPool(url, **kw) as pool:
            get, pc = pool.get, time.perf_counter_ns
            for _ in range(500):
                await get(PATH)
            lat = [0] * n
            c0 = cpu_s()
            for i in range(n):
                t0 = pc()
                await get(PATH)
                lat[i] = pc() - t0
            used = cpu_s() - c0
            return lat, used, pool.stats()["pings"]

    return runner(run())  # type: ignore[no-any-return]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000, help="per block")
    ap.add_argument("--blocks", type=int, default=5, help="blocks per setting")
    ap.add_argument("--drivers", default="sync,asyncio,uvloop")
    ap.add_argument("--engine", default="c", choices=["c", "python"])
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--every", default="0.01,0.001", help="keep-warm intervals, seconds")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    settings: list = [None] + [float(e) for e in args.every.split(",")]
    with ServerProcess(args.plain) as server:
        base = dict(server.pool_kwargs(), connections=4, engine=args.engine)
        print(f"maintenance jitter, {'HTTP' if args.plain else 'HTTPS'}, engine {args.engine}, "
              f"{args.blocks} x {args.requests} requests per setting, one caller, 4 connections;"
              f" us")
        print(f"{'driver':<8} {'keep-warm':<10} {'p50':>7} {'p99':>7} {'p99.9':>7} {'max':>8} "
              f"{'CPU us/req':>10} {'pings':>7}")
        for driver in args.drivers.split(","):
            run = {"sync": block_sync, "asyncio": block_async, "uvloop": block_uvloop}[driver]
            lat: dict = {s: [] for s in settings}
            cpu: dict = {s: 0.0 for s in settings}
            pings: dict = {s: 0 for s in settings}
            for _ in range(args.blocks):
                order = settings[:]
                rng.shuffle(order)
                for s in order:
                    kw = dict(base)
                    if s is not None:
                        kw["keep_warm"] = fastpool.KeepWarm("/api/v3/ping", every=s)
                    one, used, p = run(server.url, kw, args.requests)
                    lat[s] += one
                    cpu[s] += used
                    pings[s] += p
            for s in settings:
                v = lat[s]
                name = "off" if s is None else f"{s * 1e3:g} ms"
                print(f"{driver:<8} {name:<10} {pct(v, .5) / 1e3:>7.1f} {pct(v, .99) / 1e3:>7.1f}"
                      f" {pct(v, .999) / 1e3:>7.1f} {max(v) / 1e3:>8.1f} "
                      f"{cpu[s] / len(v) * 1e6:>10.1f} {pings[s]:>7}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
