"""Hedged requests against a server that stalls a small fraction of its responses (the
``hedge`` mode of ``fastpool bench``; standalone ``bench/hedge.py``).

    .venv/bin/python bench/hedge.py [-n 5000] [--stall-every 100] [--stall-ms 50]
                                    [--after 0.002] [--engine c] [--only NAME,...]

The server (a child process: its CPU is not counted) answers GETs on keep-alive connections
from one epoll loop, and holds every ``stall-every``-th response (1 % by default) for
``stall-ms`` milliseconds without blocking its other connections — a slow server behind the
gateway. This process then sends n sequential GETs per client, side by side in one run: the
floor (the C engine's raw loop on one connection, C engine only), Pool and AsyncPool
(asyncio, uvloop when installed) without hedging, and the same with
``hedge=fastpool.Hedge(after=..., budget=0.05)``, on a pool of 8 connections. Printed per
client: p50 / p99 / p99.9 / max wall latency (us), requests over 10 ms, CPU per request (us:
this process's user + system time, all threads), the copies sent and won
(stats()["hedges"], ["hedge_wins"]) and the connections opened while measuring.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, NamedTuple, Optional, Sequence, Union

import fastpool

from .common import (
    Settings,
    cpu_seconds,
    floor_connection,
    holding_server,
    pct,
    run_on,
    uvloop_installed,
)
from .table import FeatureTable

MODE = "hedge"
#: GETs per client when Settings.requests is None: 7 clients, the unhedged ones waiting out
#: 1 % of stalls of 50 ms, take about 20 s on a 2-core machine (p99.9: the 8th slowest).
DEFAULT_REQUESTS = 8000
#: Connections per pool: a loser the async pool drains holds its connection for the rest of
#: the stall (the sync pool closes it and the refill replaces it), and the copy needs an idle
#: one; 8 covers the stalls that overlap at this request rate.
CONNECTIONS = 8
WARMUP = 200           #: GETs before measuring (connections open, stats reset after)
BUDGET = 0.05
PATH = "/api/v3/ticker"
COLUMNS = ["client", "p50", "p99", "p99.9", "max", ">10ms", "cpu/req", "hedges", "won",
           "opened"]
FLOOR = "floor (C loop, 1 conn)"


class Sample(NamedTuple):
    latencies: list[int]    #: wall time of each request (ns)
    cpu: float              #: this process's CPU seconds per request
    hedges: int             #: copies sent (stats()["hedges"])
    won: int                #: copies that answered first (stats()["hedge_wins"])
    opened: int             #: connections opened while measuring (stats()["connects"])


#: (url, n, hedge or None, engine) -> Sample
Client = Callable[[str, int, Optional[fastpool.Hedge], str], Sample]


def run_floor(url: str, n: int, hedge: Optional[fastpool.Hedge], engine: str) -> Sample:
    """The C engine's own loop on one connection (no hedging: the bound of what a request
    costs without a pool around it)."""
    from fastpool._engine import _core

    with fastpool.Pool(url, connections=1, engine="c") as pool:
        req = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fastpool\r\n\r\n".encode()
        conn = floor_connection(pool)
        c0 = cpu_seconds()
        lat, bad = _core.floor_latencies(conn, req, n)
        c1 = cpu_seconds()
    if bad:
        raise RuntimeError(f"the floor got {bad} bad answers")
    return Sample(list(lat), (c1 - c0) / n, 0, 0, 0)


def run_sync(url: str, n: int, hedge: Optional[fastpool.Hedge], engine: str) -> Sample:
    with fastpool.Pool(url, connections=CONNECTIONS, engine=engine, hedge=hedge) as pool:
        for _ in range(WARMUP):
            pool.get(PATH)
        pool.reset_stats()
        lat = []
        c0 = cpu_seconds()
        for _ in range(n):
            t = time.perf_counter_ns()
            pool.get(PATH)
            lat.append(time.perf_counter_ns() - t)
        c1 = cpu_seconds()
        s = pool.stats()
    return Sample(lat, (c1 - c0) / n, s["hedges"], s["hedge_wins"], s["connects"])


async def _async(url: str, n: int, hedge: Optional[fastpool.Hedge], engine: str) -> Sample:
    async with fastpool.AsyncPool(url, connections=CONNECTIONS, engine=engine,
                                  hedge=hedge) as pool:
        for _ in range(WARMUP):
            await pool.get(PATH)
        pool.reset_stats()
        lat = []
        c0 = cpu_seconds()
        for _ in range(n):
            t = time.perf_counter_ns()
            await pool.get(PATH)
            lat.append(time.perf_counter_ns() - t)
        c1 = cpu_seconds()
        s = pool.stats()
    return Sample(lat, (c1 - c0) / n, s["hedges"], s["hedge_wins"], s["connects"])


def run_asyncio(url: str, n: int, hedge: Optional[fastpool.Hedge], engine: str) -> Sample:
    return run_on("asyncio", _async(url, n, hedge, engine))


def run_uvloop(url: str, n: int, hedge: Optional[fastpool.Hedge], engine: str) -> Sample:
    return run_on("uvloop", _async(url, n, hedge, engine))


def clients(engine: str, notes: list[str]) -> list[tuple[str, Client, bool]]:
    """(label, client, hedged) in the order measured; what is skipped goes in notes."""
    out: list[tuple[str, Client, bool]] = []
    if engine == "c":
        out.append((FLOOR, run_floor, False))
    else:
        notes.append(f"{FLOOR}: skipped, the floor needs the C engine (engine {engine})")
    drivers: list[tuple[str, Client]] = [("Pool", run_sync), ("AsyncPool/asyncio", run_asyncio)]
    if uvloop_installed():
        drivers.append(("AsyncPool/uvloop", run_uvloop))
    else:
        notes.append("AsyncPool/uvloop: skipped, uvloop is not installed")
    for name, client in drivers:
        out.append((f"{name} unhedged", client, False))
        out.append((f"{name} hedged", client, True))
    return out


def measure(settings: Settings, stall_every: int = 100, stall_ms: float = 50.0,
            after: Union[float, str] = 0.002, only: Sequence[str] = ()) -> FeatureTable:
    """The table: one row per client whose label contains one of ``only`` (all if empty)."""
    n = settings.requests or DEFAULT_REQUESTS
    hedge = fastpool.Hedge(after=after, budget=BUDGET)
    stalls = (f"stalls 1 in {stall_every} responses for {stall_ms:g} ms" if stall_every
              else "stalls no response")
    table = FeatureTable(
        MODE, f"hedge: {n:,} sequential GETs per client, {CONNECTIONS} connections per pool; "
        f"the server {stalls}; Hedge(after={after}, budget={BUDGET}); engine "
        f"{settings.engine}; plain HTTP (the server has no TLS); one pass (no rounds); "
        f"latency and CPU per request in us", list(COLUMNS))
    chosen = [c for c in clients(settings.engine, table.notes)
              if not only or any(o in c[0] for o in only)]
    with holding_server(stall_ms / 1e3, every=stall_every) as port:
        url = f"http://127.0.0.1:{port}"
        for i, (label, client, hedged) in enumerate(chosen, 1):
            settings.log(f"hedge: {label} ({i}/{len(chosen)}), {n:,} GETs")
            s = client(url, n, hedge if hedged else None, settings.engine)
            lat = s.latencies
            table.add(label, pct(lat, 0.5) / 1e3, pct(lat, 0.99) / 1e3, pct(lat, 0.999) / 1e3,
                      max(lat) / 1e3, sum(1 for x in lat if x > 10_000_000), s.cpu * 1e6,
                      s.hedges, s.won, s.opened)
    return table


def run(settings: Settings) -> list[FeatureTable]:
    return [measure(settings)]


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("-n", type=int, default=5000, help="GETs per client")
    ap.add_argument("--stall-every", type=int, default=100)
    ap.add_argument("--stall-ms", type=float, default=50.0)
    ap.add_argument("--after", default="0.002", help='seconds, or a quantile like "p95"')
    ap.add_argument("--engine", default=fastpool.BACKEND)
    ap.add_argument("--only", default="", help="clients whose label contains one of these")
    args = ap.parse_args(argv)
    after: Union[float, str] = args.after if args.after.startswith("p") else float(args.after)
    # progress on stderr, one line per client (the table goes to stdout when all are done)
    settings = Settings(requests=args.n, engine=args.engine,
                        log=lambda text: print(text, file=sys.stderr, flush=True))
    table = measure(settings, stall_every=args.stall_every,
                    stall_ms=args.stall_ms, after=after,
                    only=[s for s in args.only.split(",") if s])
    print(table.format(), flush=True)


if __name__ == "__main__":
    main()
