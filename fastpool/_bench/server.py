"""What the clients measure against: fastpool's embedded server, or the user's URL.

A :class:`Target` is everything a worker needs to reach it (handed over as a plain dict):
URL, host, the resolved address (for the floor, which takes an IP), TLS and the CA to verify
with, and the status and body length every response must have.

The embedded server runs in this (the parent) process, in its own C thread that never takes
the GIL; the parent only waits on its workers' pipes while they measure.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

from .options import Options, UsageError

#: The path the clients GET from the embedded server (it answers every path alike).
EMBEDDED_PATH = "/api/v3/ticker"


@dataclass
class Target:
    kind: str                 #: "embedded" or "url"
    url: str                  #: what is fetched
    base: str                 #: scheme://host:port
    path: str                 #: path (and query) of url
    host: str
    port: int
    ip: str                   #: resolved once, here
    family: int
    tls: bool
    tls_version: Optional[str]
    ca_file: Optional[str]    #: None: the system trust store
    ca_pem: Optional[bytes]
    status: int               #: every response must have this status
    length: int               #: and this body length (-1: not checked)
    remote: bool
    body_size: Optional[int] = None   #: configured (embedded server)

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        if self.kind == "embedded":
            proto = f"HTTPS (TLS {self.tls_version})" if self.tls else "HTTP"
            text = f"embedded server, {proto}, {self.url}, {self.body_size}-byte body"
            if self.length != self.body_size:
                text += (", any body length accepted" if self.length < 0
                         else f", {self.length}-byte body expected")
            return text
        return f"{self.url} (status {self.status}, " + \
            (f"{self.length}-byte body)" if self.length >= 0 else "any body length)")


class Embedded:
    """One running embedded server and its Target; stop() is idempotent."""

    def __init__(self, o: Options, body_size: int, tmpdir: str) -> None:
        from ._server import EmbeddedServer

        tls = not o.plain
        kw: dict[str, Any] = dict(tls=tls, body_size=body_size)
        if tls:
            kw.update(tls_min=o.tls, tls_max=o.tls)
        self.server = EmbeddedServer(**kw).start()
        try:
            ca_file = ca_pem = None
            if tls:
                ca_file = self.server.write_ca(os.path.join(tmpdir, f"ca-{self.server.port}.pem"))
                ca_pem = self.server.ca_pem
            base = self.server.url
            self.target = Target(
                kind="embedded", url=base + EMBEDDED_PATH, base=base, path=EMBEDDED_PATH,
                host="127.0.0.1", port=self.server.port, ip="127.0.0.1",
                family=int(socket.AF_INET), tls=tls, tls_version=o.tls if tls else None,
                ca_file=ca_file, ca_pem=ca_pem,
                status=o.expect_status or 200,
                length=body_size if o.expect_length is None else o.expect_length,
                remote=False, body_size=body_size)
        except BaseException:
            self.server.stop()
            raise

    def stats(self) -> dict:
        return self.server.stats()

    def stop(self) -> None:
        self.server.stop()


@contextlib.contextmanager
def embedded(o: Options, body_size: int, tmpdir: str) -> Iterator[Embedded]:
    srv = Embedded(o, body_size, tmpdir)
    try:
        yield srv
    finally:
        srv.stop()


def wrong_ca(target: Target, tmpdir: str) -> Target:
    """The target, with a CA that did not sign its certificate (made by a throwaway
    embedded server) in place of the right one: a client that verifies TLS must refuse it."""
    import dataclasses

    from ._server import EmbeddedServer

    with EmbeddedServer(tls=True) as other:
        path = other.write_ca(os.path.join(tmpdir, "wrong-ca.pem"))
        pem = other.ca_pem
    return dataclasses.replace(target, ca_file=path, ca_pem=pem)


def url_target(o: Options) -> Target:
    """The user's URL as a Target: resolved, and probed with one GET that sets the expected
    status and length (unless given). UsageError when it cannot be used."""
    assert o.url is not None  # called for a URL run only
    parts = urlsplit(o.url.strip())
    scheme = parts.scheme.lower()
    tls = scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    base = f"{scheme}://{parts.netloc}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UsageError(f"cannot resolve {host!r}: {exc.strerror or exc}") from None
    family, _, _, _, sockaddr = infos[0]
    ca_pem = None
    if o.cafile:
        with open(o.cafile, "rb") as f:
            ca_pem = f.read()
    status, length, version = probe(host, port, path, tls, o.cafile)
    if not tls and not 200 <= status <= 299 and o.expect_status is None \
            and _speaks_tls(host, port):
        raise UsageError(f"{base}{path} answered {status} to a plain-HTTP GET, and "
                         f"{host}:{port} speaks TLS: use https://{parts.netloc}{path}")
    check_status(o, status, f"{base}{path}")
    return Target(
        kind="url", url=base + path, base=base, path=path, host=host, port=port,
        ip=str(sockaddr[0]), family=int(family), tls=tls, tls_version=version, ca_file=o.cafile,
        ca_pem=ca_pem, status=o.expect_status or status,
        length=length if o.expect_length is None else o.expect_length, remote=o.remote)


def check_status(o: Options, status: int, url: str) -> None:
    """A benchmark of an error page measures the error path: the URL's first response must
    be 2xx, or the status --expect-status names."""
    reason = http.client.responses.get(status, "")
    got = f"{status} {reason}".strip()
    if o.expect_status is None:
        if not 200 <= status <= 299:
            raise UsageError(
                f"{url} answered {got} to the first GET: that is not a page to benchmark "
                f"(an error page, a redirect, or the wrong path or scheme). Fix the URL, or "
                f"pass --expect-status {status} to measure that response anyway.")
    elif status != o.expect_status:
        raise UsageError(f"{url} answered {got} to the first GET, not the "
                         f"{o.expect_status} that --expect-status asks for")


def _speaks_tls(host: str, port: int) -> bool:
    """Whether the port answers a TLS ClientHello with a handshake (certificate unchecked:
    only to tell the user that the URL wants https://)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=host):
                return True
    except (OSError, ssl.SSLError):
        return False


def probe(host: str, port: int, path: str, tls: bool, cafile: Optional[str]) -> tuple:
    """One GET with the standard library: (status, body length, TLS version)."""
    conn: http.client.HTTPConnection
    try:
        if tls:
            ctx = ssl.create_default_context(cafile=cafile) if cafile else \
                ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=10, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=10)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            version = None
            if tls and isinstance(conn.sock, ssl.SSLSocket):
                version = conn.sock.version()   # None only before the handshake
                if version is not None:
                    version = version.replace("TLSv", "")
            return resp.status, len(body), version
        finally:
            conn.close()
    except ssl.SSLError as exc:
        raise UsageError(f"TLS with {host}:{port} failed: {exc} (a private CA? --cafile PEM)") \
            from None
    except (OSError, http.client.HTTPException) as exc:
        if not tls and _speaks_tls(host, port):
            raise UsageError(f"{host}:{port} speaks TLS, and the URL says http://: use "
                             f"https://{host}:{port}{path}") from None
        raise UsageError(f"cannot GET {path} from {host}:{port}: {exc}") from None
