"""Opening connections, for both pools: resolve once, build the TLS context once, try each
address in turn."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
import threading
import warnings
import weakref
from time import monotonic_ns
from typing import Any, Callable, Optional, Tuple, Union

from .._engine.protocol import Connection, Engine, TLSContext
from .._model.errors import ConnectError, FastpoolError, TLSError
from .._model.limits import Limits
from .._model.url import Origin


class ResolveError(ConnectError):
    """The pool's host name could not be resolved."""


class InsecureWarning(UserWarning):
    """verify=False: the server's identity is not checked."""


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def caller_stacklevel() -> int:
    """The stacklevel for warnings.warn that points at the user's line: the first frame
    outside the fastpool package, however deep the call into it went."""
    level = 1
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


VerifyTypes = Union[bool, str, "os.PathLike[str]", bytes]
_Path = Union[str, "os.PathLike[str]"]
CertTypes = Union[None, _Path, Tuple[_Path, _Path]]


def resolve(origin: Origin) -> list[tuple[int, str]]:
    """(family, address) pairs for the origin, in the resolver's order. Called once per pool,
    outside any request: the hot path never touches DNS."""
    try:
        infos = socket.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM,
                                   proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ResolveError(f"cannot resolve host {origin.host!r}: {exc.strerror or exc}") from None
    out: list[tuple[int, str]] = []
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6) and (family, sockaddr[0]) not in out:
            out.append((int(family), str(sockaddr[0])))
    if not out:
        raise ResolveError(f"host {origin.host!r} has no IPv4 or IPv6 address")
    return out


#: TLS contexts alive in the process, by their whole configuration. Pools with the same
#: configuration share one: the CA bundle is parsed once, and a new pool's first handshakes
#: resume sessions an earlier pool got (a context only ever offers its sessions to servers
#: under that same configuration, so nothing verified leaks into an unverified setting).
_CONTEXTS: weakref.WeakValueDictionary[tuple[Any, ...], Any] = weakref.WeakValueDictionary()


def _file_key(path: Optional[str]) -> Optional[tuple[str, int, int]]:
    if path is None:
        return None
    st = os.stat(path)
    return (os.path.realpath(path), st.st_size, st.st_mtime_ns)  # a rotated file is new


def tls_context(engine: Engine, verify: VerifyTypes, cert: CertTypes,
                tls_min: Optional[str], tls_max: Optional[str]) -> TLSContext:
    """The engine's TLSContext for a pool's TLS settings (shared by equal settings)."""
    ca_file = ca_pem = None
    if verify is True:
        pass  # the system trust store; SSL_CERT_FILE / SSL_CERT_DIR are honoured
    elif verify is False:
        warnings.warn("verify=False: the server's certificate and name are not checked; "
                      "anyone on the path can read and alter requests", InsecureWarning,
                      stacklevel=caller_stacklevel())
    elif isinstance(verify, bytes):
        ca_pem = verify
    elif isinstance(verify, (str, os.PathLike)):
        ca_file = os.fspath(verify)
        if not os.path.exists(ca_file):
            raise TLSError(f"verify={ca_file!r}: no such CA file")
    else:
        raise TypeError("verify must be True, False, a CA file path, or PEM bytes")
    cert_file = key_file = None
    if cert is not None:
        if isinstance(cert, tuple):
            if len(cert) != 2:
                raise TypeError("cert must be a path or a (certfile, keyfile) tuple")
            cert_file, key_file = (os.fspath(cert[0]), os.fspath(cert[1]))
        else:
            cert_file = os.fspath(cert)
        for path in (cert_file, key_file):
            if path is not None and not os.path.exists(path):
                raise TLSError(f"cert: no such file {path!r}")
    key = (engine.__name__, verify is not False, _file_key(ca_file),
           hashlib.sha256(ca_pem).hexdigest() if ca_pem is not None else None,
           _file_key(cert_file), _file_key(key_file), tls_min, tls_max,
           # the system trust store is whatever these point at when the context is built
           os.environ.get("SSL_CERT_FILE") if verify is True else None,
           os.environ.get("SSL_CERT_DIR") if verify is True else None)
    ctx = _CONTEXTS.get(key)
    if ctx is None:
        ctx = engine.TLSContext(verify=verify is not False, ca_file=ca_file, ca_pem=ca_pem,
                                cert_file=cert_file, key_file=key_file, min_version=tls_min,
                                max_version=tls_max)
        _CONTEXTS[key] = ctx
    return ctx


def resolve_addresses(origin: Origin, addresses: Any) -> list[tuple[int, str]]:
    """The pool's `addresses=`: "resolved" (every address the name resolves to), or a list
    of IP literals or host names (each resolved, in the order given; duplicates dropped)."""
    if addresses == "resolved":
        return resolve(origin)
    if isinstance(addresses, (str, bytes)) or not hasattr(addresses, "__iter__"):
        raise TypeError(f'addresses must be "resolved" or a list of IP addresses or host '
                        f"names, got {addresses!r}")
    out: list[tuple[int, str]] = []
    for entry in addresses:
        if not isinstance(entry, str) or not entry:
            raise TypeError(f"addresses must hold str, got {entry!r}")
        host = entry[1:-1] if entry.startswith("[") and entry.endswith("]") else entry
        for pair in resolve(Origin(origin.scheme, host, origin.port, "")):
            if pair not in out:
                out.append(pair)
    if not out:
        raise ValueError("addresses is empty")
    return out


