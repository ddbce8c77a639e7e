"""Busy-poll (Pool(busy_poll=seconds)): latency and CPU per request with and without it,
warm and after idle gaps, beside the floor.

    .venv/bin/python bench/busy_poll.py [--busy 20e-6,100e-6] [--gaps 0,0.001,0.01]
                                        [-n 20000] [--rounds 3] [--plain] [--hogs N] [--pin]

The embedded server runs in a child process (its CPU is not counted). This process runs, for
each idle gap (0: back to back) and in interleaved rounds of shuffled order: the floor (a raw
C exchange on one pre-opened connection, no busy-poll), and the sync Pool on the C engine
with busy-poll off and at each --busy value, one connection each. A gap is a sleep between
requests (the strategy's idle time); the request after it is what counts for sporadic orders.
Printed per gap: p50, p99, p99.9 over every round's samples pooled (us), CPU per request
(this process's user + system time, median over rounds, us; the sleeps cost none) and the
p50 against the floor's. --hogs N starts N processes that burn a core each for the whole run:
with the 2 cores of a small VM, the spinning client then competes with the server it waits
for; --pin puts the client and the server on CPUs of their own (as a strategy that dedicates
a core would; other processes may still run there). Requests per gap: n back to back, n/4
with a gap under 5 ms, n/20 otherwise (a 10 ms gap makes 1000 requests last 10 s); the tail
of fewer samples is coarser: p99.9 of 5 x 1000 is the 5th largest.

As the ``busy-poll`` mode of ``fastpool bench``, run() measures gaps 0 and 1 ms only, with
n = DEFAULT_N. busy_poll is a C engine feature (the pure engine's Pool refuses it with
ValueError): with engine "python" the mode measures nothing and says so.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from typing import Optional, Sequence

import fastpool

from . import common
from .common import Settings, cpu_seconds, pct
from .table import FeatureTable

PATH = "/api/v3/ticker"
REQUEST = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fastpool\r\n\r\n".encode()
HOG = "while True: pass"
WARM = 500             #: untimed requests before each client's timed ones
SCRIPT_N = 20000       #: requests back to back per client and round, standalone (-n)
SCRIPT_GAPS = (0.0, 0.001, 0.01)
DEFAULT_N = 5000       #: the same in a `fastpool bench` run: about 20-25 s for the whole mode
DEFAULT_GAPS = (0.0, 0.001)
DEFAULT_BUSY = (20e-6, 100e-6)
COLUMNS = ["client", "p50 us", "p99 us", "p99.9 us", "CPU us/req", "p50 x floor"]

Result = tuple[list[int], float]  # wall ns per request, CPU seconds per request


def count_after(n: int, gap: float) -> int:
    """Requests per client and round after a gap: n back to back, n/4 with a gap under 5 ms,
    n/20 otherwise (so that a gap's run stays short), at least 1."""
    if gap == 0:
        return n
    return max(1, n // 4 if gap < 0.005 else n // 20)


def run_floor(url: str, ca: str, n: int, gap: float) -> Result:
    from fastpool._engine import _core

    with fastpool.Pool(url, connections=1, verify=ca or True, engine="c") as pool:
        conn = common.floor_connection(pool)
        _core.floor_latencies(conn, REQUEST, WARM)
        c0 = cpu_seconds()
        if gap == 0:
            lat, bad = _core.floor_latencies(conn, REQUEST, n)
        else:
            lat, bad = [], 0
            for _ in range(n):
                time.sleep(gap)
                one, b = _core.floor_latencies(conn, REQUEST, 1)
                lat += one
                bad += b
        c1 = cpu_seconds()
    if bad:
        raise RuntimeError(f"the floor had {bad} bad responses")
    return lat, (c1 - c0) / n


def run_pool(url: str, ca: str, n: int, gap: float, busy: float) -> Result:
    with fastpool.Pool(url, connections=1, verify=ca or True, engine="c",
                       busy_poll=busy or None) as pool:
        for _ in range(WARM):
            pool.get(PATH)
        lat = []
        # locals: the loop's own overhead is then the smallest it can be in Python
        now = time.perf_counter_ns
        get = pool.get
        sleep = time.sleep
        c0 = cpu_seconds()
        for _ in range(n):
            if gap:
                sleep(gap)
            t = now()
            get(PATH)
            lat.append(now() - t)
        c1 = cpu_seconds()
    return lat, (c1 - c0) / n


def _label(busy: float) -> str:
    return "pool busy=off" if busy == 0 else f"pool busy={busy * 1e6:g}us"


def measure(settings: Settings, *, n: int, gaps: Sequence[float] = SCRIPT_GAPS,
            busy: Sequence[float] = DEFAULT_BUSY, hogs: int = 0,
            pin: bool = False) -> list[FeatureTable]:
    """One table per gap: the floor and the Pool with busy-poll off and at each busy value,
    n requests (back to back; fewer after a gap, count_after) per client and round."""
    tls = "HTTP" if settings.plain else "HTTPS (TLS 1.3)"
    if settings.engine != "c":
        return [FeatureTable(
            "busy-poll", f"busy-poll: {tls}, engine {settings.engine}: not measured",
            COLUMNS, notes=["busy_poll is a C engine feature: the pure engine's Pool refuses "
                            "it (ValueError), and the floor is the C engine's too"])]
    busies = [0.0, *busy]
    names = ["floor"] + [_label(b) for b in busies]
    cpus = sorted(os.sched_getaffinity(0))
    if pin and len(cpus) < 2:
        raise ValueError("pin needs 2 CPUs")
    affinity = set(cpus)
    out: dict[float, tuple[int, dict[str, tuple[list[int], list[float]]]]] = {}
    hog_procs = []
    try:
        if pin:  # restored below: run() may be in the fastpool bench process
            os.sched_setaffinity(0, {cpus[0]})
        url, ca, server = common.start_server(settings.plain, cpu=cpus[-1] if pin else None)
        try:
            hog_procs = [common.python_child(HOG) for _ in range(hogs)]
            for gap in gaps:
                count = count_after(n, gap)
                res: dict[str, tuple[list[int], list[float]]] = {
                    name: ([], []) for name in names}
                for r in range(settings.rounds):
                    order: list[Optional[float]] = [None, *busies]  # None: the floor
                    random.shuffle(order)
                    for b in order:
                        if b is None:
                            name, (lat, cpu) = "floor", run_floor(url, ca, count, gap)
                        else:
                            name, (lat, cpu) = _label(b), run_pool(url, ca, count, gap, b)
                        res[name][0].extend(lat)
                        res[name][1].append(cpu * 1e6)
                    settings.log(f"busy-poll: gap {gap * 1e3:g} ms: round {r + 1}/"
                                 f"{settings.rounds} done")
                out[gap] = (count, res)
        finally:
            for hog in hog_procs:  # they never read stdin: killed
                hog.kill()
                common.stop_child(hog)
            common.stop_child(server)
    finally:
        if pin:
            os.sched_setaffinity(0, affinity)
    head = (f"busy-poll: {tls}, embedded server in a child process, {os.cpu_count()} CPUs"
            f"{', client and server pinned apart' if pin else ''}, {hogs} hog process(es), "
            f"{settings.rounds} rounds; latency percentiles over all rounds' samples, "
            f"CPU: median over rounds")
    tables = []
    for gap, (count, res) in out.items():
        title = (f"{head}; gap {'none (back to back)' if gap == 0 else f'{gap * 1e3:g} ms'}, "
                 f"{count} requests x {settings.rounds} rounds")
        table = FeatureTable("busy-poll", title, COLUMNS)
        floor_p50 = pct(res["floor"][0], 0.5) / 1000
        for name in names:
            lat, cpu_us = res[name]
            p50 = pct(lat, 0.5) / 1000
            table.add(name, p50, pct(lat, 0.99) / 1000, pct(lat, 0.999) / 1000,
                      statistics.median(cpu_us), p50 / floor_p50)
        tables.append(table)
    return tables


def run(settings: Settings) -> list[FeatureTable]:
    """The ``busy-poll`` mode of ``fastpool bench``: gaps 0 and 1 ms."""
    n = settings.requests if settings.requests is not None else DEFAULT_N
    return measure(settings, n=n, gaps=DEFAULT_GAPS)


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--busy", default="20e-6,100e-6", help="busy_poll values (seconds)")
    ap.add_argument("--gaps", default="0,0.001,0.01", help="idle gaps (seconds)")
    ap.add_argument("-n", type=int, default=SCRIPT_N, help="requests back to back per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plain", action="store_true", help="HTTP instead of HTTPS (TLS 1.3)")
    ap.add_argument("--hogs", type=int, default=0, help="CPU-burning processes meanwhile")
    ap.add_argument("--pin", action="store_true",
                    help="the client on the first CPU, the server on the last (Linux)")
    args = ap.parse_args(argv)
    if args.pin and len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("--pin needs 2 CPUs")
    settings = Settings(requests=args.n, rounds=args.rounds, plain=args.plain,
                        log=lambda text: print(text, file=sys.stderr))
    tables = measure(settings, n=args.n, gaps=[float(g) for g in args.gaps.split(",") if g],
                     busy=[float(b) for b in args.busy.split(",") if b], hogs=args.hogs,
                     pin=args.pin)
    print("\n\n".join(t.format() for t in tables))


__all__ = ["count_after", "main", "measure", "run"]
