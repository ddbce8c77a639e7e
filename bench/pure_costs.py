"""Where the pure engine's CPU per request goes: each piece of a sync Pool GET timed alone.

    .venv/bin/python bench/pure_costs.py [-n 20000] [--rounds 10]

Against the embedded server (TLS 1.3, 137-byte body, in a child process), one connection.
Each row is CPU per call (getrusage, this process) of one piece, measured in its own loop,
so the rows are what each piece costs, not a profile with a profiler's overhead in it. The
pieces run interleaved, n/rounds calls each per round; a row is the median over rounds:

    pool.get                  the whole sync Pool GET (engine="python")
    conn.exchange             the pure Connection.exchange() (SSLSocket)
    exchange over TLSTransport  the same over _tlsio (bench/pure_tls.py's tlsio_exchange)
    raw SSLSocket I/O         settimeout + send + settimeout + recv, nothing else
    raw TLSTransport I/O      write + flush + recv (kernel timeouts unchanged: no syscall)
    stale() on idle TLS       the pre-write check the pool runs (stale_check_after=0)
    parse_response            the parser on the response's bytes (one feed)
    .spans of the result      header spans derived from the head (Connection._take reads it)
    Histogram.record          the latency histogram
    Pool overhead             pool.get minus conn.exchange

Measures; asserts nothing but the status.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from drivers import SERVER, _cpu  # noqa: E402
from pure_tls import REQ, SECOND, open_tlsio, tlsio_exchange  # noqa: E402

import fastpool  # noqa: E402
from fastpool._engine import _pure  # noqa: E402
from fastpool._engine._pure._tlsio import client_context  # noqa: E402


def per_call(fn, n: int) -> float:
    c0 = _cpu()
    for _ in range(n):
        fn()
    return (_cpu() - c0) / n * 1e6


def interleaved(pieces: list, n: int, rounds: int) -> list:
    """(name, median over rounds of CPU us per call): every piece runs n/rounds calls per
    round, the pieces one after another, so the machine's noise spreads over all of them."""
    for _, fn in pieces:
        per_call(fn, 1000)  # warm-up
    samples: dict = {name: [] for name, _ in pieces}
    for _ in range(rounds):
        for name, fn in pieces:
            samples[name].append(per_call(fn, max(1, n // rounds)))
    return [(name, statistics.median(samples[name])) for name, _ in pieces]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    n = args.n
    tmp = tempfile.mkdtemp()
    ca = os.path.join(tmp, "ca.pem")
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(tls=True, ca=ca)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=str(ROOT))
    pieces = []
    try:
        port = int(server.stdout.readline())
        url = f"https://127.0.0.1:{port}"
        pool = fastpool.Pool(url, connections=1, verify=ca, engine="python")
        pieces.append(("pool.get", lambda: pool.get("/api/v3/ticker")))
        tls = _pure.TLSContext(verify=True, ca_file=ca)
        conn = _pure.Connection()
        conn.open(socket.AF_INET, "127.0.0.1", port, tls, "127.0.0.1", True,
                  time.monotonic_ns() + 5 * SECOND)
        pieces.append(("conn.exchange",
                       lambda: conn.exchange(REQ, False, 5 * SECOND, 5 * SECOND, 0)))
        t = open_tlsio(port, ca, None)
        pieces.append(("exchange over TLSTransport",
                       lambda: tlsio_exchange(t, REQ, False, 5 * SECOND, 5 * SECOND, 0)))
        s = ctx_sock = client_context(ca_file=ca).wrap_socket(
            socket.create_connection(("127.0.0.1", port)), server_hostname="127.0.0.1")
        ctx_sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def raw_ssl():
            s.settimeout(5.0)
            s.send(REQ)
            s.settimeout(5.0)
            data = s.recv(65536)
            while not data.endswith(b"}"):
                data += s.recv(65536)
            return data

        response = raw_ssl()
        pieces.append(("raw SSLSocket I/O", raw_ssl))
        t2 = open_tlsio(port, ca, None)

        def raw_tlsio():
            t2.write(REQ)
            t2.arm_write(5_000_000)
            while not t2.flush():
                pass
            t2.arm_read(5_000_000)
            data = b""
            while not data.endswith(b"}"):
                data += t2.recv() or b""

        pieces.append(("raw TLSTransport I/O", raw_tlsio))
        pieces.append(("stale() on idle TLS (SSLSocket)", conn.stale))
        pieces.append(("idle_stale() on TLSTransport", t.idle_stale))
        pieces.append(("parse_response", lambda: _pure.parse_response(response)))
        res = _pure.parse_response(response)
        pieces.append((".spans of the result",
                       lambda: (setattr(res, "_spans", None), res.spans)))
        h = _pure.Histogram()
        pieces.append(("Histogram.record", lambda: h.record(25_000)))
        rows = interleaved(pieces, n, args.rounds)
        pool.close()
        conn.close()
        t.close()
        t2.close()
        ctx_sock.close()
    finally:
        server.stdin.close()
        server.wait(10)
    d = dict(rows)
    rows.append(("Pool overhead (get - exchange)", d["pool.get"] - d["conn.exchange"]))
    print(f"pure engine, TLS 1.3, n={n}: CPU us per call")
    for name, us in rows:
        print(f"  {name:32} {us:7.2f}")


if __name__ == "__main__":
    main()
