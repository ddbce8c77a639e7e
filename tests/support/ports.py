"""Free loopback ports, loopback checks, and bounded readiness waits."""

from __future__ import annotations

import ipaddress
import socket
import time

__all__ = [
    "LOOPBACK_V4",
    "LOOPBACK_V6",
    "assert_loopback",
    "free_port",
    "free_ports",
    "ipv6_available",
    "wait_for_port",
]

LOOPBACK_V4 = "127.0.0.1"
LOOPBACK_V6 = "::1"

_ipv6_cache: bool | None = None


def assert_loopback(host: str) -> str:
    """Return ``host`` if it is a loopback address (127.0.0.0/8 or ::1), else raise ValueError.

    Test peers only ever bind or target loopback; a typo must not send traffic elsewhere.
    """
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"test peers use loopback IP literals only, got {host!r}") from None
    if not addr.is_loopback:
        raise ValueError(f"{host!r} is not a loopback address")
    return host


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def ipv6_available() -> bool:
    """True when the kernel can bind a TCP socket on ::1 (cached for the process)."""
    global _ipv6_cache
    if _ipv6_cache is None:
        if not socket.has_ipv6:
            _ipv6_cache = False
        else:
            try:
                with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
                    s.bind((LOOPBACK_V6, 0))
                _ipv6_cache = True
            except OSError:
                _ipv6_cache = False
    return _ipv6_cache


def free_ports(count: int, host: str = LOOPBACK_V4) -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now.

    All sockets are held open until every port is chosen, so the ports are distinct. A port
    can still be taken by someone else before the caller binds it: callers that start an
    external server (nginx) retry with new ports when the bind fails.
    """
    assert_loopback(host)
    if count < 1:
        raise ValueError("count must be >= 1")
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(_family(host), socket.SOCK_STREAM)
            held.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in held]
    finally:
        for s in held:
            s.close()


def free_port(host: str = LOOPBACK_V4) -> int:
    """One TCP port that is free on ``host`` right now (see free_ports for the caveat)."""
    return free_ports(1, host)[0]


def wait_for_port(host: str, port: int, timeout: float = 10.0, *, alive=None) -> None:
    """Block until a TCP connect to (host, port) succeeds, at most ``timeout`` seconds.

    ``alive``, if given, is called between attempts; when it returns False the wait stops
    early with RuntimeError (the server process died). Raises TimeoutError on timeout.
    """
    assert_loopback(host)
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while True:
        if alive is not None and not alive():
            raise RuntimeError(f"server exited before {host}:{port} accepted connections")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{host}:{port} did not accept within {timeout}s: {last_error}")
        time.sleep(0.02)
