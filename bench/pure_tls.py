"""The pure engine's TLS exchange over SSLSocket (today) and over _tlsio.TLSTransport.

    .venv/bin/python bench/pure_tls.py [-n 20000] [--rounds 5] [--tls 1.3|1.2]

The embedded server runs in a child process (its CPU is not counted). In interleaved rounds
of shuffled order, each client runs n sequential GETs on one pre-opened TLS connection:

    floor            the raw C loop on the C engine's connection (bench/drivers.py's floor)
    c-conn           the C engine's Connection.exchange()
    py-conn          the pure engine's Connection.exchange(), SSLSocket in timeout mode: what
                     pool-py pays below the driver
    py-tlsio         the same exchange (same parser, same timeout arithmetic, same result
                     tuple) over TLSTransport on a blocking socket with kernel timeouts: what
                     py-conn becomes once _pure/_conn.py uses the transport
    raw-sslsocket    send + recv on an SSLSocket with settimeout() per phase, no parser
    raw-tlsio        write + flush + recv on TLSTransport with arm_*(), no parser

bench/pure_conn_tlsio.patch wires the transport into fastpool/_engine/_pure/_conn.py (`git
apply`; written against 25d110d) and adds tests/test_tls_memory.py (flat RSS over reconnects
and over requests to a server without tickets, both engines).

Printed: median over rounds of p50 wall (us), CPU per request (us, getrusage of this
process), and both against the floor. Measures; asserts only that every response is a 200.
"""

from __future__ import annotations

import argparse
import os
import random
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

from drivers import SERVER, _cpu, _pct  # noqa: E402

from fastpool._engine import _pure  # noqa: E402
from fastpool._engine._pure._tlsio import TLSTransport, client_context  # noqa: E402

REQ = b"GET /api/v3/ticker HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fastpool\r\n\r\n"
SECOND = 1_000_000_000
WARM = 2000


def _loop(n: int, one) -> tuple:
    for _ in range(WARM):
        one()
    lat = []
    c0 = _cpu()
    for _ in range(n):
        t = time.perf_counter_ns()
        one()
        lat.append(time.perf_counter_ns() - t)
    return lat, (_cpu() - c0) / n


def run_floor(port: int, ca: str, ver: str, n: int) -> tuple:
    from fastpool._engine import _core

    tls = _core.TLSContext(verify=True, ca_file=ca, min_version=ver, max_version=ver)
    conn = _core.Connection()
    conn.open(socket.AF_INET, "127.0.0.1", port, tls, "127.0.0.1", True,
              time.monotonic_ns() + 5 * SECOND)
    _core.floor_latencies(conn, REQ, WARM)
    c0 = _cpu()
    lat, bad = _core.floor_latencies(conn, REQ, n)
    cpu = (_cpu() - c0) / n
    conn.close()
    assert not bad
    return lat, cpu


def run_conn(engine, port: int, ca: str, ver: str, n: int) -> tuple:
    tls = engine.TLSContext(verify=True, ca_file=ca, min_version=ver, max_version=ver)
    conn = engine.Connection()
    conn.open(socket.AF_INET, "127.0.0.1", port, tls, "127.0.0.1", True,
              time.monotonic_ns() + 5 * SECOND)

    def one():
        raw = conn.exchange(REQ, False, 5 * SECOND, 5 * SECOND, 0)
        assert raw[0] == 200

    try:
        return _loop(n, one)
    finally:
        conn.close()


def open_tlsio(port: int, ca: str, ver: str) -> TLSTransport:
    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    sock.connect_ex(("127.0.0.1", port))
    _pure._conn._wait(sock, _pure._conn._POLLOUT, time.monotonic_ns() + 5 * SECOND)
    t = TLSTransport(sock, client_context(ca_file=ca, min_version=ver, max_version=ver),
                     "127.0.0.1")
    t.handshake(time.monotonic_ns() + 5 * SECOND)
    t.setblocking(True)
    return t


def tlsio_exchange(t: TLSTransport, request: bytes, head: bool, write_timeout_ns: int,
                   read_timeout_ns: int, deadline_ns: int, limits=None) -> tuple:
    """Connection.exchange() as it would read over the transport (stale check off)."""
    t_start = time.monotonic_ns()
    parser = _pure.ResponseParser(head, limits or _pure._conn.DEFAULT_LIMITS)
    t.write(request)
    t.arm_write(_us(write_timeout_ns, deadline_ns))
    while not t.flush():
        t.arm_write(_us(write_timeout_ns, deadline_ns))
    t_written = time.monotonic_ns()
    t_first = 0
    while True:
        t.arm_read(_us(read_timeout_ns, deadline_ns))
        data = t.recv()
        if data is None:
            continue
        if not data:
            parser.feed_eof()
            break
        if not t_first:
            t_first = time.monotonic_ns()
        if parser.feed(data):
            break
    t_complete = time.monotonic_ns()
    res = parser.result()
    if t.wants_session:
        t.take_session()
    reason_len = len(res.reason)
    return (res.status_code, 1 if res.http_version == "HTTP/1.1" else 0, res.head, res.spans,
            res.body, 13 if reason_len else 12, reason_len, t_start, t_written, t_first,
            t_complete)


