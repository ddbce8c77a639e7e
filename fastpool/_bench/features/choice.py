"""Latency-aware choice against a gateway address that is slow: choose="fastest" vs "hottest"
(the ``choice`` mode of ``fastpool bench``; standalone ``bench/slow_connection.py``).

    .venv/bin/python bench/slow_connection.py [-n 4000] [--slow-ms 1.0] [--concurrency 1,4]
                                              [--engine c] [--drivers sync,asyncio]

The server (a child process: its CPU is not counted) listens on 127.0.0.1 and 127.0.0.2 on
the same port and answers GETs on keep-alive connections from one epoll loop; every answer
on a connection accepted on 127.0.0.2 is held back ``slow-ms`` milliseconds (without
blocking the other connections) — one gateway address behind a slow route. Each pool has 4
connections spread over both addresses (``addresses=["127.0.0.1", "127.0.0.2"]``), plain
HTTP (TLS changes nothing in the choice), and sends n GETs after a warm-up of 200 (in which
"fastest" measures its connections and replaces the slow ones), from `concurrency` threads
(Pool) or tasks (AsyncPool). Printed per pool: p50 / p90 / p99 wall latency (µs), the share
of requests answered by the slow address (latency above half the hold), CPU per request
(µs: this process's user + system time, all threads), and the connections the pool
rotated out for being slow (stats()["rotations"]).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from typing import Callable, NamedTuple, Optional, Sequence

import fastpool

from .common import Settings, cpu_seconds, holding_server, pct
from .table import FeatureTable

MODE = "choice"
#: GETs per pool when Settings.requests is None: with the 8 pools' warm-ups and pauses
#: (1.2 s each) about 20 s on a 2-core machine, most of it "hottest" waiting on the hold.
DEFAULT_REQUESTS = 2000
ADDRESSES = ["127.0.0.1", "127.0.0.2"]
SLOW_ADDRESS = ADDRESSES[1]
CONNECTIONS = 4
WARMUP = 200
#: after the first warm-up: one slow-connection check (every second) replaces what it found
CHECK_PAUSE = 1.2
PATH = "/api/v3/ticker"
CHOICES = ("hottest", "fastest")
COLUMNS = ["client", "p50", "p90", "p99", "slow %", "cpu/req", "rotated"]


class Sample(NamedTuple):
    latencies: list[int]    #: wall time of each request, all workers (ns)
    cpu: float              #: this process's CPU seconds per request
    rotated: int            #: connections replaced for being slow (stats()["rotations"])


#: (url, choose, engine, requests per worker, workers) -> Sample
Driver = Callable[[str, str, str, int, int], Sample]


def run_sync(url: str, choose: str, engine: str, per: int, k: int) -> Sample:
    with fastpool.Pool(url, connections=CONNECTIONS, addresses=ADDRESSES, choose=choose,
                       engine=engine, timeout=5.0) as pool:
        for _ in range(WARMUP):
            pool.get(PATH)
        time.sleep(CHECK_PAUSE)
        for _ in range(WARMUP):
            pool.get(PATH)
        lat: list[list[int]] = [[] for _ in range(k)]
        errors: list[BaseException] = []

        def work(out: list[int]) -> None:
            clock = time.perf_counter_ns
            try:
                for _ in range(per):
                    t = clock()
                    pool.get(PATH)
                    out.append(clock() - t)
            except BaseException as exc:  # re-raised in the caller's thread below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(lat[i],)) for i in range(k)]
        c0 = cpu_seconds()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu = cpu_seconds() - c0
        if errors:
            raise errors[0]
        rotations = pool.stats()["rotations"]
    flat = [x for part in lat for x in part]
    return Sample(flat, cpu / len(flat), rotations)


def run_async(url: str, choose: str, engine: str, per: int, k: int) -> Sample:
    async def main() -> Sample:
        async with fastpool.AsyncPool(url, connections=CONNECTIONS, addresses=ADDRESSES,
                                      choose=choose, engine=engine, timeout=5.0) as pool:
            for _ in range(WARMUP):
                await pool.get(PATH)
            await asyncio.sleep(CHECK_PAUSE)
            for _ in range(WARMUP):
                await pool.get(PATH)
            lat: list[list[int]] = [[] for _ in range(k)]

            async def work(out: list[int]) -> None:
                clock = time.perf_counter_ns
                for _ in range(per):
                    t = clock()
                    await pool.get(PATH)
                    out.append(clock() - t)

            c0 = cpu_seconds()
            await asyncio.gather(*(work(lat[i]) for i in range(k)))
            cpu = cpu_seconds() - c0
            rotations = pool.stats()["rotations"]
        flat = [x for part in lat for x in part]
        return Sample(flat, cpu / len(flat), rotations)

    return asyncio.run(main())


#: --drivers name -> (label, driver, what its k workers are)
DRIVERS: dict[str, tuple[str, Driver, str]] = {
    "sync": ("Pool", run_sync, "thread"),
    "asyncio": ("AsyncPool/asyncio", run_async, "task"),
}


def measure(settings: Settings, slow_ms: float = 1.0, concurrency: Sequence[int] = (1, 4),
            drivers: Sequence[str] = ("sync", "asyncio")) -> FeatureTable:
    """The table: for each concurrency and driver, a "hottest" and a "fastest" pool."""
    n = settings.requests or DEFAULT_REQUESTS
    table = FeatureTable(
        MODE, f"choice: {n:,} GETs per pool after 2 x {WARMUP} warm-up, from k threads (Pool) "
        f"or tasks (AsyncPool); {CONNECTIONS} connections over {' and '.join(ADDRESSES)}, "
        f"every answer on {SLOW_ADDRESS} held {slow_ms:g} ms; engine {settings.engine}; plain "
        f"HTTP (the server has no TLS); one pass (no rounds); slow % = answers slower than "
        f"half the hold; latency and CPU per request in us", list(COLUMNS))
    table.notes.append("no floor row: one raw connection has no connection to choose")
    threshold_ns = slow_ms * 1e6 / 2
    runs = [(k, DRIVERS[d], choose) for k in concurrency for d in drivers for choose in CHOICES]
    with holding_server(slow_ms / 1e3, slow_address=SLOW_ADDRESS) as port:
        url = f"http://127.0.0.1:{port}"
        for i, (k, (name, driver, worker), choose) in enumerate(runs, 1):
            label = f"{name} {choose}, {k} {worker}{'s' if k > 1 else ''}"
            settings.log(f"choice: {label} ({i}/{len(runs)}), {n:,} GETs")
            # n per pool, shared by its k workers (at least one each)
            s = driver(url, choose, settings.engine, max(1, n // k), k)
            lat = s.latencies
            slow = sum(1 for x in lat if x > threshold_ns) / len(lat) * 100
            table.add(label, pct(lat, 0.5) / 1e3, pct(lat, 0.9) / 1e3, pct(lat, 0.99) / 1e3,
                      slow, s.cpu * 1e6, s.rotated)
    return table


def run(settings: Settings) -> list[FeatureTable]:
    return [measure(settings)]


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("-n", type=int, default=4000, help="measured requests per pool")
    ap.add_argument("--slow-ms", type=float, default=1.0)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--engine", default="c", choices=("c", "python"))
    ap.add_argument("--drivers", default="sync,asyncio")
    a = ap.parse_args(argv)
    drivers = [d for d in a.drivers.split(",") if d]
    for d in drivers:
        if d not in DRIVERS:
            ap.error(f"--drivers: {d!r} is not one of {', '.join(DRIVERS)}")
    try:
        concurrency = [int(x) for x in a.concurrency.split(",") if x]
    except ValueError:
        ap.error(f"--concurrency: {a.concurrency!r} is not a comma-separated list of counts")
    if any(k < 1 for k in concurrency):
        ap.error("--concurrency: every count must be at least 1")
    # progress on stderr, one line per pool (the table goes to stdout when all are done)
    settings = Settings(requests=a.n, engine=a.engine,
                        log=lambda text: print(text, file=sys.stderr, flush=True))
    table = measure(settings, slow_ms=a.slow_ms, concurrency=concurrency, drivers=drivers)
    print(table.format(), flush=True)


if __name__ == "__main__":
    main()
