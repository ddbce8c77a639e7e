"""Soak: a million requests through one pool, with RSS, open fds and threads sampled as it runs.

    .venv/bin/python bench/soak.py [--requests 1000000] [--drivers sync,asyncio,uvloop]
                                   [--engine c|python] [--plain] [--concurrency 4]
                                   [--connections 4] [--samples 10]

``make soak`` runs the defaults: 1 000 000 GETs per driver, C engine, HTTPS (TLS 1.3)
against the embedded server (in this process, in its own C thread: its memory is fixed at
start, so growth here is the client's), ``concurrency`` threads (sync Pool) or tasks
(AsyncPool) over ``connections`` keep-alive connections. The requests run in ``samples``
equal chunks; after each chunk (workers joined, so the thread count is the pool's own) it
prints RSS (/proc/self/statm), open descriptors (/proc/self/fd), threads (/proc/self/task),
the server's accepted connections (a reconnect would show there) and the chunk's rate and
CPU per request. The first sample follows a warm-up chunk (allocator arenas, caches); flat
from there on means no leak. Measures; asserts nothing (the exit status is 1 only when a
request failed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
import threading
import time

import fastpool
from fastpool._bench._server import EmbeddedServer

PATH = "/api/v3/ticker"


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def threads() -> int:
    """Threads of this process (/proc/self/task), once the chunk's joined workers are gone:
    a joined thread can linger there for a moment after its join returns."""
    deadline = time.monotonic() + 0.5
    n = len(os.listdir("/proc/self/task"))
    while time.monotonic() < deadline:
        time.sleep(0.01)
        m = len(os.listdir("/proc/self/task"))
        if m == n:
            return n
        n = m
    return n


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Sampler:
    """Prints one line per chunk and keeps the samples for the summary."""

    def __init__(self, label: str, server: EmbeddedServer) -> None:
        self.label = label
        self.server = server
        self.rows: list[tuple[int, float, int, int, int]] = []
        self.done = 0
        self._t = time.perf_counter()
        self._cpu = cpu_s()
        print(f"\n{label}\n{'requests':>10} {'RSS MiB':>8} {'fds':>5} {'threads':>7} "
              f"{'accepted':>8} {'req/s':>8} {'CPU us/req':>10}", flush=True)

    def sample(self, n: int) -> None:
        self.done += n
        t, c = time.perf_counter(), cpu_s()
        rate = n / (t - self._t) if n else 0.0
        cpu_us = (c - self._cpu) / n * 1e6 if n else 0.0
        self._t, self._cpu = t, c
        row = (self.done, rss_mib(), fds(), threads(), self.server.stats()["accepted"])
        self.rows.append(row)
        print(f"{row[0]:>10} {row[1]:>8.1f} {row[2]:>5} {row[3]:>7} {row[4]:>8} "
              f"{rate:>8.0f} {cpu_us:>10.1f}", flush=True)

    def summary(self) -> str:
        first, mid, last = self.rows[0], self.rows[len(self.rows) // 2], self.rows[-1]
        return (f"{self.label}: RSS {first[1]:.1f} / {mid[1]:.1f} / {last[1]:.1f} MiB, "
                f"fds {first[2]} / {mid[2]} / {last[2]}, threads {first[3]} / {mid[3]} / "
                f"{last[3]} (start / middle / end: after the warm-up, then {mid[0]} and {last[0]} "
                f"requests); connections accepted {last[4]}")


def run_sync(url: str, kw: dict, chunks: list[int], warm: int, conc: int,
             sampler: Sampler) -> int:
    failures = 0
    with fastpool.Pool(url, **kw) as pool:
        def chunk(n: int) -> None:
            nonlocal failures
            per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]

            def work(k: int) -> None:
                nonlocal failures
                for _ in range(k):
                    r = pool.get(PATH)
                    if r.status_code != 200:
                        failures += 1

            ts = [threading.Thread(target=work, args=(k,)) for k in per]
            for t in ts:
                t.start()
            for t in ts:
                t.join()

        chunk(warm)
        sampler.sample(0)
        for n in chunks:
            chunk(n)
            sampler.sample(n)
    return failures


async def run_async(url: str, kw: dict, chunks: list[int], warm: int, conc: int,
                    sampler: Sampler) -> int:
    failures = 0
    async with fastpool.AsyncPool(url, **kw) as pool:
        async def work(k: int) -> None:
            nonlocal failures
            for _ in range(k):
                r = await pool.get(PATH)
                if r.status_code != 200:
                    failures += 1

        async def chunk(n: int) -> None:
            per = [n // conc + (1 if i < n % conc else 0) for i in range(conc)]
            await asyncio.gather(*(work(k) for k in per))

        await chunk(warm)
        sampler.sample(0)
        for n in chunks:
            await chunk(n)
            sampler.sample(n)
    return failures


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=1_000_000)
    ap.add_argument("--drivers", default="sync,asyncio")
    ap.add_argument("--engine", default="c", choices=["c", "python"])
    ap.add_argument("--plain", action="store_true", help="HTTP instead of HTTPS")
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--samples", type=int, default=10)
    args = ap.parse_args()
    n, k = args.requests, max(1, args.samples)
    chunks = [n // k + (1 if i < n % k else 0) for i in range(k)]
    warm = max(1000, n // 100)
    summaries, failed = [], 0
    with tempfile.TemporaryDirectory() as tmp:
        for driver in args.drivers.split(","):
            with EmbeddedServer(tls=not args.plain) as srv:
                kw: dict = {"connections": args.connections, "engine": args.engine}
                if not args.plain:
                    kw["verify"] = srv.write_ca(os.path.join(tmp, "ca.pem"))
                url = srv.url
                label = (f"{driver}, engine {args.engine}, {'HTTP' if args.plain else 'HTTPS'},"
                         f" {n} requests, {args.concurrency} workers over {args.connections}"
                         f" connections")
                sampler = Sampler(label, srv)
                if driver == "sync":
                    failed += run_sync(url, kw, chunks, warm, args.concurrency, sampler)
                else:
                    if driver == "uvloop":
                        import uvloop

                        runner = uvloop.run
                    elif driver == "asyncio":
                        runner = asyncio.run
                    else:
                        raise SystemExit(f"unknown driver {driver!r}")
                    failed += runner(run_async(url, kw, chunks, warm, args.concurrency,
                                               sampler))
                summaries.append(sampler.summary())
    print(f"\nsummary (warm-up: {warm} requests before the first sample)")
    for line in summaries:
        print(" ", line)
    if failed:
        print(f"{failed} requests failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