def _us(timeout_ns: int, deadline_ns: int) -> int:
    """Connection._arm's arithmetic: min(timeout, time to deadline) in us, 0 = none."""
    us = 0 if timeout_ns < 0 else (timeout_ns + 999) // 1000
    if deadline_ns:
        left_us = (deadline_ns - time.monotonic_ns() + 999) // 1000
        if left_us <= 0:
            raise BlockingIOError("deadline")
        if us == 0 or left_us < us:
            us = left_us
    return us


def run_tlsio(port: int, ca: str, ver: str, n: int) -> tuple:
    t = open_tlsio(port, ca, ver)

    def one():
        raw = tlsio_exchange(t, REQ, False, 5 * SECOND, 5 * SECOND, 0)
        assert raw[0] == 200

    try:
        return _loop(n, one)
    finally:
        t.close()


def run_raw_sslsocket(port: int, ca: str, ver: str, n: int) -> tuple:
    ctx = client_context(ca_file=ca, min_version=ver, max_version=ver)
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)),
                        server_hostname="127.0.0.1")
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def one():
        s.settimeout(5.0)
        s.send(REQ)
        s.settimeout(5.0)
        data = s.recv(65536)
        while not data.endswith(b"}"):
            data += s.recv(65536)

    try:
        return _loop(n, one)
    finally:
        s.close()


def run_raw_tlsio(port: int, ca: str, ver: str, n: int) -> tuple:
    t = open_tlsio(port, ca, ver)

    def one():
        t.write(REQ)
        t.arm_write(5_000_000)
        while not t.flush():
            pass
        t.arm_read(5_000_000)
        data = b""
        while not data.endswith(b"}"):
            data += t.recv() or b""

    try:
        return _loop(n, one)
    finally:
        t.close()


def _core_engine():
    from fastpool._engine import _core

    return _core


CLIENTS = {
    "floor": run_floor,
    "c-conn": lambda p, ca, v, n: run_conn(_core_engine(), p, ca, v, n),
    "py-conn": lambda p, ca, v, n: run_conn(_pure, p, ca, v, n),
    "py-tlsio": run_tlsio,
    "raw-sslsocket": run_raw_sslsocket,
    "raw-tlsio": run_raw_tlsio,
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tls", default="1.3", choices=["1.2", "1.3"])
    ap.add_argument("--only", default="", help="comma-separated client names")
    args = ap.parse_args()
    names = [c for c in CLIENTS if not args.only or c in args.only.split(",")]
    if "floor" not in names:
        names.insert(0, "floor")
    tmp = tempfile.mkdtemp()
    ca = os.path.join(tmp, "ca.pem")
    server = subprocess.Popen([sys.executable, "-c", SERVER.format(tls=True, ca=ca)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=str(ROOT))
    try:
        port = int(server.stdout.readline())
        results: dict = {name: ([], []) for name in names}
        for r in range(args.rounds):
            order = names[:]
            random.shuffle(order)
            for name in order:
                lat, cpu = CLIENTS[name](port, ca, args.tls, args.n)
                results[name][0].append(_pct(lat, 0.5) / 1000)
                results[name][1].append(cpu * 1e6)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        server.stdin.close()
        server.wait(10)
    floor_p50 = statistics.median(results["floor"][0])
    floor_cpu = statistics.median(results["floor"][1])
    print(f"TLS {args.tls}, embedded server in a child process, n={args.n} x {args.rounds} "
          f"rounds, medians over rounds")
    print(f"{'client':15} {'p50 us':>8} {'x floor':>8} {'CPU us/req':>11} {'x floor':>8} "
          f"{'p50 spread':>11}")
    for name in names:
        p50s, cpus = results[name]
        p50, cpu = statistics.median(p50s), statistics.median(cpus)
        print(f"{name:15} {p50:8.1f} {p50 / floor_p50:8.2f} {cpu:11.1f} {cpu / floor_cpu:8.2f} "
              f"{min(p50s):.1f}-{max(p50s):.1f}")


if __name__ == "__main__":
    main()
