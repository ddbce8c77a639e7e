"""Scripted fault servers: stdlib sockets and one thread per connection, on loopback only.

A :class:`FaultServer` accepts connections and runs a *behavior* on each one. A behavior is
any callable taking a :class:`FaultConnection` (or a :class:`Behavior`, which also carries a
name and socket options); the factories below cover the faults a keep-alive client must
survive. Everything the server received is recorded, so a test can assert whether a request
reached the server (``server.requests``, ``server.connections[i].received``).

Bounds: at most ``max_connections`` connections are served (later ones are accepted and
closed at once, counted in ``rejected``); each connection lives at most ``max_lifetime``
seconds; every wait inside a behavior returns early when the server closes. ``close()`` joins
every thread and fails loudly if one is left, or if a behavior raised something other than
a socket error (a bug in the test's script, not a client-side disconnect).

Behaviors (each factory returns a Behavior; ``name`` makes readable test ids):

    respond(...)                 a correct keep-alive server (the control case)
    close_on_accept()            accept, close at once (FIN), read nothing
    close_after_request()        read one whole request, close without a byte of response
    partial_head(data)           read a request, send part of a response head, close
    partial_body(length, sent)   read a request, send a head with Content-Length: length and
                                 only ``sent`` body bytes, close
    reset_after_request()        read a request, close with SO_LINGER 0 (RST)
    reset_on_accept()            accept, RST at once
    garbage(data, then)          read a request, send bytes that are no HTTP response
    malformed(kind)              read a request, send one of MALFORMED_RESPONSES
    extra_bytes(extra)           a valid response followed at once by unsolicited bytes
    delay(ms)                    wait ms before each response (keep-alive otherwise)
    never_read(hold)             accept, never read (small receive buffer): writes block
    stall_after_request(hold)    read the request, never answer, keep the connection open
    stale_after(k, ...)          answer k requests on a connection, then close silently
                                 (no Connection: close) right away or when the next
                                 request arrives; FIN or RST
    handshake_stall(hold)        TLS servers: accept TCP, never answer the ClientHello
    handshake_close()            TLS servers: read the ClientHello, close
    Storm(seed, ...)             a fault chosen at random for every request (seeded, so a
                                 failure is reproducible): the at-most-once test's server;
                                 it counts, per request id, how often its handler ran

Pass ``tls=certs.server`` (a CertKey) or an ``ssl.SSLContext`` to make any behavior run over
TLS: the server completes the handshake before the behavior runs (except for behaviors with
``auto_handshake=False``, such as the two handshake faults).
"""

from __future__ import annotations

import random
import select
import socket
import ssl
import struct
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Union

from .certs import CertKey
from .ports import LOOPBACK_V4, assert_loopback

__all__ = [
    "DEFAULT_BODY",
    "MALFORMED_RESPONSES",
    "Behavior",
    "ConnectionRecord",
    "FaultConnection",
    "FaultServer",
    "RecordedRequest",
    "STORM_FAULTS",
    "Storm",
    "close_after_request",
    "close_on_accept",
    "delay",
    "extra_bytes",
    "garbage",
    "handshake_close",
    "handshake_stall",
    "http_response",
    "malformed",
    "never_read",
    "partial_body",
    "partial_head",
    "reset_after_request",
    "reset_on_accept",
    "respond",
    "server_tls_context",
    "stale_after",
    "stall_after_request",
]

DEFAULT_BODY = b'{"ok":true}'
_POLL = 0.05  # how often blocked socket calls look at the stop flag
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024

_REASONS = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
    404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error",
    503: "Service Unavailable",
}


def http_response(
    status: int = 200,
    body: bytes = DEFAULT_BODY,
    headers: Iterable[tuple[str, str]] = (("Content-Type", "application/json"),),
    *,
    reason: str | None = None,
    keep_alive: bool = True,
    content_length: bool = True,
    head: bool = False,
) -> bytes:
    """An HTTP/1.1 response. ``head=True`` keeps Content-Length but leaves the body out (an
    answer to HEAD); 204/304 never get a body or Content-Length."""
    lines = [f"HTTP/1.1 {status} {reason if reason is not None else _REASONS.get(status, 'X')}"]
    lines += [f"{k}: {v}" for k, v in headers]
    bodyless = status in (204, 304) or 100 <= status < 200
    if content_length and not bodyless:
        lines.append(f"Content-Length: {len(body)}")
    if not keep_alive:
        lines.append("Connection: close")
    out = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if not head and not bodyless:
        out += body
    return out