def open_connection(engine: Engine, addrs: list[tuple[int, str]], origin: Origin,
                    tls: Optional[TLSContext], limits: Limits, blocking: bool,
                    timeout_ns: int, deadline_ns: int = 0, first: int = 0) -> Connection:
    """An open engine Connection to the first address that accepts, from addrs[first] on
    (round), by the connect timeout (and the request's total deadline, when sooner); its
    `address` is the index of the one that did. The last error is raised when none does;
    a TLS failure is not retried on another address (it would fail the same way). The TLS
    name (SNI, verification) and the Host header stay the URL's whatever the address."""
    now = monotonic_ns()
    stop = 0 if timeout_ns < 0 else now + timeout_ns
    if deadline_ns and (stop == 0 or deadline_ns < stop):
        stop = deadline_ns
    last: Optional[FastpoolError] = None
    n = len(addrs)
    for k in range(n):
        index = (first + k) % n
        family, address = addrs[index]
        conn = engine.Connection(limits)
        try:
            conn.open(family, address, origin.port, tls, origin.host, blocking, stop)
            conn.address = index
            return conn
        except TLSError:
            raise
        except ConnectError as exc:
            last = exc
    assert last is not None
    raise last


#: An opener thread checks the connection it opened this many before for session tickets
#: before it opens the next (see open_all): by then they have had a whole handshake's time
#: to arrive.
_HARVEST_BACK = 2


def open_all(open_one: Callable[[int], Connection], n: int, threads: int,
             harvest: bool = True) -> list[Connection]:
    """Opens connections 0 .. n-1 (``open_one(i)``) from ``threads`` threads (the caller's
    and threads - 1 more; each releases the GIL while it connects): the initial fill of
    both pools. After the first failure the openers open nothing more; every connection
    opened is closed and the failure that matters most is raised (see _first_failure).

    TLS 1.3 servers send their session tickets a round trip after the handshake, and a
    client stores them only when it reads; a connection nobody has read from yet holds
    them unread. So (``harvest``: a TLS pool) before each open an opener checks the one it
    opened two before (``stale()``: SSL_peek, nothing consumed), which stores its tickets,
    and the opens after the first few resume instead of making a full handshake: no
    certificate chain parsed, verified and kept again (the CPU of a pool of a thousand
    connections, and ~5 KiB of memory each: bench/footprint.py). The connections are
    nobody else's yet, so touching them from their opener is safe; one that turns out
    stale (the server closed it, or spoke unasked) is opened again."""
    results: list[Union[Connection, BaseException, None]] = [None] * n
    todo = iter(range(n))
    lock = threading.Lock()
    failed: list[bool] = []

    def opened(i: int) -> bool:
        try:
            results[i] = open_one(i)
        except BaseException as exc:  # noqa: BLE001 - raised by open_all
            results[i] = exc
            failed.append(True)
            return False
        return True

    def work() -> None:
        mine: list[int] = []  # the indices this opener opened, in order
        while True:
            with lock:
                i = None if failed else next(todo, None)
            if i is None:
                return
            if harvest and len(mine) >= _HARVEST_BACK:
                j = mine[-_HARVEST_BACK]  # (each connection once)
                conn = results[j]
                assert conn is not None and not isinstance(conn, BaseException)
                if conn.stale():
                    conn.close()
                    if not opened(j):
                        return
            if not opened(i):
                return
            mine.append(i)

    extra = [threading.Thread(target=work, daemon=True, name="fastpool-open")
             for _ in range(min(n, threads) - 1)]
    for t in extra:
        t.start()
    interrupt: Optional[BaseException] = None
    try:
        work()
    except BaseException as exc:  # noqa: BLE001 - e.g. a signal handler's, raised below
        interrupt = exc
        failed.append(True)  # the others stop after the open they are in
    finally:
        for t in extra:
            t.join()
    conns = [r for r in results if r is not None and not isinstance(r, BaseException)]
    failure = interrupt or _first_failure(results)
    if failure is None:
        return conns
    for conn in conns:
        conn.close()
    raise failure


def _first_failure(results: list[Any]) -> Optional[BaseException]:
    """What a failed fill raises: an interrupt (KeyboardInterrupt, SystemExit: a
    BaseException that is not an Exception) before any error, so that Ctrl-C is never
    swallowed by a connect error of another opener; else the error of the lowest index."""
    errors = [r for r in results if isinstance(r, BaseException)]
    return next((e for e in errors if not isinstance(e, Exception)), errors[0] if errors
                else None)


def set_tcp_keepalive(fd: int, seconds: float) -> None:
    """TCP keepalive on a connection: probes after `seconds` idle, then every third of that,
    giving up after 3 unanswered (Linux: TCP_KEEPIDLE / KEEPINTVL / KEEPCNT; elsewhere
    SO_KEEPALIVE with the system's timers). Cheaper than keep-warm requests, but it only
    keeps NAT and load-balancer state alive where they count TCP packets, not HTTP idleness."""
    sock = socket.socket(fileno=fd)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        idle = max(1, int(seconds))
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
        elif hasattr(socket, "TCP_KEEPALIVE"):  # macOS
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPALIVE, idle)
    finally:
        sock.detach()  # the engine owns the descriptor
