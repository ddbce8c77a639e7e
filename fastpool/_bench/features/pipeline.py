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
cold caches and a sleeping CPU (the floor keeps no gap: it is one C loop). The floor needs
the C engine: with --engine python it is left out and the ratios with it.

As the ``pipeline`` mode of ``fastpool bench``, run() measures with fewer bursts (DEFAULT_N).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Awaitable, Callable, Optional, Sequence

import fastpool

from . import common
from .common import Settings, cpu_seconds, pct
from .table import FeatureTable

PATH = "/api/v3/ticker"
SCRIPT_N = 1000   #: bursts per client and round, standalone (-n)
DEFAULT_N = 1200  #: the same in a `fastpool bench` run: about 15-25 s for the whole mode
SCRIPT_WARM = 200  #: untimed bursts before each client's timed ones, standalone
DEFAULT_WARM = 100  #: the same in a `fastpool bench` run

Result = tuple[list[int], float]  # wall ns per burst, CPU seconds per burst


@dataclass(frozen=True)
class _Setup:
    """What every client of one measurement gets (was the script's globals)."""

    url: str
    ca: str           #: "" when plain
    engine: str
    burst: int        #: requests per burst
    gap: float        #: seconds idle before each burst (0: back to back)
    warm: int         #: untimed bursts first

    def verify(self) -> Any:
        return self.ca or True


Item = tuple[str, str, dict[str, str]]  # method, path, params: a PipelineItem


def _items(burst: int) -> list[Item]:
    return [("GET", PATH, {"symbol": f"SYM{i}USDT"}) for i in range(burst)]


def _check(results: Sequence[object], burst: int) -> None:
    if len(results) != burst or not all(isinstance(r, fastpool.Response)
                                        and r.status_code == 200 for r in results):
        raise RuntimeError(f"a burst failed: {results!r}")


