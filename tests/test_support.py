"""Self-tests of the test peers in tests/support, using only the standard library as client.

If these fail, the peers do not behave as the fastpool tests assume, and those tests would
prove nothing.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from support import faults
from support.certs import (
    BAD_SERVER_CERTS,
    GOOD_SERVER_CERTS,
    X509_V_ERR,
    client_context,
)
from support.faults import MALFORMED_RESPONSES, FaultServer, http_response
from support.nginx import (
    STATIC_FILES,
    TICKER_BODY,
    NginxServer,
    NginxUnavailable,
    find_nginx,
    static_body,
)
from support.ports import assert_loopback, free_port, free_ports, ipv6_available, wait_for_port

TESTS_DIR = Path(__file__).resolve().parent
IO_TIMEOUT = 5.0

nginx_mark = pytest.mark.nginx


# --- a tiny raw HTTP/1.1 client: exact bytes, chunk boundaries, EOF vs RST -----------------


class RawResponse:
    def __init__(self, status, headers, body, chunks):
        self.status = status
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.chunks = chunks  # list of chunk sizes when chunked, else None

    def get(self, name, default=None):
        values = self.get_all(name)
        return values[0] if values else default

    def get_all(self, name):
        return [v for k, v in self.headers if k == name.lower()]


class RawConn:
    """Blocking client connection (plain or TLS) that parses responses itself."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = bytearray()

    @classmethod
    def open(cls, address, ctx: ssl.SSLContext | None = None, server_hostname=None,
             timeout=IO_TIMEOUT):
        sock = socket.create_connection(address, timeout=timeout)
        if ctx is not None:
            try:
                sock = ctx.wrap_socket(sock, server_hostname=server_hostname or address[0])
            except BaseException:
                sock.close()
                raise
        return cls(sock)

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_request(self, method, target, headers=(), body=None, host="localhost"):
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in headers]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("peer closed")
        self.buf += data

    def _line(self):
        while (i := self.buf.find(b"\r\n")) < 0:
            self._fill()
        line = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return line

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def response(self, head=False) -> RawResponse:
        status_line = self._line().decode("latin-1")
        version, status, *_ = status_line.split(" ", 2)
        assert version == "HTTP/1.1", status_line
        status = int(status)
        headers = []
        while line := self._line():
            k, _, v = line.decode("latin-1").partition(":")
            headers.append((k.strip().lower(), v.strip()))
        hmap = dict(headers)
        chunks = None
        if head or status in (204, 304) or status < 200:
            body = b""
        elif "chunked" in hmap.get("transfer-encoding", ""):
            chunks, parts = [], []
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                chunks.append(size)
                parts.append(self._take(size))
                assert self._take(2) == b"\r\n"
            body = b"".join(parts)
        elif "content-length" in hmap:
            body = self._take(int(hmap["content-length"]))
        else:
            parts = []
            try:
                while True:
                    self._fill()
                    parts.append(bytes(self.buf))
                    self.buf.clear()
            except EOFError:
                pass
            body = b"".join(parts)
        return RawResponse(status, headers, body, chunks)

    def request(self, method, target, headers=(), body=None, host="localhost"):
        self.send_request(method, target, headers, body, host)
        return self.response(head=method == "HEAD")

    def recv_exactly(self, n):
        return self._take(n)

    def wait_eof(self, timeout=IO_TIMEOUT) -> bytes:
        """Read until EOF (returning what came before it); TimeoutError if none in time."""
        self.sock.settimeout(timeout)
        got = bytes(self.buf)
        self.buf.clear()
        while True:
            data = self.sock.recv(65536)
            if not data:
                return got
            got += data


def tls_ctx(certs, **kw):
    return client_context(certs.ca, **kw)


# --- ports ---------------------------------------------------------------------------------


def test_free_ports_are_distinct_and_bindable():
    ports = free_ports(20)
    assert len(set(ports)) == 20
    for p in ports[:3]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_assert_loopback_rejects_other_addresses():
    for ok in ("127.0.0.1", "127.3.2.1", "::1"):
        assert assert_loopback(ok) == ok
    for bad in ("10.0.0.1", "192.168.1.1", "8.8.8.8", "::", "0.0.0.0", "localhost"):
        with pytest.raises(ValueError):
            assert_loopback(bad)