#: Malformed responses for ``malformed(kind)``: each violates RFC 9112 in one way.
MALFORMED_RESPONSES: dict[str, bytes] = {
    "bad-status-line": b"HTTP/1.1 2OO OK\r\nContent-Length: 2\r\n\r\nok",
    "not-http": b"SSH-2.0-OpenSSH_9.2\r\n",
    "bad-version": b"HTTP/9.9 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\nok",
    "conflicting-content-length": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"
    ),
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
    "header-no-colon": b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok",
    "space-before-colon": b"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
    "nul-in-header": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    "binary-garbage": bytes(range(256)),
}


# --- records -------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    """One complete request as the server parsed it."""

    connection: int  #: index of the connection in server.connections
    index: int  #: 0 for the first request on its connection
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes  #: exactly the bytes of this request on the wire

    def header(self, name: str, default: str | None = None) -> str | None:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default


@dataclass
class ConnectionRecord:
    """What happened on one accepted connection."""

    index: int
    peer: tuple
    accepted_at: float
    tls_version: str | None = None  #: negotiated protocol when the handshake completed
    received: bytearray = field(default_factory=bytearray)  #: every byte read, in order
    requests: list[RecordedRequest] = field(default_factory=list)
    sent: bytearray = field(default_factory=bytearray)  #: every byte the server wrote
    peer_closed: bool = False  #: the client closed (EOF) or reset while the server read
    ended: str = ""  #: how the server ended it: "fin", "rst", "stop", "rejected", "lifetime"
    done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def partial(self) -> bytes:
        """Bytes received that did not form a complete request."""
        used = sum(len(r.raw) for r in self.requests)
        return bytes(self.received[used:])


class ServerStopping(Exception):
    """Raised inside a behavior when the server closes or the connection's lifetime ends."""


# --- behaviors -----------------------------------------------------------------------------


@dataclass
class Behavior:
    """A named per-connection script plus the socket options it needs."""

    name: str
    run: Callable[[FaultConnection], None]
    rcvbuf: int | None = None  #: SO_RCVBUF for the listening socket (inherited on accept)
    auto_handshake: bool = True  #: TLS servers handshake before ``run`` when True

    def __call__(self, conn: FaultConnection) -> None:
        self.run(conn)

    def __repr__(self) -> str:
        return f"<Behavior {self.name}>"


BehaviorLike = Union[Behavior, Callable[["FaultConnection"], None]]


def _answer(conn: FaultConnection, req: RecordedRequest, status: int, body: bytes,
            headers: Iterable[tuple[str, str]], keep_alive: bool = True) -> None:
    extra = [("X-Request-Target", req.target), ("X-Request-Index", str(req.index))]
    conn.send(http_response(status, body, [*headers, *extra], keep_alive=keep_alive,
                            head=req.method == "HEAD"))


def respond(
    status: int = 200,
    body: bytes = DEFAULT_BODY,
    headers: Iterable[tuple[str, str]] = (("Content-Type", "application/json"),),
) -> Behavior:
    """A well-behaved keep-alive server: answers every request on the connection. Each
    response echoes the request's target and index in X-Request-Target / X-Request-Index."""
    headers = tuple(headers)

    def run(conn: FaultConnection) -> None:
        while (req := conn.read_request()) is not None:
            _answer(conn, req, status, body, headers)
        conn.close()

    return Behavior("respond", run)


def close_on_accept() -> Behavior:
    def run(conn: FaultConnection) -> None:
        conn.close()

    return Behavior("close_on_accept", run)


def reset_on_accept() -> Behavior:
    def run(conn: FaultConnection) -> None:
        conn.reset()

    return Behavior("reset_on_accept", run)


def close_after_request() -> Behavior:
    def run(conn: FaultConnection) -> None:
        conn.read_request()
        conn.close()

    return Behavior("close_after_request", run)


def reset_after_request() -> Behavior:
    def run(conn: FaultConnection) -> None:
        conn.read_request()
        conn.reset()

    return Behavior("reset_after_request", run)


