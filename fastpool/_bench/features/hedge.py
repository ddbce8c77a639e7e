"""Hedged requests against a server that stalls a small fraction of its responses.

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
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import cpu_seconds, pct  # noqa: E402

import fastpool  # noqa: E402

SERVER = r"""
import heapq, select, socket, sys, time
stall_every, stall_s = int(sys.argv[1]), float(sys.argv[2])
body = b'{"symbol":"BTCUSDT","price":"67000.01"}'
resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body)
lsock = socket.socket()
lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
lsock.bind(("127.0.0.1", 0))
lsock.listen(64)
lsock.setblocking(False)
print(lsock.getsockname()[1], flush=True)
ep = select.epoll()
ep.register(lsock.fileno(), select.EPOLLIN)
ep.register(sys.stdin.fileno(), select.EPOLLIN)
conns, bufs, held = {}, {}, []
count = 0
while True:
    timeout = max(held[0][0] - time.monotonic(), 0) if held else -1
    for fd, _ in ep.poll(timeout):
        if fd == lsock.fileno():
            c, _ = lsock.accept()
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns[c.fileno()] = c
            bufs[c.fileno()] = b""
            ep.register(c.fileno(), select.EPOLLIN)
            continue
        if fd == sys.stdin.fileno():
            sys.exit(0)
        c = conns[fd]
        try:
            data = c.recv(65536)
        except BlockingIOError:
            continue
        except OSError:
            data = b""
        if not data:
            ep.unregister(fd)
            c.close()
            del conns[fd], bufs[fd]
            continue
        buf = bufs[fd] + data
        while b"\r\n\r\n" in buf:
            _, buf = buf.split(b"\r\n\r\n", 1)
            count += 1
            if stall_every and count % stall_every == 0:
                heapq.heappush(held, (time.monotonic() + stall_s, count, c))
            else:
                c.send(resp)
        bufs[fd] = buf
    now = time.monotonic()
    while held and held[0][0] <= now:
        _, _, c = heapq.heappop(held)
        if c.fileno() >= 0 and conns.get(c.fileno()) is c:  # not closed (nor its fd reused)
            try:
                c.send(resp)
            except OSError:
                pass
"""


#: Connections per pool: a loser the async pool drains holds its connection for the rest of
#: the stall (the sync pool closes it and the refill replaces it), and the copy needs an idle
#: one; 8 covers the stalls that overlap at this request rate.
CONNECTIONS = 8




def run_floor(url: str, n: int, hedge: object) -> tuple:
    from fastpool._engine import get_engine

    core = get_engine("c")
    with fastpool.Pool(url, connections=1, engine="c") as pool:
        req = b"GET /api/v3/ticker HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fastpool\r\n\r\n"
        conn = pool._policy.idle[0][0]
        c0 = cpu_seconds()
        lat, bad = core.floor_latencies(conn, req, n)
        c1 = cpu_seconds()
    assert not bad
    return lat, (c1 - c0) / n, 0, 0, 0


def run_sync(url: str, n: int, hedge: object, engine: str) -> tuple:
    with fastpool.Pool(url, connections=CONNECTIONS, engine=engine, hedge=hedge) as pool:
        for _ in range(200):
            pool.get("/api/v3/ticker")
        pool.reset_stats()
        lat = []
        c0 = cpu_seconds()
        for _ in range(n):
            t = time.perf_counter_ns()
            pool.get("/api/v3/ticker")
            lat.append(time.perf_counter_ns() - t)
        c1 = cpu_seconds()
        s = pool.stats()
    return lat, (c1 - c0) / n, s["hedges"], s["hedge_wins"], s["connects"]


async def _async(url: str, n: int, hedge: object, engine: str) -> tuple:
    async with fastpool.AsyncPool(url, connections=CONNECTIONS, engine=engine,
                                  hedge=hedge) as pool:
        for _ in range(200):
            await pool.get("/api/v3/ticker")
        pool.reset_stats()
        lat = []
        c0 = cpu_seconds()
        for _ in range(n):
            t = time.perf_counter_ns()
            await pool.get("/api/v3/ticker")
            lat.append(time.perf_counter_ns() - t)
        c1 = cpu_seconds()
        s = pool.stats()
    return lat, (c1 - c0) / n, s["hedges"], s["hedge_wins"], s["connects"]


def run_asyncio(url: str, n: int, hedge: object, engine: str) -> tuple:
    return asyncio.run(_async(url, n, hedge, engine))


def run_uvloop(url: str, n: int, hedge: object, engine: str) -> tuple:
    import uvloop

    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(_async(url, n, hedge, engine))
    finally:
        loop.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=5000)
    ap.add_argument("--stall-every", type=int, default=100)
    ap.add_argument("--stall-ms", type=float, default=50.0)
    ap.add_argument("--after", default="0.002", help='seconds, or a quantile like "p95"')
    ap.add_argument("--engine", default=fastpool.BACKEND)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    after = args.after if args.after.startswith("p") else float(args.after)
    hedge = fastpool.Hedge(after=after, budget=0.05)
    srv = subprocess.Popen([sys.executable, "-c", SERVER, str(args.stall_every),
                            str(args.stall_ms / 1000)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None
        port = int(srv.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        clients = []
        if args.engine == "c":
            clients.append(("floor (C loop, 1 conn)", run_floor, None))
        for name, fn in (("Pool", run_sync), ("AsyncPool/asyncio", run_asyncio),
                         ("AsyncPool/uvloop", run_uvloop)):
            if name.endswith("uvloop"):
                try:
                    import uvloop  # noqa: F401
                except ImportError:
                    continue
            for h in (None, hedge):
                label = f"{name} {'hedged' if h else 'unhedged'}"
                clients.append((label, lambda u, n, hh, f=fn: f(u, n, hh, args.engine), h))
        only = [s for s in args.only.split(",") if s]
        print(f"# {args.n} GETs each; server stalls 1 in {args.stall_every} responses for "
              f"{args.stall_ms:g} ms; hedge after={args.after} budget=0.05; engine "
              f"{args.engine}; python {sys.version.split()[0]}; pid {os.getpid()}")
        print(f"{'client':34} {'p50':>8} {'p99':>9} {'p99.9':>9} {'max':>9} {'>10ms':>6} "
              f"{'cpu/req':>8} {'hedges':>7} {'won':>5} {'opened':>6}   (us)")
        for label, fn, h in clients:
            if only and not any(o in label for o in only):
                continue
            lat, cpu, hedges, won, opened = fn(url, args.n, h)
            slow = sum(1 for x in lat if x > 10_000_000)
            print(f"{label:34} {pct(lat, 0.5) / 1e3:8.1f} {pct(lat, 0.99) / 1e3:9.1f} "
                  f"{pct(lat, 0.999) / 1e3:9.1f} {max(lat) / 1e3:9.1f} {slow:6d} "
                  f"{cpu * 1e6:8.1f} {hedges:7d} {won:5d} {opened:6d}", flush=True)
    finally:
        if srv.stdin is not None:
            srv.stdin.close()
        srv.wait(10)


if __name__ == "__main__":
    main()
