"""After-idle latency: the first request after an idle gap, for the floor and fastpool.Pool,
with keep-warm off and on (issue 11, item 10).

    .venv/bin/python bench/after_idle.py [--gaps 1ms,10ms,100ms,1s] [--counts 400,200,50,10]
                                         [--rounds 2] [--plain] [--engine c|python]

Configurations, each open only while it is measured (a keep-warm pool left open would warm
the machine for the others):

    floor                  the raw C client on one pre-opened connection (C-timed exchange)
    floor + ping 1ms       the same, while a thread pings a second raw connection every 1 ms
    floor + wake 1ms       the same, while a thread only wakes up every 1 ms (no I/O): how
                           much of what a ping buys is this CPU kept out of deep idle
    floor + server busy    the same, while another process pings the server every 1 ms: how
                           much is the (loopback) server kept awake, which a real gateway
                           serving others always is
    Pool                   fastpool.Pool(connections=2), keep-warm off
    Pool keep-warm 10ms    keep_warm=KeepWarm("/api/v3/ping", every=0.01)
    Pool keep-warm 1ms     keep_warm=KeepWarm("/api/v3/ping", every=0.001)

The server is the embedded one in a child process. For each gap, each configuration sleeps
the gap and makes one GET, ``count`` times, over ``rounds`` rounds in a shuffled order
(drift spreads over all). Printed: the warm p50 (100 back-to-back requests before each
series), and per gap the p50 and p90 after the gap with the ratio of the p50 to the floor's
warm p50; and the CPU the process used per second of wall time over the gap series (what
keep-warm costs while the strategy idles).
fastpool's samples are timed in Python around pool.get(); the floor's in C.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import threading
import time
from typing import Callable

from bench_common import FloorConn, PingerProcess, ServerProcess, pct

import fastpool

PATH = "/api/v3/ticker"


def parse_gap(text: str) -> float:
    text = text.strip()
    for unit, mul in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * mul
    return float(text)


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Config:
    """One configuration: open() gives a function making one timed request (ns)."""

    def __init__(self, name: str, server: ServerProcess, engine: str) -> None:
        self.name, self.server, self.engine = name, server, engine
        self._close: list[Callable[[], None]] = []

    def open(self) -> Callable[[], int]:
        s = self.server
        if self.name.startswith("floor"):
            floor = FloorConn(s)
            self._close.append(floor.close)
            if "server busy" in self.name:
                self._close[:0] = [PingerProcess(s, 0.001).close]
            elif "ping" in self.name or "wake" in self.name:
                other = FloorConn(s) if "ping" in self.name else None
                stop = threading.Event()

                def pinger() -> None:
                    while not stop.wait(0.001):
                        if other is not None:
                            other.once()

                t = threading.Thread(target=pinger, daemon=True)
                t.start()
                self._close[:0] = [stop.set, t.join] + ([other.close] if other else [])
            floor.once()
            return floor.once
        kw: dict = dict(s.pool_kwargs(), connections=2, engine=self.engine)
        if "keep-warm" in self.name:
            every = parse_gap(self.name.rsplit(" ", 1)[1])
            kw["keep_warm"] = fastpool.KeepWarm("/api/v3/ping", every=every)
        pool = fastpool.Pool(s.url, **kw)
        self._close.append(pool.close)
        get, pc = pool.get, time.perf_counter_ns

        def request() -> int:
            t0 = pc()
            r = get(PATH)
            t1 = pc()
            if r.status_code != 200:
                raise RuntimeError(f"status {r.status_code}")
            return t1 - t0

        request()
        self.pool = pool
        return request

    def close(self) -> None:
        for f in self._close:
            f()
        self._close = []


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gaps", default="1ms,10ms,100ms,1s")
    ap.add_argument("--counts", default="400,200,50,10")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--plain", action="store_true")
    ap.add_argument("--engine", default="c", choices=["c", "python"])
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    gap_names = args.gaps.split(",")
    gaps = [parse_gap(g) for g in gap_names]
    counts = [int(c) for c in args.counts.split(",")]
    if len(counts) != len(gaps):
        raise SystemExit("--counts needs one count per gap")
    names = ["floor", "floor + ping 1ms", "floor + wake 1ms", "floor + server busy", "Pool",
             "Pool keep-warm 10ms", "Pool keep-warm 1ms"]
    rng = random.Random(args.seed)
    samples: dict = {(n, g): [] for n in names for g in gap_names}
    cpu: dict = {(n, g): [0.0, 0.0] for n in names for g in gap_names}
    warm: dict = {n: [] for n in names}
    pings: dict = {n: 0 for n in names}
    with ServerProcess(args.plain) as server:
        for r in range(args.rounds):
            for g, gap, count in zip(gap_names, gaps, counts):
                per = count // args.rounds + (1 if r < count % args.rounds else 0)
                order = names[:]
                rng.shuffle(order)
                for n in order:
                    print(f"round {r + 1}/{args.rounds}, gap {g}, {n}", file=sys.stderr,
                          flush=True)
                    c = Config(n, server, args.engine)
                    req = c.open()
                    # Warm p50 (back to back) in every block: noise from other tenants
                    # spreads over it as over the gaps.
                    warm[n] += [req() for _ in range(100)]
                    c0, w0 = cpu_s(), time.perf_counter()
                    for _ in range(per):
                        time.sleep(gap)
                        samples[(n, g)].append(req())
                    cpu[(n, g)][0] += cpu_s() - c0
                    cpu[(n, g)][1] += time.perf_counter() - w0
                    if getattr(c, "pool", None) is not None:
                        pings[n] += c.pool.stats().get("pings", 0)
                    c.close()
    floor_warm = pct(warm["floor"], 0.5)
    proto = "HTTP" if args.plain else "HTTPS"
    print(f"\nafter-idle latency, {proto}, embedded server (child process), engine "
          f"{args.engine}; us; (xN) = p50 / floor's warm p50 ({floor_warm / 1e3:.1f} us)")
    head = f"{'':<21} {'warm p50':>9}"
    for g in gap_names:
        head += f" | {g + ' p50':>15} {'p90':>7} {'CPU':>5}"
    print(head)
    for n in names:
        w = pct(warm[n], 0.5)
        line = f"{n:<21} {w / 1e3:>9.1f}"
        for g in gap_names:
            s = samples[(n, g)]
            p50, p90 = pct(s, 0.5), pct(s, 0.9)
            share = cpu[(n, g)][0] / cpu[(n, g)][1] if cpu[(n, g)][1] else 0.0
            line += (f" | {p50 / 1e3:>7.1f} (x{p50 / floor_warm:>4.1f}) {p90 / 1e3:>7.1f} "
                     f"{share:>5.0%}")
        print(line)
    print("CPU: process CPU time per second of wall time over that gap's series (100% = one "
          "core). Counts per gap: " + ", ".join(f"{g} {c}" for g, c in zip(gap_names, counts)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