def test_wait_for_port_times_out_on_a_closed_port():
    port = free_port()
    with pytest.raises(TimeoutError):
        wait_for_port("127.0.0.1", port, timeout=0.2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen(1)
        wait_for_port("127.0.0.1", port, timeout=2)
    with pytest.raises(RuntimeError):
        wait_for_port("127.0.0.1", free_port(), timeout=2, alive=lambda: False)


# --- certificates --------------------------------------------------------------------------


def _san(path):
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return cert, [], []
    return cert, ext.get_values_for_type(x509.DNSName), [
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    ]


def test_cert_files_are_pem_pairs_with_p256_keys(certs):
    pairs = certs.pairs()
    assert set(pairs) == {
        "server", "server-intermediate", "server-rsa", "expired", "not-yet-valid",
        "wrong-host", "ip-only", "untrusted", "self-signed", "client", "client-untrusted",
    }
    for name, pair in pairs.items():
        assert pair.cert.name == f"{name}.pem" and pair.key.name == f"{name}.key"
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = load_pem_private_key(pair.key.read_bytes(), password=None)
        if name == "server-rsa":
            assert key.key_size == 2048  # the one RSA pair (TLS 1.2 RSA suites)
        else:
            assert isinstance(key.curve, ec.SECP256R1)
        assert cert.public_key().public_numbers() == key.public_key().public_numbers()
        chain = x509.load_pem_x509_certificates(pair.chain.read_bytes())
        assert chain[0] == cert
        assert oct(pair.key.stat().st_mode & 0o777) == "0o600"
        assert certs.pair(name) is pair
    chain = x509.load_pem_x509_certificates(certs.server_intermediate.chain.read_bytes())
    assert len(chain) == 2
    assert chain[1] == x509.load_pem_x509_certificate(certs.intermediate_ca.read_bytes())


def test_cert_names_and_validity(certs):
    _, dns, ips = _san(certs.server.cert)
    assert dns == ["localhost"] and ips == ["127.0.0.1", "::1"]
    _, dns, ips = _san(certs.wrong_host.cert)
    assert dns == ["wrong.example"] and ips == []
    _, dns, ips = _san(certs.ip_only.cert)
    assert dns == [] and ips == ["127.0.0.1"]
    now = time.time()
    expired, _, _ = _san(certs.expired.cert)
    assert expired.not_valid_after_utc.timestamp() < now
    future, _, _ = _san(certs.not_yet_valid.cert)
    assert future.not_valid_before_utc.timestamp() > now
    selfsigned, _, _ = _san(certs.self_signed.cert)
    assert selfsigned.issuer == selfsigned.subject
    untrusted, _, _ = _san(certs.untrusted.cert)
    other = x509.load_pem_x509_certificate(certs.other_ca.read_bytes())
    assert untrusted.issuer == other.subject
    client, _, _ = _san(certs.client.cert)
    client_ca = x509.load_pem_x509_certificate(certs.client_ca.read_bytes())
    assert client.issuer == client_ca.subject


def _handshake(address, ctx, hostname):
    with socket.create_connection(address, timeout=IO_TIMEOUT) as raw:
        with ctx.wrap_socket(raw, server_hostname=hostname) as tls:
            return tls.version()


@pytest.fixture(params=[pytest.param("nginx", marks=pytest.mark.nginx), "stdlib"])
def cert_peer(request, certs):
    """Returns address_for(pair_name): a TLS server presenting that certificate, served by
    nginx (its cert-* listeners) or by a stdlib fault server."""
    if request.param == "nginx":
        server = request.getfixturevalue("nginx")

        def address_for(name):
            return server.address("tls" if name == "server" else f"cert-{name}")

        return address_for
    make = request.getfixturevalue("fault_server")

    def address_for(name):
        return make(faults.respond(), tls=certs.pair(name)).address

    return address_for


@pytest.mark.parametrize("name", sorted(BAD_SERVER_CERTS))
def test_bad_server_certs_fail_stdlib_verification(certs, cert_peer, name):
    bad = BAD_SERVER_CERTS[name]
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        _handshake(cert_peer(name), tls_ctx(certs), "localhost")
    assert info.value.verify_code == bad.verify_code, info.value
    assert bad.reason in info.value.verify_message, info.value.verify_message
    # ... and it is the verification that fails, not the TLS plumbing:
    assert _handshake(cert_peer(name), client_context(None), "localhost") in ("TLSv1.2",
                                                                            "TLSv1.3")


@pytest.mark.parametrize(
    "name,host", [(n, h) for n, hosts in sorted(GOOD_SERVER_CERTS.items()) for h in hosts]
)
def test_good_server_certs_pass_stdlib_verification(certs, cert_peer, name, host):
    if host == "::1":
        if not ipv6_available():
            pytest.skip("no IPv6 on this kernel")
        # the same certificate on a ::1 listener
        srv = FaultServer(faults.respond(), host="::1", tls=certs.pair(name)).start()
        try:
            assert _handshake(srv.address, tls_ctx(certs), "::1")
        finally:
            srv.close()
        return
    assert _handshake(cert_peer(name), tls_ctx(certs), host)


def test_ip_only_cert_fails_for_a_host_name(certs, cert_peer):
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        _handshake(cert_peer("ip-only"), tls_ctx(certs), "localhost")
    assert info.value.verify_code == X509_V_ERR["HOSTNAME_MISMATCH"]


def test_server_cert_fails_for_another_ip(certs, fault_server):
    srv = fault_server(faults.respond(), host="127.0.0.2", tls=certs.server)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        _handshake(srv.address, tls_ctx(certs), "127.0.0.2")
    assert info.value.verify_code == X509_V_ERR["IP_ADDRESS_MISMATCH"]


# --- nginx: listeners ----------------------------------------------------------------------

LISTENER_TLS = {
    "plain": None, "plain6": None,
    "tls12": "TLSv1.2", "tls13": "TLSv1.3", "tls": "TLSv1.3", "tls6": "TLSv1.3",
    "mtls": "TLSv1.3",
}


@nginx_mark
@pytest.mark.parametrize("name", sorted(LISTENER_TLS))
def test_nginx_listener_answers(nginx, certs, name):
    if name.endswith("6") and not ipv6_available():
        pytest.skip("no IPv6 on this kernel")
    lst = nginx.listeners[name]
    ctx = None
    if lst.tls:
        ctx = tls_ctx(certs, cert=certs.client if name == "mtls" else None)
    mark = nginx.access_log.mark()
    with RawConn.open(lst.address, ctx, "localhost") as c:
        if ctx is not None:
            assert c.sock.version() == LISTENER_TLS[name]
        r = c.request("GET", "/api/v3/ticker?symbol=BTCUSDT", [("X-Test-Tag", name)])
    assert r.status == 200
    assert r.body == TICKER_BODY and len(r.body) == 137
    assert r.get("content-type") == "application/json"
    assert r.get("content-length") == "137"
    assert r.get("x-request-uri") == "/api/v3/ticker?symbol=BTCUSDT"
    assert r.get("x-test-tag") == name
    (entry,) = nginx.access_log.wait_for(1, since=mark)
    assert entry.server_port == lst.port and entry.tag == name
    assert entry.ssl_protocol == (LISTENER_TLS[name] or "")
    if name == "mtls":
        assert r.get("x-client-verify") == "SUCCESS" == entry.ssl_client_verify
    assert nginx.url(name, "/x") == f"{'https' if lst.tls else 'http'}://" + (
        f"[{lst.host}]" if ":" in lst.host else lst.host) + f":{lst.port}/x"


@nginx_mark
def test_nginx_http_client_over_tls(nginx, certs):
    conn = http.client.HTTPSConnection("localhost", nginx.port("tls"), context=tls_ctx(certs),
                                       timeout=IO_TIMEOUT)
    try:
        conn.request("GET", "/api/v3/ticker")
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["symbol"] == "BTCUSDT"
    finally:
        conn.close()


@nginx_mark
@pytest.mark.parametrize(
    "listener,client_min,client_max",
    [
        ("tls13", None, ssl.TLSVersion.TLSv1_2),
        ("tls12", ssl.TLSVersion.TLSv1_3, None),
    ],
)
def test_nginx_tls_version_pinning_holds(nginx, certs, listener, client_min, client_max):
    ctx = tls_ctx(certs, minimum=client_min, maximum=client_max)
    with pytest.raises(ssl.SSLError) as info:
        _handshake(nginx.address(listener), ctx, "localhost")
    assert not isinstance(info.value, ssl.SSLCertVerificationError)
    assert "VERSION" in info.value.reason.upper(), info.value


@nginx_mark
def test_nginx_both_versions_listener_negotiates_either(nginx, certs):
    for maximum, expected in [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"), (None, "TLSv1.3")]:
        assert _handshake(nginx.address("tls"), tls_ctx(certs, maximum=maximum),
                          "localhost") == expected


@nginx_mark
@pytest.mark.parametrize("client", ["none", "untrusted"])
def test_nginx_mtls_rejects_missing_or_untrusted_client_cert(nginx, certs, client):
    cert = None if client == "none" else certs.client_untrusted
    with RawConn.open(nginx.address("mtls"), tls_ctx(certs, cert=cert), "localhost") as c:
        r = c.request("GET", "/api/v3/ticker")
        assert r.status == 400
        assert r.get("connection") == "close"
        verify = r.get("x-client-verify")
        assert verify == "NONE" if client == "none" else verify.startswith("FAILED")
        c.wait_eof()


# --- nginx: access log and keep-alive ------------------------------------------------------


@nginx_mark
def test_nginx_access_log_counts_connections_and_requests(nginx):
    mark = nginx.access_log.mark()
    conns = [http.client.HTTPConnection("127.0.0.1", nginx.port("plain"), timeout=IO_TIMEOUT)
             for _ in range(2)]
    try:
        for i in range(200):
            c = conns[i % 2]
            c.request("GET", f"/api/v3/ticker?i={i}", headers={"X-Test-Tag": f"c{i % 2}"})
            resp = c.getresponse()
            assert resp.status == 200 and resp.read() == TICKER_BODY
            assert resp.getheader("X-Connection-Requests") == str(i // 2 + 1)
    finally:
        for c in conns:
            c.close()
    entries = nginx.access_log.wait_for(200, since=mark)
    assert len(entries) == 200
    by_conn = nginx.access_log.connections(since=mark)
    assert len(by_conn) == 2
    for serial, reqs in by_conn.items():
        assert [e.connection_requests for e in reqs] == list(range(1, 101))
        assert len({e.tag for e in reqs}) == 1
        assert len({e.remote_port for e in reqs}) == 1
    assert sorted(e.uri for e in entries) == sorted(f"/api/v3/ticker?i={i}" for i in range(200))


@nginx_mark
@pytest.mark.parametrize("listener,version", [("tls12", "TLSv1.2"), ("tls13", "TLSv1.3")])
def test_nginx_access_log_records_tls_session_reuse(nginx, certs, listener, version):
    ctx = tls_ctx(certs)
    mark = nginx.access_log.mark()
    with RawConn.open(nginx.address(listener), ctx, "localhost") as c:
        assert c.request("GET", "/api/v3/ticker").status == 200  # TLS 1.3: ticket arrives
        session = c.sock.session
        assert not c.sock.session_reused
    assert session is not None
    raw = socket.create_connection(nginx.address(listener), timeout=IO_TIMEOUT)
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as tls:
        assert tls.session_reused
        c = RawConn(tls)
        assert c.request("GET", "/api/v3/ticker?again").status == 200
    first, second = nginx.access_log.wait_for(2, since=mark)
    assert first.ssl_protocol == second.ssl_protocol == version
    assert (first.ssl_session_reused, second.ssl_session_reused) == (False, True)
    assert first.connection != second.connection


@nginx_mark
def test_nginx_keepalive_requests_closes_after_n(nginx_factory):
    server = nginx_factory(keepalive_requests=100, keepalive_timeout=1.0)
    with RawConn.open(server.address("plain")) as c:
        for i in range(1, 101):
            r = c.request("GET", f"/api/v3/ticker?n={i}")
            assert r.status == 200
            assert r.get("connection") == ("close" if i == 100 else "keep-alive")
            assert r.get("x-connection-requests") == str(i)
        assert c.wait_eof() == b""
    entries = server.access_log.wait_for(100)
    assert len(server.access_log.entries()) == 100  # readiness probes are not logged
    assert len({e.connection for e in entries}) == 1
    assert entries[-1].connection_requests == 100


@nginx_mark
def test_nginx_keepalive_timeout_closes_idle_connection(nginx_factory):
    server = nginx_factory(keepalive_requests=100, keepalive_timeout=0.5)
    with RawConn.open(server.address("plain")) as c:
        assert c.request("GET", "/api/v3/ticker").get("connection") == "keep-alive"
        assert c.request("GET", "/api/v3/ticker").get("x-connection-requests") == "2"
        start = time.monotonic()
        assert c.wait_eof(timeout=5.0) == b""  # nginx closed the idle connection
        assert time.monotonic() - start >= 0.3
    assert [e.connection_requests for e in server.access_log.wait_for(2)] == [1, 2]


# --- nginx: locations ----------------------------------------------------------------------


@nginx_mark
def test_nginx_chunked_locations_are_chunked(nginx):
    with RawConn.open(nginx.address("plain")) as c:
        r = c.request("GET", "/chunked/ticker")
        assert r.get("transfer-encoding") == "chunked" and r.get("content-length") is None
        assert r.body == TICKER_BODY and r.chunks == [137]
        r = c.request("GET", "/chunked/64k.bin")
        assert r.get("transfer-encoding") == "chunked"
        assert r.body == static_body("64k.bin") and len(r.chunks) > 1
        r = c.request("GET", "/chunked/echo-uri?id=42")
        assert r.get("transfer-encoding") == "chunked"
        assert r.body == b"uri=/chunked/echo-uri?id=42;end\n" and r.chunks == [32]
        assert c.request("GET", "/api/v3/ticker").get("x-connection-requests") == "4"


@nginx_mark
@pytest.mark.parametrize("name", sorted(STATIC_FILES))
def test_nginx_static_files(nginx, certs, name):
    with RawConn.open(nginx.address("tls"), tls_ctx(certs), "localhost") as c:
        r = c.request("GET", f"/static/{name}")
        assert r.status == 200 and r.get("content-length") == str(STATIC_FILES[name])
        assert r.body == static_body(name) and len(r.body) == STATIC_FILES[name]
        assert b"<" not in r.body
        r = c.request("GET", f"/static/{name}", [("If-None-Match", "*")])
        assert r.status == 304 and r.body == b"" and r.get("etag")
        if STATIC_FILES[name] <= 65536:  # limit_rate 256k: keep the test short
            r = c.request("GET", f"/throttled/{name}")
            assert r.body == static_body(name)


@nginx_mark
def test_nginx_post_endpoint_identifies_each_request(nginx):
    mark = nginx.access_log.mark()
    with RawConn.open(nginx.address("plain")) as c:
        for i in range(3):
            body = json.dumps({"symbol": "BTCUSDT", "qty": i}).encode()
            r = c.request("POST", f"/api/v3/order?clientOrderId=o{i}", body=body)
            assert r.status == 200
            doc = json.loads(r.body)
            assert doc["method"] == "POST" and doc["uri"] == f"/api/v3/order?clientOrderId=o{i}"
            assert doc["request"] == i + 1
            assert r.get("x-request-uri") == doc["uri"]
    entries = nginx.access_log.wait_for(3, since=mark)
    assert [e.method for e in entries] == ["POST"] * 3
    assert all(e.request_length > 40 for e in entries)


@nginx_mark
def test_nginx_head_204_304_keep_the_connection(nginx):
    with RawConn.open(nginx.address("plain")) as c:
        r = c.request("HEAD", "/api/v3/ticker")
        assert r.status == 200 and r.get("content-length") == "137" and r.body == b""
        r = c.request("GET", "/204")
        assert r.status == 204 and r.get("content-length") is None
        r = c.request("GET", "/304")
        assert r.status == 304
        r = c.request("GET", "/api/v3/ticker")
        assert r.body == TICKER_BODY and r.get("x-connection-requests") == "4"
        assert c.buf == b""


@nginx_mark
def test_nginx_close_status_and_repeated_headers(nginx):
    with RawConn.open(nginx.address("plain")) as c:
        r = c.request("GET", "/status/429")
        assert r.status == 429 and r.get("retry-after") == "1"
        assert json.loads(r.body)["code"] == -1003
        for code in (400, 500, 503):
            assert c.request("GET", f"/status/{code}").status == code
        r = c.request("GET", "/headers/repeated")
        assert r.get_all("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
        assert r.get_all("x-dup") == ["one", "two"]
        r = c.request("GET", "/close")
        assert r.status == 200 and r.get("connection") == "close"
        assert c.wait_eof() == b""


@nginx_mark
def test_nginx_echo_module_locations(nginx):
    if not nginx.has_echo:
        msg = "libnginx-mod-http-echo not installed (nginx-light pulls it in on Debian 12)"
        if os.environ.get("FASTPOOL_REQUIRE_NGINX") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    with RawConn.open(nginx.address("plain")) as c:
        start = time.monotonic()
        r = c.request("GET", "/slow?s=0.3")
        assert time.monotonic() - start >= 0.25
        assert r.body == b"slept 0.3\n"
        payload = bytes(range(256)) * 40
        r = c.request("POST", "/echo", body=payload)
        assert r.status == 200 and r.body == payload


# --- nginx: process lifecycle --------------------------------------------------------------


def _process_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] == "Z"  # zombie: dead, not yet reaped
    except FileNotFoundError:
        return True


@nginx_mark
def test_nginx_stop_leaves_no_process_or_listener(nginx_factory):
    server = nginx_factory(ipv6=False, cert_listeners=False)
    pid, port = server.pid, server.port("plain")
    assert set(server.listeners) == {"plain", "tls12", "tls13", "tls", "mtls"}
    assert not _process_gone(pid)
    server.stop()
    assert not server.running and _process_gone(pid)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    server.stop()  # idempotent


@nginx_mark
def test_nginx_dies_with_the_process_that_started_it(certs, nginx_binary, tmp_path):
    # Simulates a test run killed hard (no teardown): the kernel must take nginx down too.
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(TESTS_DIR)!r})
        from support.certs import generate_certs
        from support.nginx import NginxServer
        s = NginxServer(generate_certs({str(tmp_path / 'c')!r}), {str(tmp_path / 'n')!r},
                        binary={nginx_binary!r}, cert_listeners=False).start()
        print(s.pid, s.port("plain"), flush=True)
        time.sleep(60)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        pid, port = map(int, line.split())
        assert not _process_gone(pid)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(5)
        deadline = time.monotonic() + 5
        while not _process_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _process_gone(pid), f"nginx {pid} outlived its parent"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        child.stdout.close()


@nginx_mark
def test_nginx_retries_with_new_ports_when_one_is_taken(certs, nginx_binary, tmp_path,
                                                        monkeypatch):
    import support.nginx as nginx_mod

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    calls = []
    real = nginx_mod.free_ports

    def first_one_taken(count, host="127.0.0.1"):
        ports = real(count, host)
        calls.append(host)
        if len(calls) == 1:
            ports[0] = taken.getsockname()[1]
        return ports

    monkeypatch.setattr(nginx_mod, "free_ports", first_one_taken)
    server = NginxServer(certs, tmp_path / "n", binary=nginx_binary, ipv6=False,
                         cert_listeners=False)
    try:
        server.start()
        assert server.port("plain") != taken.getsockname()[1]
        assert len(calls) == 2
        assert RawConn.open(server.address("plain")).request("GET", "/").status == 200
    finally:
        server.stop()
        taken.close()


@nginx_mark
def test_nginx_bad_config_reports_error_log_and_leaves_nothing(certs, nginx_binary, tmp_path):
    server = NginxServer(certs, tmp_path / "n", binary=nginx_binary, cert_listeners=False,
                         extra_http="  no_such_directive on;")
    with pytest.raises(RuntimeError, match="no_such_directive"):
        server.start()
    assert not server.running and server.pid is None


def test_missing_nginx_skips_or_fails_when_required(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTPOOL_NGINX", str(tmp_path / "no-nginx"))
    with pytest.raises(NginxUnavailable, match="apt-get install -y nginx-light"):
        find_nginx()
    env = dict(os.environ)
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS_DIR)!r})\n"
        "pytest_plugins = ['support.fixtures']\n"
    )
    (tmp_path / "test_uses_nginx.py").write_text("def test_it(nginx):\n    assert False\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
           str(tmp_path / "test_uses_nginx.py")]
    env.pop("FASTPOOL_REQUIRE_NGINX", None)
    skipped = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=120)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    assert "nginx-light" in skipped.stdout
    env["FASTPOOL_REQUIRE_NGINX"] = "1"
    failed = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert failed.returncode == 1 and "1 error" in failed.stdout, failed.stdout
    assert "FASTPOOL_REQUIRE_NGINX=1" in failed.stdout


