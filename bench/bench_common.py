"""Shared by the scripts in bench/: the embedded server in a child process (so the client's
sleeps and wake-ups are its own, as against a real gateway), the floor's raw C connection,
percentiles and the process's CPU time.

The children are started as the feature modes start theirs (fastpool._bench.features.common)
and serve until their stdin closes.
"""

from __future__ import annotations

import os
import socket
import sys
import urllib.parse

from fastpool._bench.features.common import (  # noqa: F401 (cpu_seconds, pct: the scripts')
    cpu_seconds,
    pct,
    python_child,
    start_server,
    stop_child,
)


class ServerProcess:
    """The embedded server, in a child process (``with ServerProcess(plain) as s``): the
    feature modes' start_server, with the url, port and CA file the scripts read."""

    def __init__(self, plain: bool = False) -> None:
        self.url, self.ca, self.proc = start_server(plain)
        port = urllib.parse.urlsplit(self.url).port
        assert port is not None
        self.port: int = port
        self.tls = not plain

    def pool_kwargs(self) -> dict:
        return {"verify": self.ca} if self.tls else {}

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        stop_child(self.proc)


def ping_forever(url: str, port: int, ca: str, every: float) -> None:
    """In a child: a raw connection pinging the server every ``every`` seconds until stdin
    closes (keeps the server, not this client, awake)."""
    import threading
    import time

    class _S:
        pass

    s = _S()
    s.url, s.port, s.ca, s.tls = url, port, ca, bool(ca)  # type: ignore[attr-defined]
    conn = FloorConn(s)  # type: ignore[arg-type]
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        time.sleep(every)
        conn.once()
    conn.close()


class PingerProcess:
    """Another process pinging the server every ``every`` seconds on its own connection."""

    def __init__(self, server: ServerProcess, every: float) -> None:
        self.proc = python_child(
            "import sys; sys.path.insert(0, sys.argv[1]); import bench_common; "
            "bench_common.ping_forever(sys.argv[2], int(sys.argv[3]), sys.argv[4], "
            "float(sys.argv[5]))",
            os.path.dirname(os.path.abspath(__file__)), server.url, str(server.port),
            server.ca, str(every))
        assert self.proc.stdout is not None
        self.proc.stdout.readline()

    def close(self) -> None:
        stop_child(self.proc)


class FloorConn:
    """The floor: one raw C engine connection, exchanges run in C (fastpool._bench's Floor)."""

    def __init__(self, server: ServerProcess) -> None:
        from fastpool._engine import _core
        from fastpool._model.request import RequestBuilder
        from fastpool._model.url import parse_origin

        self.core = _core
        origin = parse_origin(server.url)
        self.data = RequestBuilder(origin, _core, None).prepare(
            "GET", "/api/v3/ticker", None, None, None, None)[0]
        tls = _core.TLSContext(verify=True, ca_file=server.ca) if server.tls else None
        self.conn = _core.Connection(None)
        self.conn.open(int(socket.AF_INET), "127.0.0.1", server.port, tls, "127.0.0.1", True, 0)

    def once(self) -> int:
        """One exchange; its latency in ns as the C loop timed it."""
        lat, bad = self.core.floor_latencies(self.conn, self.data, 1, False, 200, -1)
        if bad or len(lat) != 1:
            raise RuntimeError("the floor's exchange failed")
        return int(lat[0])

    def close(self) -> None:
        self.conn.close()


