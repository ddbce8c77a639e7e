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

import sys
from pathlib import Path

# run from a checkout: its fastpool (the module is fastpool._bench.features.hedge)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastpool._bench.features.hedge import main

if __name__ == "__main__":
    main()