@nginx_mark
def test_nginx_config_keeps_every_path_inside_its_directory(nginx):
    conf = nginx.conf_path.read_text()
    writers = ("pid", "lock_file", "error_log", "access_log", "client_body_temp_path",
               "proxy_temp_path", "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path")
    seen = set()
    for line in conf.splitlines():
        words = line.strip().rstrip(";").split()
        if words and words[0] in writers:
            seen.add(words[0])
            assert words[1].startswith(f"{nginx.directory}/"), line
    assert seen == set(writers)
    assert "daemon off;" in conf and "master_process off;" in conf


# --- fault servers -------------------------------------------------------------------------


def _get(c: RawConn, target="/api/v3/ticker", **kw):
    c.send_request("GET", target, **kw)


def test_fault_respond_keeps_alive_and_records(fault_server):
    srv = fault_server(faults.respond(body=b"hello"))
    with RawConn.open(srv.address) as c:
        r1 = c.request("GET", "/a?x=1")
        r2 = c.request("POST", "/b", body=b"payload")
        r3 = c.request("HEAD", "/c")
    assert (r1.body, r2.body, r3.body) == (b"hello", b"hello", b"")
    assert r3.get("content-length") == "5"
    assert [r1.get("x-request-target"), r2.get("x-request-index")] == ["/a?x=1", "1"]
    srv.wait_idle()
    assert srv.connection_count == 1
    reqs = srv.requests
    assert [(r.method, r.target, r.index, r.body) for r in reqs] == [
        ("GET", "/a?x=1", 0, b""), ("POST", "/b", 1, b"payload"), ("HEAD", "/c", 2, b"")]
    assert reqs[1].header("content-length") == "7"
    assert srv.received == b"".join(r.raw for r in reqs)
    assert srv.connections[0].peer_closed and srv.connections[0].partial == b""


