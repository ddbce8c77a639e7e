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
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import cpu_seconds, pct  # noqa: E402

import fastpool  # noqa: E402

SERVER = """
import os, sys
if {pin}:
    os.sched_setaffinity(0, {{{server_cpu}}})
from fastpool._bench._server import EmbeddedServer
srv = EmbeddedServer(tls={tls}, body_size=137).start()
if {tls}:
    srv.write_ca({ca!r})
print(srv.port, flush=True)
sys.stdin.read()
srv.stop()
"""

HOG = "while True: pass"

REQUEST = b"GET /api/v3/ticker HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fastpool\r\n\r\n"



def _pct(xs: Any, q: float) -> float:
    return pct(xs, q) / 1000


def _warm(pool: fastpool.Pool) -> None:
    for _ in range(500):
        pool.get("/api/v3/ticker")


def run_floor(url: str, ca: str, n: int, gap: float) -> tuple[list[int], float]:
    from fastpool._engine import _core

    with fastpool.Pool(url, connections=1, verify=ca or True, engine="c") as pool:
        conn = pool._policy.idle[0][0]
        _core.floor_latencies(conn, REQUEST, 500)
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
    assert not bad
    return lat, (c1 - c0) / n


def run_pool(url: str, ca: str, n: int, gap: float, busy: float) -> tuple[list[int], float]:
    with fastpool.Pool(url, connections=1, verify=ca or True, engine="c",
                       busy_poll=busy or None) as pool:
        _warm(pool)
        lat = []
        now = time.perf_counter_ns
        get = pool.get
        sleep = time.sleep
        c0 = cpu_seconds()
        for _ in range(n):
            if gap:
                sleep(gap)
            t = now()
            get("/api/v3/ticker")
            lat.append(now() - t)
        c1 = cpu_seconds()
    return lat, (c1 - c0) / n


def _label(busy: float) -> str:
    return "pool busy=off" if busy == 0 else f"pool busy={busy * 1e6:g}us"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--busy", default="20e-6,100e-6", help="busy_poll values (seconds)")
    ap.add_argument("--gaps", default="0,0.001,0.01", help="idle gaps (seconds)")
    ap.add_argument("-n", type=int, default=20000, help="requests back to back per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--plain", action="store_true", help="HTTP instead of HTTPS (TLS 1.3)")
    ap.add_argument("--hogs", type=int, default=0, help="CPU-burning processes meanwhile")
    ap.add_argument("--pin", action="store_true",
                    help="the client on the first CPU, the server on the last (Linux)")
    args = ap.parse_args()
    cpus = sorted(os.sched_getaffinity(0)) if args.pin else [0]
    if args.pin:
        if len(cpus) < 2:
            raise SystemExit("--pin needs 2 CPUs")
        os.sched_setaffinity(0, {cpus[0]})
    busies = [0.0] + [float(b) for b in args.busy.split(",") if b]
    gaps = [float(g) for g in args.gaps.split(",") if g]
    tmp = tempfile.mkdtemp()
    ca = "" if args.plain else os.path.join(tmp, "ca.pem")
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER.format(tls=not args.plain, ca=ca, pin=args.pin,
                                             server_cpu=cpus[-1])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=str(ROOT))
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.hogs)]
    names = ["floor"] + [_label(b) for b in busies]
    out: dict = {}
    try:
        port = int(server.stdout.readline())
        url = f"{'http' if args.plain else 'https'}://127.0.0.1:{port}"
        for gap in gaps:
            n = args.n if gap == 0 else (args.n // 4 if gap < 0.005 else args.n // 20)
            res = {name: ([], []) for name in names}
            for r in range(args.rounds):
                order = [("floor", None)] + [(_label(b), b) for b in busies]
                random.shuffle(order)
                for name, busy in order:
                    if busy is None:
                        lat, cpu = run_floor(url, ca, n, gap)
                    else:
                        lat, cpu = run_pool(url, ca, n, gap, busy)
                    res[name][0].extend(lat)
                    res[name][1].append(cpu * 1e6)
                print(f"gap {gap * 1e3:g} ms: round {r + 1}/{args.rounds} done", file=sys.stderr)
            out[gap] = (n, res)
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
        server.stdin.close()
        server.wait(10)
    print(f"{'HTTP' if args.plain else 'HTTPS (TLS 1.3)'}, embedded server in a child process, "
          f"{os.cpu_count()} CPUs{', client and server pinned apart' if args.pin else ''}, "
          f"{args.hogs} hog process(es), {args.rounds} rounds; "
          f"latency percentiles over all rounds' samples, CPU: median over rounds")
    for gap, (n, res) in out.items():
        print(f"\ngap {'none (back to back)' if gap == 0 else f'{gap * 1e3:g} ms'}, "
              f"{n} requests x {args.rounds} rounds")
        print(f"{'client':18} {'p50 us':>8} {'p99 us':>8} {'p99.9 us':>9} {'CPU us/req':>11} "
              f"{'p50 x floor':>12}")
        floor_p50 = _pct(res["floor"][0], 0.5)
        for name in names:
            lat, cpus = res[name]
            p50 = _pct(lat, 0.5)
            print(f"{name:18} {p50:8.1f} {_pct(lat, 0.99):8.1f} {_pct(lat, 0.999):9.1f} "
                  f"{statistics.median(cpus):11.1f} {p50 / floor_p50:12.2f}")


if __name__ == "__main__":
    main()
