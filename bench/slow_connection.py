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

import sys
from pathlib import Path

# run from a checkout: its fastpool (the module is fastpool._bench.features.choice)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fastpool._bench.features.choice import main

if __name__ == "__main__":
    main()