def partial_head(data: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: appl") -> Behavior:
    def run(conn: FaultConnection) -> None:
        if conn.read_request() is not None:
            conn.send(data)
        conn.close()

    return Behavior("partial_head", run)


def partial_body(content_length: int = 100, sent: int = 10) -> Behavior:
    if not 0 <= sent < content_length:
        raise ValueError("need 0 <= sent < content_length")

    def run(conn: FaultConnection) -> None:
        if conn.read_request() is not None:
            head = http_response(200, b"x" * content_length)[: -content_length]
            conn.send(head + b"x" * sent)
        conn.close()

    return Behavior("partial_body", run)


def garbage(data: bytes = b"\x16\x03\x01garbage\xff\xfe\r\n\r\n", then: str = "close") -> Behavior:
    """Read a request, send ``data``; then "close" (FIN) or "hold" the connection open."""
    if then not in ("close", "hold"):
        raise ValueError("then must be 'close' or 'hold'")

    def run(conn: FaultConnection) -> None:
        if conn.read_request() is not None:
            conn.send(data)
            if then == "hold":
                conn.hold()
        conn.close()

    return Behavior("garbage", run)


def malformed(kind: str = "bad-status-line", then: str = "hold") -> Behavior:
    """Read a request, answer with MALFORMED_RESPONSES[kind]; then hold (default) or close."""
    data = MALFORMED_RESPONSES[kind]
    b = garbage(data, then)
    b.name = f"malformed[{kind}]"
    return b


def extra_bytes(
    extra: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra",
    body: bytes = DEFAULT_BODY,
) -> Behavior:
    """Answer the first request correctly and, in the same write, append ``extra`` bytes the
    client never asked for; then keep reading (and recording) without answering."""

    def run(conn: FaultConnection) -> None:
        req = conn.read_request()
        if req is not None:
            conn.send(http_response(200, body) + extra)
            while conn.read_request() is not None:
                pass
        conn.close()

    return Behavior("extra_bytes", run)


def delay(ms: float, body: bytes = DEFAULT_BODY, status: int = 200) -> Behavior:
    """Keep-alive server that waits ``ms`` milliseconds (stop-aware) before each response."""

    def run(conn: FaultConnection) -> None:
        while (req := conn.read_request()) is not None:
            conn.sleep(ms / 1000.0)
            _answer(conn, req, status, body, (("Content-Type", "application/json"),))
        conn.close()

    return Behavior(f"delay[{ms}ms]", run)


def never_read(hold: float | None = None, rcvbuf: int = 4096) -> Behavior:
    """Accept and never read, with a small receive buffer: the client's writes fill the
    socket buffers and block. Held open ``hold`` seconds (default: the connection lifetime)."""

    def run(conn: FaultConnection) -> None:
        conn.hold(hold)
        conn.close()

    return Behavior("never_read", run, rcvbuf=rcvbuf)


def stall_after_request(hold: float | None = None) -> Behavior:
    """Read one request and never answer; keep the connection open (a read timeout case)."""

    def run(conn: FaultConnection) -> None:
        conn.read_request()
        conn.hold(hold)
        conn.close()

    return Behavior("stall_after_request", run)


def stale_after(
    k: int,
    *,
    when: str = "after_response",
    how: str = "fin",
    body: bytes = DEFAULT_BODY,
) -> Behavior:
    """Answer the first ``k`` requests on each connection as keep-alive (no Connection: close),
    then close: ``when="after_response"`` right after the k-th response (the connection is
    stale before the client reuses it), or ``when="on_next_request"`` once request k+1 has
    been read, without answering it. ``how`` is "fin" or "rst"."""
    if when not in ("after_response", "on_next_request") or how not in ("fin", "rst"):
        raise ValueError("when: after_response|on_next_request, how: fin|rst")
    if k < 0:
        raise ValueError("k must be >= 0")

    def run(conn: FaultConnection) -> None:
        for _ in range(k):
            req = conn.read_request()
            if req is None:
                conn.close()
                return
            _answer(conn, req, 200, body, (("Content-Type", "application/json"),))
        if when == "on_next_request":
            conn.read_request()
        if how == "rst":
            conn.reset()
        else:
            conn.close()

    return Behavior(f"stale_after[{k},{when},{how}]", run)


def handshake_stall(hold: float | None = None) -> Behavior:
    """For TLS servers: accept TCP and read the ClientHello, never answer it."""

    def run(conn: FaultConnection) -> None:
        conn.read_raw()
        conn.hold(hold)
        conn.close()

    return Behavior("handshake_stall", run, auto_handshake=False)


def handshake_close() -> Behavior:
    """For TLS servers: read the ClientHello, then close the TCP connection."""

    def run(conn: FaultConnection) -> None:
        conn.read_raw()
        conn.close()

    return Behavior("handshake_close", run, auto_handshake=False)


#: Storm's faults, one drawn per request turn; see Storm. "answer" is the control case.
STORM_FAULTS: dict[str, float] = {
    "answer": 0.65,
    "close_idle": 0.05,         # close before the next request arrives (a stale connection)
    "close_before_read": 0.07,  # the request's bytes arrived, close without reading them
    "read_then_close": 0.07,    # processed, then FIN without a byte of answer
    "read_then_reset": 0.07,    # processed, then RST (SO_LINGER 0)
    "partial_then_close": 0.07, # processed, part of the head or of the body, then FIN
    "stall": 0.02,              # processed, never answered: the client's read timeout ends it
}


class Storm:
    """A behavior drawing a fault at random for each request turn of each connection.

    The draws come from ``random.Random(f"{seed}/{connection index}")``: which requests meet
    which fault depends on thread scheduling, but each connection's sequence of faults is
    fixed by the seed, so a failing run names its seed and can be replayed.

    The *handler* is what a real gateway would do with a request: it runs once the whole
    request was read, before the fault decides what (if anything) goes back. It counts the
    request's id (header ``id_header``) in ``processed``; ``faults`` counts the faults drawn.
    An answered request gets 200 with the id echoed in the same header and as the body, so
    the client can check it got its own answer.
    """

    auto_handshake = True
    rcvbuf = None

    def __init__(self, seed: int, weights: dict[str, float] | None = None, *,
                 id_header: str = "X-Request-Id", stall_hold: float = 20.0) -> None:
        weights = dict(STORM_FAULTS if weights is None else weights)
        unknown = set(weights) - set(STORM_FAULTS)
        if unknown:
            raise ValueError(f"unknown storm faults: {sorted(unknown)}")
        self.seed = seed
        self.name = f"storm[{seed}]"
        self.id_header = id_header
        self.stall_hold = stall_hold  #: a stalled connection is closed by then at the latest
        self._names = list(weights)
        self._weights = [weights[n] for n in self._names]
        self._lock = threading.Lock()
        self.processed: Counter[str] = Counter()  #: request id -> handler runs
        self.faults: Counter[str] = Counter()     #: fault name -> times drawn

    def _handle(self, req: RecordedRequest) -> str:
        rid = req.header(self.id_header) or ""
        with self._lock:
            self.processed[rid] += 1
        return rid

    def __call__(self, conn: FaultConnection) -> None:
        rng = random.Random(f"{self.seed}/{conn.record.index}")
        while True:
            fault = rng.choices(self._names, self._weights)[0]
            with self._lock:
                self.faults[fault] += 1
            if fault == "close_idle":
                conn.close()
                return
            if fault == "close_before_read":
                # Wait for the request's first bytes and close with them unread: the client
                # has written, the handler never ran (Linux answers unread data with RST).
                self._wait_readable(conn)
                conn.close()
                return
            req = conn.read_request()
            if req is None:
                conn.close()
                return
            rid = self._handle(req)
            if fault == "answer":
                conn.send(http_response(200, rid.encode(), [
                    ("Content-Type", "text/plain"), (self.id_header, rid)]))
                continue
            if fault == "read_then_close":
                conn.close()
            elif fault == "read_then_reset":
                conn.reset()
            elif fault == "partial_then_close":
                full = http_response(200, rid.encode() + b"x" * 64, [(self.id_header, rid)])
                head_len = full.index(b"\r\n\r\n") + 4
                cut = rng.randrange(1, len(full))  # somewhere in the head or in the body
                conn.send(full[: min(cut, head_len - 1) if rng.random() < 0.5 else
                               max(cut, head_len)])
                conn.close()
            elif fault == "stall":
                # Never answer; read on until the client gives up (its read timeout), so the
                # connection ends when the client's does, not at the server's lifetime.
                end = time.monotonic() + self.stall_hold
                while time.monotonic() < end and not conn.stopping:
                    if self._wait_readable(conn, end) and not conn.read_raw():
                        break
                conn.close()
            return

    @staticmethod
    def _wait_readable(conn: FaultConnection, end: float | None = None) -> bool:
        """True once the connection has bytes (or EOF) to read; False when stopping or past
        ``end``. A TLS socket with decrypted bytes pending is readable without its fd."""
        while not conn.stopping and (end is None or time.monotonic() < end):
            if isinstance(conn.sock, ssl.SSLSocket) and conn.sock.pending():
                return True
            try:
                ready, _, _ = select.select([conn.sock], [], [], _POLL)
            except (OSError, ValueError):
                return False
            if ready:
                return True
        return False

    def __repr__(self) -> str:
        return f"<Storm seed={self.seed}>"


def server_tls_context(
    pair: CertKey,
    *,
    minimum: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
    maximum: ssl.TLSVersion = ssl.TLSVersion.MAXIMUM_SUPPORTED,
) -> ssl.SSLContext:
    """A server-side SSLContext presenting ``pair`` (chain + key)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = minimum
    ctx.maximum_version = maximum
    ctx.load_cert_chain(str(pair.chain), str(pair.key))
    return ctx


# --- per-connection handle -----------------------------------------------------------------


class FaultConnection:
    """The accepted connection as a behavior sees it. Every blocking call returns early (or
    raises ServerStopping) once the server closes or ``max_lifetime`` runs out."""

    def __init__(self, server: FaultServer, sock: socket.socket, record: ConnectionRecord,
                 deadline: float) -> None:
        self.server = server
        self.sock = sock
        self.record = record
        self.deadline = deadline
        self._buf = bytearray()
        self._closed = False

    # -- time --

    @property
    def stopping(self) -> bool:
        return self.server._stop.is_set() or time.monotonic() >= self.deadline

    def _check(self) -> None:
        if self.stopping:
            raise ServerStopping()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; raises ServerStopping if the server closes first."""
        end = min(time.monotonic() + seconds, self.deadline)
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            if self.server._stop.wait(min(left, _POLL)):
                raise ServerStopping()
        self._check()

    def hold(self, seconds: float | None = None) -> None:
        """Keep the connection open without reading, ``seconds`` or until the server closes
        or the lifetime ends. Never raises."""
        try:
            self.sleep(seconds if seconds is not None else self.deadline - time.monotonic())
        except ServerStopping:
            pass

    # -- reading --

    def read_raw(self, max_bytes: int = 65536) -> bytes:
        """One recv (b"" on EOF); waits until bytes arrive. Records what it read."""
        while True:
            self._check()
            try:
                data = self.sock.recv(max_bytes)
            except (socket.timeout, ssl.SSLWantReadError):
                continue
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                self.record.peer_closed = True
                return b""
            if not data:
                self.record.peer_closed = True
            self.record.received += data
            return data

    def _fill(self) -> bool:
        data = self.read_raw()
        if not data:
            return False
        self._buf += data
        return True

    def read_request(self) -> RecordedRequest | None:
        """Read one whole request (Content-Length or chunked body). None when the client
        closed first or the server is stopping; a partial request stays in record.partial."""
        try:
            return self._read_request()
        except ServerStopping:
            return None

    def _read_request(self) -> RecordedRequest | None:
        while (end := self._buf.find(b"\r\n\r\n")) < 0:
            if len(self._buf) > _MAX_HEAD or not self._fill():
                return None
        head = bytes(self._buf[: end + 4])
        lines = head[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        method, target, version = (parts + ["", "", ""])[:3]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        hmap = {k.lower(): v for k, v in headers}
        pos = end + 4
        if "chunked" in hmap.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                while (nl := self._buf.find(b"\r\n", pos)) < 0:
                    if not self._fill():
                        return None
                size = int(self._buf[pos:nl].split(b";")[0].strip() or b"0", 16)
                pos = nl + 2
                if size == 0:
                    # trailer section: lines until an empty one
                    while True:
                        while (nl := self._buf.find(b"\r\n", pos)) < 0:
                            if not self._fill():
                                return None
                        line_empty = nl == pos
                        pos = nl + 2
                        if line_empty:
                            break
                    break
                while len(self._buf) < pos + size + 2:
                    if not self._fill():
                        return None
                body += self._buf[pos : pos + size]
                pos += size + 2
                if len(body) > _MAX_BODY:
                    return None
        else:
            length = int(hmap.get("content-length", "0") or "0")
            if length > _MAX_BODY:
                return None
            while len(self._buf) < pos + length:
                if not self._fill():
                    return None
            body = self._buf[pos : pos + length]
            pos += length
        raw = bytes(self._buf[:pos])
        del self._buf[:pos]
        req = RecordedRequest(
            connection=self.record.index,
            index=len(self.record.requests),
            method=method,
            target=target,
            version=version,
            headers=headers,
            body=bytes(body),
            raw=raw,
        )
        with self.server._lock:
            self.record.requests.append(req)
            self.server._cond.notify_all()
        return req

    # -- writing and ending --

    def send(self, data: bytes) -> None:
        """Write all of ``data`` (stop-aware). A client that went away ends it silently."""
        view = memoryview(data)
        try:
            while view:
                self._check()
                try:
                    n = self.sock.send(view)
                except (socket.timeout, ssl.SSLWantWriteError):
                    continue
                self.record.sent += view[:n]
                view = view[n:]
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.record.peer_closed = True

    def close(self) -> None:
        """Close with FIN (TLS: without close_notify, like a server that just drops it)."""
        self._end("fin")

    def reset(self) -> None:
        """Close with RST: SO_LINGER on with a zero timeout."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self._end("rst")

    def _end(self, how: str) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.record.ended:
            self.record.ended = how
        # Forget the socket before closing it, under the lock FaultServer.close() holds
        # while it shuts sockets down: it never touches a closed (reusable) descriptor.
        with self.server._lock:
            self.server._socks.discard(self.sock)
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                # Close the TCP socket under the TLS layer: no close_notify is sent.
                raw = socket.socket(fileno=self.sock.detach())
                raw.close()
            else:
                self.sock.close()
        except OSError:
            pass


# --- the server ----------------------------------------------------------------------------


class FaultServer:
    """A threaded TCP (or TLS) server on loopback running ``behavior`` per connection."""

    def __init__(
        self,
        behavior: BehaviorLike,
        *,
        host: str = LOOPBACK_V4,
        port: int = 0,
        tls: CertKey | ssl.SSLContext | None = None,
        max_connections: int = 32,
        max_lifetime: float = 30.0,
        handshake_timeout: float = 5.0,
    ) -> None:
        self.host = assert_loopback(host)
        self.behavior = behavior
        self.name = getattr(behavior, "name", getattr(behavior, "__name__", "custom"))
        if isinstance(tls, CertKey):
            tls = server_tls_context(tls)
        self.tls_context: ssl.SSLContext | None = tls
        self.max_connections = max_connections
        self.max_lifetime = max_lifetime
        self.handshake_timeout = handshake_timeout
        self.connections: list[ConnectionRecord] = []
        self.rejected = 0
        self.errors: list[str] = []  #: tracebacks of unexpected behavior exceptions
        self.port = port  #: 0: any free port (the one bound is here once started)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()

    # -- lifecycle --

    def start(self) -> FaultServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        lst = socket.socket(family, socket.SOCK_STREAM)
        try:
            lst.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            rcvbuf = getattr(self.behavior, "rcvbuf", None)
            if rcvbuf:
                lst.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            lst.bind((self.host, self.port))
            lst.listen(64)
            lst.settimeout(_POLL)
        except BaseException:
            lst.close()
            raise
        self._listener = lst
        self.port = lst.getsockname()[1]
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"fault-accept-{self.name}", daemon=True
        )
        self._accept_thread.start()
        return self

    def close(self, check: bool = True) -> None:
        """Stop accepting, end every connection, join every thread.

        Raises RuntimeError if a thread is still alive after the join, or (``check``) if a
        behavior raised an unexpected exception."""
        self._stop.set()
        if self._accept_thread is not None:
            self._accept_thread.join(5.0)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            threads = list(self._threads)
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on this socket
                except OSError:
                    pass
        for t in threads:
            t.join(5.0)
        alive = [t.name for t in threads if t.is_alive()]
        if self._accept_thread is not None and self._accept_thread.is_alive():
            alive.append(self._accept_thread.name)
        if alive:
            raise RuntimeError(f"fault server threads still running after close: {alive}")
        if check and self.errors:
            raise RuntimeError("fault server behavior failed:\n" + "\n".join(self.errors))

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close(check=exc[0] is None)

    # -- addresses --

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def url(self, path: str = "/", host: str | None = None) -> str:
        h = host or self.host
        if ":" in h:
            h = f"[{h}]"
        return f"{'https' if self.tls_context else 'http'}://{h}:{self.port}{path}"

    # -- observations --

    @property
    def connection_count(self) -> int:
        """Connections accepted and served (not counting ``rejected``)."""
        with self._lock:
            return len(self.connections)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every complete request received, over all connections, in connection order."""
        with self._lock:
            return [r for c in self.connections for r in c.requests]

    @property
    def received(self) -> bytes:
        """Every byte received, over all connections, in connection order."""
        with self._lock:
            return b"".join(bytes(c.received) for c in self.connections)

    def _wait(self, pred: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.name}: timed out waiting for {what}")
                self._cond.wait(min(left, _POLL))

    def wait_for_connections(self, n: int, timeout: float = 5.0) -> None:
        self._wait(lambda: len(self.connections) >= n, timeout, f"{n} connections")

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> None:
        self._wait(
            lambda: sum(len(c.requests) for c in self.connections) >= n,
            timeout, f"{n} requests",
        )

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Wait until every accepted connection's behavior has finished."""
        self._wait(lambda: all(c.done.is_set() for c in self.connections), timeout,
                   "all connections to finish")

    # -- internals --

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stop.is_set():
            try:
                sock, peer = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                if not self._stop.is_set():
                    with self._lock:
                        self.errors.append(f"accept:\n{traceback.format_exc()}")
                return
            with self._lock:
                if len(self.connections) >= self.max_connections:
                    self.rejected += 1
                    sock.close()
                    continue
                record = ConnectionRecord(len(self.connections), peer, time.monotonic())
                self.connections.append(record)
                self._socks.add(sock)
                t = threading.Thread(
                    target=self._serve, args=(sock, record),
                    name=f"fault-{self.name}-{record.index}", daemon=True,
                )
                self._threads.append(t)
                self._cond.notify_all()
            t.start()

    def _serve(self, sock: socket.socket, record: ConnectionRecord) -> None:
        deadline = record.accepted_at + self.max_lifetime
        conn = FaultConnection(self, sock, record, deadline)
        try:
            sock.settimeout(_POLL)
            if self.tls_context is not None and getattr(self.behavior, "auto_handshake", True):
                if not self._handshake(conn):
                    conn.close()
                    return
            self.behavior(conn)
        except ServerStopping:
            pass
        except (ConnectionError, ssl.SSLError, socket.timeout):
            record.peer_closed = True
        except OSError:
            if not self._stop.is_set():  # after close() shut the socket down: expected
                with self._lock:
                    self.errors.append(f"connection {record.index}:\n{traceback.format_exc()}")
        except BaseException:
            with self._lock:
                self.errors.append(f"connection {record.index}:\n{traceback.format_exc()}")
        finally:
            if not record.ended:
                record.ended = "stop" if self._stop.is_set() else "lifetime"
            conn._end(record.ended)
            with self._lock:
                self._socks.discard(sock)
                record.done.set()
                self._cond.notify_all()

    def _handshake(self, conn: FaultConnection) -> bool:
        assert self.tls_context is not None
        tls = self.tls_context.wrap_socket(
            conn.sock, server_side=True, do_handshake_on_connect=False
        )
        with self._lock:
            self._socks.discard(conn.sock)
            self._socks.add(tls)
        conn.sock = tls
        end = min(conn.deadline, time.monotonic() + self.handshake_timeout)
        while True:
            if conn.stopping or time.monotonic() >= end:
                return False
            try:
                tls.do_handshake()
                conn.record.tls_version = tls.version()
                return True
            except (socket.timeout, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                continue
            except (ssl.SSLError, OSError):
                conn.record.peer_closed = True
                return False

    def __repr__(self) -> str:
        return f"<FaultServer {self.name} {self.url()} connections={len(self.connections)}>"
