"""Resident memory per TLS connection opened and closed (issue 10, defect 10).

    .venv/bin/python bench/pure_tls_leak.py [--engine python|c] [--n 2000] [--tls 1.2|1.3]
                                           [--no-resume] [--exchange]

Opens and closes n TLS connections to the embedded server (in this process: its memory is
flat per connection, as the C engine's run shows) through one engine's TLSContext +
Connection, and prints RSS (/proc/self/statm) every n/10 reconnects, with the growth per
connection over the second half (the first half warms caches and allocator arenas).
Measures; asserts nothing.
"""

from __future__ import annotations

import argparse
import gc
import os
import socket
import time


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="python", choices=["python", "c"])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--tls", default="1.3", choices=["1.2", "1.3"])
    ap.add_argument("--no-resume", action="store_true", help="forget the session each time")
    ap.add_argument("--exchange", action="store_true", help="one GET per connection")
    args = ap.parse_args()
    from fastpool._bench._server import EmbeddedServer
    if args.engine == "python":
        from fastpool._engine import _pure as eng
    else:
        from fastpool._engine import _core as eng
    with EmbeddedServer(tls=True, tls_max=args.tls) as srv:
        tls = eng.TLSContext(verify=True, ca_pem=srv.ca_pem, min_version=args.tls,
                             max_version=args.tls)
        request = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
        marks = []
        t0 = time.perf_counter()
        for i in range(args.n + 1):
            if i % max(1, args.n // 10) == 0:
                gc.collect()
                marks.append((i, rss()))
                print(f"{i:6d} connections  rss {marks[-1][1] / 1e6:8.2f} MB", flush=True)
            conn = eng.Connection()
            conn.open(socket.AF_INET, "127.0.0.1", srv.port, tls, "localhost", True,
                      time.monotonic_ns() + 5_000_000_000)
            if args.exchange:
                conn.exchange(request, False, -1, 5_000_000_000, 0)
            conn.close()
            if args.no_resume:
                tls.forget_session()
        half = marks[len(marks) // 2]
        last = marks[-1]
        per = (last[1] - half[1]) / max(1, last[0] - half[0])
        print(f"engine={args.engine} tls={args.tls} resume={not args.no_resume} "
              f"exchange={args.exchange}: {per:.0f} B of RSS per connection over the second "
              f"half; {(time.perf_counter() - t0) / args.n * 1e3:.2f} ms per connection; "
              f"server stats {srv.stats()}")


if __name__ == "__main__":
    main()
