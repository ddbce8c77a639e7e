"""Latency-aware choice against a gateway address that is slow: choose="fastest" vs "hottest".

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
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Tuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench_common import cpu_seconds, pct  # noqa: E402

import fastpool  # noqa: E402

SERVER = r"""
import heapq, select, socket, sys, time
slow_s = float(sys.argv[1])
body = b'{"symbol":"BTCUSDT","price":"67000.01"}'
resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\n\r\n" + body)
fast = socket.socket()
fast.bind(("127.0.0.1", 0))
port = fast.getsockname()[1]
slow = socket.socket()
slow.bind(("127.0.0.2", port))
ep = select.epoll()
listeners = {}
for s, is_slow in ((fast, False), (slow, True)):
    s.listen(64)
    s.setblocking(False)
    listeners[s.fileno()] = (s, is_slow)
    ep.register(s.fileno(), select.EPOLLIN)
ep.register(sys.stdin.fileno(), select.EPOLLIN)
print(port, flush=True)
conns, bufs, held = {}, {}, []
seq = 0
while True:
    timeout = max(held[0][0] - time.monotonic(), 0) if held else -1
    for fd, _ in ep.poll(timeout):
        if fd in listeners:
            lsock, is_slow = listeners[fd]
            c, _ = lsock.accept()
            c.setblocking(False)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conns[c.fileno()] = (c, is_slow)
            bufs[c.fileno()] = b""
            ep.register(c.fileno(), select.EPOLLIN)
            continue
        if fd == sys.stdin.fileno():
            sys.exit(0)
        c, is_slow = conns[fd]
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
            if is_slow:
                seq += 1
                heapq.heappush(held, (time.monotonic() + slow_s, seq, c))
            else:
                c.send(resp)
        bufs[fd] = buf
    now = time.monotonic()
    while held and held[0][0] <= now:
        _, _, c = heapq.heappop(held)
        entry = conns.get(c.fileno())
        if entry is not None and entry[0] is c:  # not closed (nor its descriptor reused)
            try:
                c.send(resp)
            except OSError:
                pass
"""

ADDRESSES = ["127.0.0.1", "127.0.0.2"]
CONNECTIONS = 4
WARMUP = 200



def _pct(xs: Any, q: float) -> float:
    return pct(xs, q) / 1e3


def run_sync(url: str, choose: str, engine: str, n: int, k: int) -> Tuple[List[int], float, int]:
    with fastpool.Pool(url, connections=CONNECTIONS, addresses=ADDRESSES, choose=choose,
                       engine=engine, timeout=5.0) as pool:
        for _ in range(WARMUP):
            pool.get("/api/v3/ticker")
        time.sleep(1.2)  # one slow-connection check (every second) replaces what it found
        for _ in range(WARMUP):
            pool.get("/api/v3/ticker")
        per = n // k
        lat: List[List[int]] = [[] for _ in range(k)]

        def work(out: List[int]) -> None:
            clock = time.perf_counter_ns
            for _ in range(per):
                t = clock()
                pool.get("/api/v3/ticker")
                out.append(clock() - t)

        threads = [threading.Thread(target=work, args=(lat[i],)) for i in range(k)]
        c0 = cpu_seconds()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        cpu = cpu_seconds() - c0
        rotations = pool.stats()["rotations"]
    flat = [x for part in lat for x in part]
    return flat, cpu / len(flat) * 1e6, rotations


def run_async(url: str, choose: str, engine: str, n: int, k: int
              ) -> Tuple[List[int], float, int]:
    async def main() -> Tuple[List[int], float, int]:
        async with fastpool.AsyncPool(url, connections=CONNECTIONS, addresses=ADDRESSES,
                                      choose=choose, engine=engine, timeout=5.0) as pool:
            for _ in range(WARMUP):
                await pool.get("/api/v3/ticker")
            await asyncio.sleep(1.2)
            for _ in range(WARMUP):
                await pool.get("/api/v3/ticker")
            per = n // k
            lat: List[List[int]] = [[] for _ in range(k)]

            async def work(out: List[int]) -> None:
                clock = time.perf_counter_ns
                for _ in range(per):
                    t = clock()
                    await pool.get("/api/v3/ticker")
                    out.append(clock() - t)

            c0 = cpu_seconds()
            await asyncio.gather(*(work(lat[i]) for i in range(k)))
            cpu = cpu_seconds() - c0
            rotations = pool.stats()["rotations"]
        flat = [x for part in lat for x in part]
        return flat, cpu / len(flat) * 1e6, rotations

    return asyncio.run(main())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=4000, help="measured requests per pool")
    ap.add_argument("--slow-ms", type=float, default=1.0)
    ap.add_argument("--concurrency", default="1,4")
    ap.add_argument("--engine", default="c", choices=("c", "python"))
    ap.add_argument("--drivers", default="sync,asyncio")
    a = ap.parse_args()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(a.slow_ms / 1e3)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"http://127.0.0.1:{port}"
        runners: dict[str, Any] = {"sync": run_sync, "asyncio": run_async}
        threshold_ns = a.slow_ms * 1e6 / 2
        print(f"one of two gateway addresses holds every answer {a.slow_ms:g} ms; "
              f"{CONNECTIONS} connections over both, {a.engine} engine, n={a.n}")
        print(f"{'driver':8} {'choose':8} {'k':>2} {'p50 us':>8} {'p90 us':>8} "
              f"{'p99 us':>8} {'slow %':>7} {'CPU us':>7} {'rotated':>7}")
        for k in (int(x) for x in a.concurrency.split(",")):
            for driver in a.drivers.split(","):
                for choose in ("hottest", "fastest"):
                    lat, cpu, rotated = runners[driver](url, choose, a.engine, a.n, k)
                    slow = sum(1 for x in lat if x > threshold_ns) / len(lat) * 100
                    print(f"{driver:8} {choose:8} {k:2} {_pct(lat, 0.5):8.1f} "
                          f"{_pct(lat, 0.9):8.1f} {_pct(lat, 0.99):8.1f} {slow:7.1f} "
                          f"{cpu:7.1f} {rotated:7}", flush=True)
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(5)


if __name__ == "__main__":
    main()