def test_fault_records_chunked_request_bodies(fault_server):
    srv = fault_server(faults.respond())
    with RawConn.open(srv.address) as c:
        c.sock.sendall(b"POST /o HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
        assert c.response().status == 200
    srv.wait_for_requests(1)
    assert srv.requests[0].body == b"hello world"


def test_fault_close_on_accept(fault_server):
    srv = fault_server(faults.close_on_accept())
    with RawConn.open(srv.address) as c:
        assert c.wait_eof() == b""
    srv.wait_idle()
    assert srv.connection_count == 1 and srv.requests == [] and srv.received == b""
    assert srv.connections[0].ended == "fin"


def test_fault_reset_on_accept(fault_server):
    srv = fault_server(faults.reset_on_accept())
    with RawConn.open(srv.address) as c:
        srv.wait_idle()
        with pytest.raises(ConnectionResetError):
            c.wait_eof()
    assert srv.connections[0].ended == "rst" and srv.requests == []


def test_fault_close_after_request_received_it(fault_server):
    srv = fault_server(faults.close_after_request())
    with RawConn.open(srv.address) as c:
        _get(c, "/api/v3/order?id=7")
        assert c.wait_eof() == b""
    srv.wait_idle()
    assert [r.target for r in srv.requests] == ["/api/v3/order?id=7"]
    assert srv.connections[0].sent == b""


def test_fault_partial_head(fault_server):
    srv = fault_server(faults.partial_head(b"HTTP/1.1 200 OK\r\nContent-Le"))
    with RawConn.open(srv.address) as c:
        _get(c)
        assert c.wait_eof() == b"HTTP/1.1 200 OK\r\nContent-Le"
    assert len(srv.requests) == 1


def test_fault_partial_body(fault_server):
    srv = fault_server(faults.partial_body(content_length=100, sent=10))
    conn = http.client.HTTPConnection(*srv.address, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", "/x")
        resp = conn.getresponse()
        assert resp.getheader("Content-Length") == "100"
        with pytest.raises(http.client.IncompleteRead) as info:
            resp.read()
        assert len(info.value.partial) == 10 and info.value.expected == 90
    finally:
        conn.close()
    assert len(srv.requests) == 1


def test_fault_reset_after_request(fault_server):
    srv = fault_server(faults.reset_after_request())
    with RawConn.open(srv.address) as c:
        _get(c, "/api/v3/order")
        with pytest.raises(ConnectionResetError):
            c.wait_eof()
    srv.wait_idle()
    assert len(srv.requests) == 1 and srv.connections[0].ended == "rst"


def test_storm_answers_with_the_id_and_counts_each_handler_run(fault_server):
    storm = faults.Storm(1, {"answer": 1.0})
    srv = fault_server(storm)
    with RawConn.open(srv.address) as c:
        r1 = c.request("POST", "/o", headers=[("X-Request-Id", "a")], body=b"{}")
        r2 = c.request("PUT", "/o", headers=[("X-Request-Id", "b")], body=b"{}")
    assert (r1.body, r1.get("x-request-id"), r2.body) == (b"a", "a", b"b")
    srv.close()
    assert storm.processed == {"a": 1, "b": 1} and storm.faults["answer"] >= 2


@pytest.mark.parametrize("fault,processed", [
    ("close_before_read", 0), ("read_then_close", 1), ("read_then_reset", 1),
    ("partial_then_close", 1), ("stall", 1)])
def test_storm_faults_run_the_handler_or_not(fault_server, fault, processed):
    storm = faults.Storm(7, {fault: 1.0}, stall_hold=5.0)
    srv = fault_server(storm)
    with RawConn.open(srv.address) as c:
        c.send_request("POST", "/o", headers=[("X-Request-Id", "x")], body=b"{}")
        if fault == "stall":
            srv.wait_for_requests(1)
        else:
            with pytest.raises((ConnectionResetError, EOFError)):
                c.response()
    srv.wait_idle()  # the stall ends when its client closes, well before stall_hold
    srv.close()
    assert storm.processed["x"] == processed and dict(storm.faults) == {fault: 1}


def test_storm_close_idle_closes_before_a_request(fault_server):
    storm = faults.Storm(3, {"close_idle": 1.0})
    srv = fault_server(storm)
    with RawConn.open(srv.address) as c:
        assert c.wait_eof() == b""
    srv.close()
    assert not storm.processed and srv.received == b""


def test_storm_draws_the_same_faults_for_the_same_seed(fault_server):
    def draws(seed: int) -> list[str]:
        storm = faults.Storm(seed, {"answer": 0.5, "read_then_close": 0.5})
        srv = fault_server(storm)
        seen = []
        for _ in range(3):  # three connections, each until its first fault
            with RawConn.open(srv.address) as c:
                for i in range(20):
                    c.send_request("POST", "/o", headers=[("X-Request-Id", str(i))], body=b"")
                    try:
                        c.response()
                    except (EOFError, ConnectionResetError):
                        break
                    seen.append("answer")
                seen.append("|")
        srv.close()
        return seen

    assert draws(11) == draws(11)
    assert faults.Storm(0).name == "storm[0]"
    with pytest.raises(ValueError):
        faults.Storm(0, {"meteor": 1.0})


def test_fault_garbage(fault_server):
    srv = fault_server(faults.garbage(b"\x00\x01 not http\r\n\r\n"))
    conn = http.client.HTTPConnection(*srv.address, timeout=IO_TIMEOUT)
    try:
        conn.request("GET", "/x")
        with pytest.raises(http.client.BadStatusLine):
            conn.getresponse()
    finally:
        conn.close()
    assert len(srv.requests) == 1


@pytest.mark.parametrize("kind", sorted(MALFORMED_RESPONSES))
def test_fault_malformed_sends_exactly_and_holds(fault_server, kind):
    srv = fault_server(faults.malformed(kind))
    data = MALFORMED_RESPONSES[kind]
    with RawConn.open(srv.address) as c:
        _get(c)
        assert c.recv_exactly(len(data)) == data
        c.sock.settimeout(0.2)
        with pytest.raises(socket.timeout):  # held open, nothing more
            c.sock.recv(1)
    assert srv.name == f"malformed[{kind}]"


def test_fault_extra_bytes_after_valid_response(fault_server):
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra"
    srv = fault_server(faults.extra_bytes(extra, body=b"real"))
    with RawConn.open(srv.address) as c:
        r = c.request("GET", "/one")
        assert r.status == 200 and r.body == b"real"
        expected = len(extra)
        c.sock.settimeout(IO_TIMEOUT)
        while len(c.buf) < expected:
            c._fill()
        assert bytes(c.buf) == extra
        _get(c, "/two")  # recorded, never answered
        srv.wait_for_requests(2)
    assert [r.target for r in srv.requests] == ["/one", "/two"]


def test_fault_delay(fault_server):
    srv = fault_server(faults.delay(200))
    with RawConn.open(srv.address) as c:
        for _ in range(2):
            start = time.monotonic()
            assert c.request("GET", "/x").status == 200
            assert time.monotonic() - start >= 0.19
    assert len(srv.requests) == 2 and srv.connection_count == 1


def test_fault_never_read_fills_buffers(fault_server):
    srv = fault_server(faults.never_read())
    with socket.create_connection(srv.address, timeout=IO_TIMEOUT) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        s.setblocking(False)
        chunk = b"x" * 65536
        sent, limit = 0, 64 * 1024 * 1024
        blocked = False
        while sent < limit:
            try:
                sent += s.send(chunk)
            except BlockingIOError:
                blocked = True
                break
        assert blocked, f"wrote {sent} bytes without blocking"
        assert sent < 8 * 1024 * 1024
        srv.wait_for_connections(1)
    assert srv.received == b"" and srv.requests == []


def test_fault_stall_after_request(fault_server):
    srv = fault_server(faults.stall_after_request())
    with RawConn.open(srv.address) as c:
        _get(c, "/api/v3/order")
        srv.wait_for_requests(1)
        c.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.sock.recv(1)
    assert srv.connections[0].sent == b""


@pytest.mark.parametrize("how", ["fin", "rst"])
def test_fault_stale_after_k_closes_after_response(fault_server, how):
    srv = fault_server(faults.stale_after(2, how=how))
    with RawConn.open(srv.address) as c:
        for _ in range(2):
            r = c.request("GET", "/x")
            assert r.status == 200 and r.get("connection") is None  # nothing announced
        srv.wait_idle()
        if how == "fin":
            assert c.wait_eof() == b""
        else:
            with pytest.raises(ConnectionResetError):
                c.wait_eof()
    assert len(srv.requests) == 2


def test_fault_stale_after_k_on_next_request(fault_server):
    srv = fault_server(faults.stale_after(1, when="on_next_request"))
    with RawConn.open(srv.address) as c:
        assert c.request("GET", "/first").status == 200
        _get(c, "/second")
        assert c.wait_eof() == b""
    assert [r.target for r in srv.requests] == ["/first", "/second"]
    assert srv.connections[0].sent.count(b"HTTP/1.1") == 1


def test_fault_stale_after_zero_is_close_after_request(fault_server):
    srv = fault_server(faults.stale_after(0, when="on_next_request"))
    with RawConn.open(srv.address) as c:
        _get(c)
        assert c.wait_eof() == b""
    assert len(srv.requests) == 1


def test_fault_each_connection_gets_the_behavior(fault_server):
    srv = fault_server(faults.stale_after(1))
    for i in range(3):
        with RawConn.open(srv.address) as c:
            assert c.request("GET", f"/c{i}").status == 200
            assert c.wait_eof() == b""
    srv.wait_idle()
    assert srv.connection_count == 3
    assert [(r.connection, r.index, r.target) for r in srv.requests] == [
        (0, 0, "/c0"), (1, 0, "/c1"), (2, 0, "/c2")]


# --- fault servers over TLS and IPv6 -------------------------------------------------------


def test_fault_tls_respond(fault_server, certs):
    srv = fault_server(faults.respond(), tls=certs.server)
    assert srv.url("/x", host="localhost").startswith("https://localhost:")
    with RawConn.open(srv.address, tls_ctx(certs), "localhost") as c:
        assert c.request("GET", "/x").status == 200
    srv.wait_idle()
    assert srv.connections[0].tls_version in ("TLSv1.2", "TLSv1.3")
    assert srv.requests[0].target == "/x"


def test_fault_tls_stall_after_request(fault_server, certs):
    srv = fault_server(faults.stall_after_request(), tls=certs.server)
    with RawConn.open(srv.address, tls_ctx(certs), "localhost") as c:
        _get(c, "/api/v3/order")
        srv.wait_for_requests(1)
        c.sock.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.sock.recv(1)
    assert srv.requests[0].target == "/api/v3/order"


def test_fault_tls_delay(fault_server, certs):
    srv = fault_server(faults.delay(150), tls=certs.server)
    with RawConn.open(srv.address, tls_ctx(certs), "localhost") as c:
        start = time.monotonic()
        assert c.request("GET", "/x").status == 200
        assert time.monotonic() - start >= 0.14


def test_fault_tls_handshake_stall(fault_server, certs):
    srv = fault_server(faults.handshake_stall(), tls=certs.server)
    with socket.create_connection(srv.address, timeout=0.3) as raw:
        with pytest.raises(socket.timeout):
            tls_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    srv.wait_for_connections(1)
    deadline = time.monotonic() + IO_TIMEOUT
    while not srv.received and time.monotonic() < deadline:
        time.sleep(0.01)
    assert srv.received[:1] == b"\x16"  # a TLS handshake record: the ClientHello
    assert srv.connections[0].tls_version is None and srv.requests == []


def test_fault_tls_handshake_close(fault_server, certs):
    srv = fault_server(faults.handshake_close(), tls=certs.server)
    with socket.create_connection(srv.address, timeout=IO_TIMEOUT) as raw:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            tls_ctx(certs).wrap_socket(raw, server_hostname="localhost")
    assert srv.requests == []


def test_fault_tls_partial_body(fault_server, certs):
    srv = fault_server(faults.partial_body(50, 5), tls=certs.server)
    with RawConn.open(srv.address, tls_ctx(certs), "localhost") as c:
        _get(c)
        data = c.wait_eof()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"\r\n\r\nxxxxx")


def test_fault_ipv6(fault_server):
    if not ipv6_available():
        pytest.skip("no IPv6 on this kernel")
    srv = fault_server(faults.respond(), host="::1")
    assert srv.url("/") == f"http://[::1]:{srv.port}/"
    with RawConn.open(srv.address) as c:
        assert c.request("GET", "/v6").status == 200
    assert srv.requests[0].target == "/v6"


# --- fault servers: bounds and clean shutdown ----------------------------------------------


def test_fault_max_connections_rejects_extra(fault_server):
    srv = fault_server(faults.never_read(), max_connections=2)
    socks = [socket.create_connection(srv.address, timeout=IO_TIMEOUT) for _ in range(3)]
    try:
        srv.wait_for_connections(2)
        assert RawConn(socks[2]).wait_eof() == b""
        assert srv.rejected == 1 and srv.connection_count == 2
    finally:
        for s in socks:
            s.close()


def test_fault_max_lifetime_ends_connection(fault_server):
    srv = fault_server(faults.never_read(), max_lifetime=0.3)
    with RawConn.open(srv.address) as c:
        assert c.wait_eof(timeout=IO_TIMEOUT) == b""
    srv.wait_idle()
    assert srv.connections[0].ended in ("fin", "lifetime")


def _fault_threads():
    return [t for t in threading.enumerate() if t.name.startswith("fault-")]


def test_fault_close_joins_threads_and_frees_port():
    before = _fault_threads()
    srv = FaultServer(faults.stall_after_request()).start()
    clients = [socket.create_connection(srv.address, timeout=IO_TIMEOUT) for _ in range(3)]
    try:
        for c in clients:
            c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        srv.wait_for_requests(3)
        assert len(_fault_threads()) == len(before) + 4
        start = time.monotonic()
        srv.close()
        assert time.monotonic() - start < 2.0
        assert _fault_threads() == before
        for c in clients:  # the server side is gone: EOF (or RST) for every client
            c.settimeout(IO_TIMEOUT)
            try:
                assert c.recv(1) == b""
            except ConnectionResetError:
                pass
        with pytest.raises(OSError):
            socket.create_connection(srv.address, timeout=1).close()
        assert all(c.ended == "stop" or c.ended == "fin" for c in srv.connections)
    finally:
        for c in clients:
            c.close()


def test_fault_behavior_bug_is_reported_at_close():
    def buggy(conn):
        conn.read_request()
        raise KeyError("script bug")

    srv = FaultServer(buggy).start()
    with RawConn.open(srv.address) as c:
        _get(c)
        assert c.wait_eof() == b""
    srv.wait_idle()
    with pytest.raises(RuntimeError, match="script bug"):
        srv.close()


def test_http_response_builder():
    assert http_response(200, b"ab", [("X", "1")]) == (
        b"HTTP/1.1 200 OK\r\nX: 1\r\nContent-Length: 2\r\n\r\nab")
    assert http_response(204, b"ignored", []) == b"HTTP/1.1 204 No Content\r\n\r\n"
    assert http_response(200, b"ab", [], head=True, keep_alive=False) == (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n")
