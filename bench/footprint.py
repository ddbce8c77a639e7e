"""Footprint: resident memory of one pool holding many idle TLS connections.

    .venv/bin/python bench/footprint.py [--connections 1000] [--drivers sync,asyncio,uvloop]
                                        [--engines c,python] [--plain]

The embedded server runs in this process; each measurement runs in a fresh child process
(``--child``), so the child's RSS is the client's alone: the interpreter with fastpool
imported, then a Pool or AsyncPool with ``connections`` TLS connections opened and idle.
It prints, per engine and driver, RSS before the pool, with it, and the growth per
connection; the wall and CPU time of opening the pool (the initial fill, TLS handshakes
included) and how many of its handshakes resumed a session. The soft RLIMIT_NOFILE is
raised to the hard limit in both processes.
tests/test_footprint.py runs the same child with fewer connections and asserts only that
the growth per connection is bounded. Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time


def raise_nofile(need: int) -> None:
    """Soft RLIMIT_NOFILE up to ``need`` (at most the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(url: str, ca: str, n: int, driver: str, engine: str) -> dict:
    """In the child: RSS after import, then with a pool of n idle connections."""
    raise_nofile(n + 256)
    import fastpool
    from fastpool._bench.features.common import cpu_seconds

    kw: dict = {"connections": n, "engine": engine, "timeout": 30.0}
    if ca:
        kw["verify"] = ca
    gc.collect()
    before = rss_bytes()
    if driver == "sync":
        t0, c0 = time.perf_counter(), cpu_seconds()
        pool = fastpool.Pool(url, **kw)
        opening = (time.perf_counter() - t0, cpu_seconds() - c0)
        resumed = pool.stats()["resumed"]
        pool.get("/")  # used once: one connection has also carried an exchange
        gc.collect()
        after = rss_bytes()
        fds = len(os.listdir("/proc/self/fd"))
        pool.close()
    else:
        async def run() -> tuple[int, int, tuple[float, float], int]:
            t0, c0 = time.perf_counter(), cpu_seconds()
            async with fastpool.AsyncPool(url, **kw) as apool:
                opened = (time.perf_counter() - t0, cpu_seconds() - c0)
                got = apool.stats()["resumed"]
                await apool.get("/")
                gc.collect()
                return rss_bytes(), len(os.listdir("/proc/self/fd")), opened, got

        if driver == "uvloop":
            import uvloop

            after, fds, opening, resumed = uvloop.run(run())
        else:
            after, fds, opening, resumed = asyncio.run(run())
    return {"driver": driver, "engine": engine, "connections": n, "rss_before": before,
            "rss_after": after, "fds": fds, "open_s": opening[0], "open_cpu_s": opening[1],
            "resumed": resumed}


def measure(url: str, ca: str, n: int, driver: str, engine: str) -> dict:
    """Runs the child (this file with --child) and returns what it measured. The child
    imports the same fastpool as this process (sys.path[0] is bench/ there)."""
    import fastpool

    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(fastpool.__file__)))
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child", url, ca or "-", str(n), driver,
         engine], check=True, capture_output=True, text=True, timeout=600, env=env)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, ca, n, driver, engine = sys.argv[2:7]
        print(json.dumps(child(url, "" if ca == "-" else ca, int(n), driver, engine)))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--drivers", default="sync,asyncio,uvloop")
    ap.add_argument("--engines", default="c,python")
    ap.add_argument("--plain", action="store_true")
    args = ap.parse_args()
    raise_nofile(args.connections + 256)
    from fastpool._bench._server import EmbeddedServer

    print(f"{args.connections} idle {'plain' if args.plain else 'TLS'} connections in one pool "
          f"(child process RSS, MiB)")
    print(f"{'engine':<7} {'driver':<8} {'before':>7} {'with pool':>9} {'growth':>7} "
          f"{'KiB/conn':>8} {'fds':>5} {'open ms':>8} {'CPU ms':>7} {'resumed':>7}")
    with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(tls=not args.plain) as srv:
        ca = "" if args.plain else srv.write_ca(os.path.join(tmp, "ca.pem"))
        for engine in args.engines.split(","):
            for driver in args.drivers.split(","):
                m = measure(srv.url, ca, args.connections, driver, engine)
                grow = m["rss_after"] - m["rss_before"]
                print(f"{engine:<7} {driver:<8} {m['rss_before'] / 2**20:>7.1f} "
                      f"{m['rss_after'] / 2**20:>9.1f} {grow / 2**20:>7.1f} "
                      f"{grow / args.connections / 1024:>8.1f} {m['fds']:>5} "
                      f"{m['open_s'] * 1e3:>8.0f} {m['open_cpu_s'] * 1e3:>7.0f} "
                      f"{m['resumed']:>7}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