def run_floor(s: _Setup, n: int) -> Result:
    from fastpool._engine import _core

    with fastpool.Pool(s.url, connections=1, verify=s.verify(), engine="c") as pool:
        req = (f"GET {PATH}?symbol=SYM0USDT HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"User-Agent: fastpool\r\n\r\n").encode()
        conn = common.floor_connection(pool)
        _core.floor_latencies(conn, req, s.warm * s.burst)
        c0 = cpu_seconds()
        lat, bad = _core.floor_latencies(conn, req, n * s.burst)
        c1 = cpu_seconds()
    if bad:
        raise RuntimeError(f"the floor had {bad} bad responses")
    bursts = [sum(lat[i:i + s.burst]) for i in range(0, len(lat), s.burst)]
    return bursts, (c1 - c0) / n


def _timed(s: _Setup, n: int, one: Callable[[], None]) -> Result:
    for _ in range(s.warm):
        one()
    lat = []
    cpu = 0.0
    c0 = cpu_seconds()
    for _ in range(n):
        if s.gap:  # the sleep's own CPU is not the burst's: read the clock around each burst
            time.sleep(s.gap)
            c0 = cpu_seconds()
        t = time.perf_counter_ns()
        one()
        lat.append(time.perf_counter_ns() - t)
        if s.gap:
            cpu += cpu_seconds() - c0
    return lat, (cpu if s.gap else cpu_seconds() - c0) / n


def run_sync(how: str, s: _Setup, n: int) -> Result:
    items = _items(s.burst)
    conns = s.burst if how == "threads" else 1
    with fastpool.Pool(s.url, connections=conns, verify=s.verify(), engine=s.engine) as pool:
        if how == "pipeline":
            def one() -> None:
                _check(pool.pipeline(items), s.burst)
            return _timed(s, n, one)
        if how == "sequential":
            def one() -> None:
                _check([pool.get(path, params=p) for _, path, p in items], s.burst)
            return _timed(s, n, one)
        with ThreadPoolExecutor(max_workers=s.burst) as executor:
            def one() -> None:
                _check(list(executor.map(lambda it: pool.get(it[1], params=it[2]), items)),
                       s.burst)
            return _timed(s, n, one)


async def _atimed(s: _Setup, n: int, one: Callable[[], Awaitable[None]]) -> Result:
    # _timed, awaiting: the same clock reads around each burst
    for _ in range(s.warm):
        await one()
    lat = []
    cpu = 0.0
    c0 = cpu_seconds()
    for _ in range(n):
        if s.gap:
            await asyncio.sleep(s.gap)
            c0 = cpu_seconds()
        t = time.perf_counter_ns()
        await one()
        lat.append(time.perf_counter_ns() - t)
        if s.gap:
            cpu += cpu_seconds() - c0
    return lat, (cpu if s.gap else cpu_seconds() - c0) / n


def run_async(how: str, loop_kind: str, s: _Setup, n: int) -> Result:
    items = _items(s.burst)

    async def measure() -> Result:
        conns = s.burst if how == "gather" else 1
        async with fastpool.AsyncPool(s.url, connections=conns, verify=s.verify(),
                                      engine=s.engine) as pool:
            async def one() -> None:
                if how == "pipeline":
                    results: Sequence[object] = await pool.pipeline(items)
                elif how == "sequential":
                    results = [await pool.get(path, params=p) for _, path, p in items]
                else:
                    results = await asyncio.gather(*(pool.get(path, params=p)
                                                     for _, path, p in items))
                _check(results, s.burst)

            return await _atimed(s, n, one)

    return common.run_on(loop_kind, measure())


Runner = Callable[[_Setup, int], Result]
CLIENTS: dict[str, Runner] = {
    "floor": run_floor,
    "sync-pipeline": partial(run_sync, "pipeline"),
    "sync-sequential": partial(run_sync, "sequential"),
    "sync-threads": partial(run_sync, "threads"),
    "asyncio-pipeline": partial(run_async, "pipeline", "asyncio"),
    "asyncio-sequential": partial(run_async, "sequential", "asyncio"),
    "asyncio-gather": partial(run_async, "gather", "asyncio"),
    "uvloop-pipeline": partial(run_async, "pipeline", "uvloop"),
    "uvloop-sequential": partial(run_async, "sequential", "uvloop"),
    "uvloop-gather": partial(run_async, "gather", "uvloop"),
}
COLUMNS = ["client", "p50 us", "p50 x floor", "p99 us", "CPU us", "CPU x floor"]


def measure(settings: Settings, *, n: int, burst: int = 10, gap_ms: float = 0.0,
            only: Sequence[str] = (), warm: int = SCRIPT_WARM) -> FeatureTable:
    """n bursts per client and round (only: those clients, the floor always where it can
    run), settings.rounds interleaved rounds of shuffled order; one table."""
    notes = []
    names = [c for c in CLIENTS if not only or c in only]
    if not common.uvloop_installed() and any(c.startswith("uvloop") for c in names):
        names = [c for c in names if not c.startswith("uvloop")]
        notes.append("uvloop is not installed: no uvloop-* rows")
    if settings.engine == "c":
        if "floor" not in names:
            names.insert(0, "floor")
    else:
        names = [c for c in names if c != "floor"]
        notes.append(f"no floor: it is the C engine's raw loop (engine {settings.engine}), "
                     f"so no ratios to it")
    results: dict[str, tuple[list[float], list[float], list[float]]] = {
        name: ([], [], []) for name in names}
    url, ca, server = common.start_server(settings.plain)
    try:
        setup = _Setup(url, ca, settings.engine, burst, gap_ms / 1000, warm)
        for r in range(settings.rounds):
            order = names[:]
            random.shuffle(order)
            for name in order:
                lat, cpu = CLIENTS[name](setup, n)
                results[name][0].append(pct(lat, 0.5) / 1000)
                results[name][1].append(pct(lat, 0.99) / 1000)
                results[name][2].append(cpu * 1e6)
            settings.log(f"pipeline: round {r + 1}/{settings.rounds} done")
    finally:
        common.stop_child(server)
    title = (f"pipeline: {'HTTP' if settings.plain else 'HTTPS (TLS 1.3)'}, embedded server "
             f"in a child process, engine {settings.engine}, bursts of {burst}, n={n} bursts x "
             f"{settings.rounds} rounds{f', {gap_ms:g} ms idle between bursts' if gap_ms else ''}"
             f", medians over rounds; per burst")
    table = FeatureTable("pipeline", title, COLUMNS, notes=notes)
    floor = results.get("floor")
    floor_p50 = statistics.median(floor[0]) if floor else None
    floor_cpu = statistics.median(floor[2]) if floor else None
    for name in names:
        p50s, p99s, cpus = results[name]
        p50, p99, cpu = (statistics.median(p50s), statistics.median(p99s),
                         statistics.median(cpus))
        table.add(name, p50, p50 / floor_p50 if floor_p50 else None, p99, cpu,
                  cpu / floor_cpu if floor_cpu else None)
    return table


def run(settings: Settings) -> list[FeatureTable]:
    """The ``pipeline`` mode of ``fastpool bench``."""
    n = settings.requests if settings.requests is not None else DEFAULT_N
    return [measure(settings, n=n, warm=DEFAULT_WARM)]


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("-n", type=int, default=SCRIPT_N, help="bursts per client and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--burst", type=int, default=10)
    ap.add_argument("--plain", action="store_true", help="HTTP instead of HTTPS (TLS 1.3)")
    ap.add_argument("--gap-ms", type=float, default=0.0, help="idle gap between bursts")
    ap.add_argument("--engine", default="c", choices=["c", "python"])
    ap.add_argument("--only", default="", help="comma-separated client names")
    args = ap.parse_args(argv)
    settings = Settings(requests=args.n, rounds=args.rounds, engine=args.engine,
                        plain=args.plain, log=lambda text: print(text, file=sys.stderr))
    only = [c for c in args.only.split(",") if c]
    print(measure(settings, n=args.n, burst=args.burst, gap_ms=args.gap_ms, only=only).format())


__all__ = ["main", "measure", "run"]
