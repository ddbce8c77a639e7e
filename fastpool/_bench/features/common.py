"""What the feature modes share: the process's CPU time, a percentile, and the settings a
mode gets from ``fastpool bench`` (or from its standalone script's own options)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from typing import Any, Callable, Coroutine, Iterator, Optional, TypeVar

import fastpool


@dataclass
class Settings:
    """What ``fastpool bench`` passes to a feature mode. ``requests`` None: the mode's own
    default count (sized for a default run of a few seconds to a minute per mode)."""

    requests: Optional[int] = None
    rounds: int = 3
    engine: str = "c"                      #: "c" or "python" (the floor needs "c")
    plain: bool = False                    #: HTTP instead of HTTPS where the mode has TLS
    log: Callable[[str], None] = lambda text: None   #: progress (one line, rewritten)


def cpu_seconds() -> float:
    """This process's user + system CPU time, all threads (seconds)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def pct(values: Any, q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank; nan for no values."""
    s = sorted(values)
    if not s:
        return float("nan")
    return float(s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))])


def python_child(code: str, *args: str, text: bool = True) -> subprocess.Popen:
    """``python -c code args...`` with stdin and stdout piped, able to import this fastpool
    (whether it is installed or run from a checkout)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastpool.__file__)))
    path = os.environ.get("PYTHONPATH")
    env = dict(os.environ, PYTHONPATH=root + (os.pathsep + path if path else ""))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=text, env=env)


T = TypeVar("T")


def run_on(loop_kind: str, coro: Coroutine[Any, Any, T]) -> T:
    """Runs coro to completion on a new event loop of the kind ("asyncio" or "uvloop"),
    closed afterwards."""
    loop: asyncio.AbstractEventLoop
    if loop_kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


# The embedded server in a child process (its CPU is then not this process's). argv: "tls" or
# "plain", the body size, the CPU to pin it to (-1: none). The CA file lives in the child's
# temporary directory, which goes when the child stops (pools read it when they open).
_SERVER = """
import json, os, sys, tempfile
if int(sys.argv[3]) >= 0:
    os.sched_setaffinity(0, {int(sys.argv[3])})
from fastpool._bench._server import EmbeddedServer
tls = sys.argv[1] == "tls"
with tempfile.TemporaryDirectory() as tmp, EmbeddedServer(tls=tls,
                                                          body_size=int(sys.argv[2])) as srv:
    ca = srv.write_ca(os.path.join(tmp, "ca.pem")) if tls else ""
    print(json.dumps([srv.url, ca]), flush=True)
    sys.stdin.read()
"""


def start_server(plain: bool, *, body_size: int = 137,
                 cpu: Optional[int] = None) -> tuple[str, str, subprocess.Popen]:
    """The embedded server (HTTPS, TLS 1.3, unless plain) in a child process, pinned to cpu if
    given: (its url, its CA file or "" when plain, the process). It serves until
    ``stop_child(process)``."""
    import json

    proc = python_child(_SERVER, "plain" if plain else "tls", str(body_size),
                        str(-1 if cpu is None else cpu))
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("the embedded server's child process did not start "
                               "(is fastpool._bench._server built?)")
        url, ca = json.loads(line)
    except BaseException:
        stop_child(proc)
        raise
    return str(url), str(ca), proc


# ---- a server child that holds some answers (hedge, choice) --------------------------------

def serve_holding(hold_s: float, every: int, slow_address: str) -> None:
    """In a child (``holding_server``): plain HTTP keep-alive on 127.0.0.1, one epoll loop
    answering every request with a small JSON body, holding some answers ``hold_s`` seconds
    without blocking its other connections: every ``every``-th request (0: none), and every
    request on a connection accepted on ``slow_address`` (listened on with the same port;
    "" for none). Prints its port, serves until its stdin closes."""
    import heapq
    import select
    import signal
    import socket
    import time

    # Ctrl-C reaches the whole process group: the parent stops this child itself (stdin)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    body = b'{"symbol":"BTCUSDT","price":"67000.01"}'
    resp = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n\r\n" + body)
    addresses = [("127.0.0.1", False)] + ([(slow_address, True)] if slow_address else [])
    listeners: dict[int, tuple[socket.socket, bool]] = {}
    port = 0
    for address, slow in addresses:
        lsock = socket.socket()
        lsock.bind((address, port))
        port = lsock.getsockname()[1]   # the slow address listens on the fast one's port
        lsock.listen(64)
        lsock.setblocking(False)
        listeners[lsock.fileno()] = (lsock, slow)
    ep = select.epoll()
    for fd in (*listeners, sys.stdin.fileno()):
        ep.register(fd, select.EPOLLIN)
    print(port, flush=True)
    conns: dict[int, tuple[socket.socket, bool]] = {}
    bufs: dict[int, bytes] = {}
    held: list[tuple[float, int, socket.socket]] = []   # (due, request number, connection)
    count = 0
    while True:
        timeout = max(held[0][0] - time.monotonic(), 0) if held else -1
        for fd, _ in ep.poll(timeout):
            if fd in listeners:
                lsock, slow = listeners[fd]
                c, _ = lsock.accept()
                c.setblocking(False)
                c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conns[c.fileno()], bufs[c.fileno()] = (c, slow), b""
                ep.register(c.fileno(), select.EPOLLIN)
                continue
            if fd == sys.stdin.fileno():
                return
            c, slow = conns[fd]
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
                if slow or (every and count % every == 0):
                    heapq.heappush(held, (time.monotonic() + hold_s, count, c))
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


@contextlib.contextmanager
def holding_server(hold_s: float, every: int = 0, slow_address: str = "") -> Iterator[int]:
    """``serve_holding`` in a child process (its CPU is not this process's): yields its port.
    The child is stopped on the way out, however the block ends."""
    proc = python_child("import sys; from fastpool._bench.features.common import "
                        "serve_holding; serve_holding(float(sys.argv[1]), int(sys.argv[2]), "
                        "sys.argv[3])", repr(hold_s), str(every), slow_address)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip():
            raise RuntimeError("the server child exited before it printed its port")
        yield int(line)
    finally:
        stop_child(proc)


def stop_child(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop a child that serves until its stdin closes: close it, wait, kill if it hangs."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:   # it died already (a broken pipe on the flush)
        pass
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


def floor_connection(pool: Any) -> Any:
    """The raw C connection of a ``fastpool.Pool(url, connections=1, engine="c")`` (opened
    when the pool was), for ``_core.floor_latencies``: the floor, no Python per request."""
    return pool._policy.idle[0][0]
