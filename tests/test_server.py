"""The embedded server (csrc/fp_server.c through fastpool._bench._server.EmbeddedServer).

Clients are the standard library's (http.client, socket, ssl): the server is what the fastpool
client will be tested against, so it is checked against an independent client first. Every
socket has a timeout and every loop a bound; everything stays on loopback.
"""

from __future__ import annotations

import datetime
import http.client
import os
import socket
import ssl
import threading
import time

import pytest
from conftest import load_server

TIMEOUT = 5.0  # per socket operation; a hang fails the test instead of stalling the suite


@pytest.fixture(scope="module")
def Server():
    return load_server()


# ---- helpers -----------------------------------------------------------------------------


class Reader:
    """Reads HTTP/1.1 responses off a socket without reading past them (pipelining)."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self.buf += data

    def _take_until(self, sep):
        while sep not in self.buf:
            self._fill()
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def response(self, head_request=False):
        """-> (status, {lowercase name: value}, body, raw head)"""
        head = self._take_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower().decode()] = value.strip().decode()
        if head_request or status in (204, 304):
            return status, headers, b"", head
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            for _ in range(1_000_000):
                size = int(self._take_until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    assert self._take(2) == b"\r\n"
                    return status, headers, body, head
                body += self._take(size)
                assert self._take(2) == b"\r\n"
            raise AssertionError("too many chunks")
        return status, headers, self._take(int(headers["content-length"])), head

    def at_eof(self):
        """True when the server closed (orderly FIN) with nothing else pending."""
        if self.buf:
            return False
        return self.sock.recv(1) == b""


def connect(server, timeout=TIMEOUT):
    family = socket.AF_INET6 if server.host == "::1" else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect((server.host, server.port))
    return sock


def get(path="/", host="t", extra=b""):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n".encode() + extra + b"\r\n"


def wait_for(predicate, timeout=TIMEOUT):
    """Polls a condition the server reaches asynchronously (e.g. noticing a close)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def client_ctx(server, *, version=None):
    ctx = ssl.create_default_context(cadata=server.ca_pem.decode())
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    return ctx


def tls_connect(server, ctx, hostname="localhost", session=None):
    raw = connect(server)
    return ctx.wrap_socket(raw, server_hostname=hostname, session=session)


def open_fds():
    return len(os.listdir("/proc/self/fd"))



# ---- plain HTTP --------------------------------------------------------------------------


def test_keep_alive_many_requests_one_connection(Server):
    with Server() as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        bodies = set()
        for _ in range(200):
            conn.request("GET", "/api/v3/ticker?symbol=BTCUSDT")
            resp = conn.getresponse()
            assert resp.status == 200
            assert resp.getheader("Content-Type") == "application/json"
            bodies.add(resp.read())
        conn.close()
        assert len(bodies) == 1
        body = bodies.pop()
        assert len(body) == 137
        import json

        json.loads(body)  # the filler is valid JSON
        st = srv.stats()
        assert st["accepted"] == 1
        assert st["requests"] == 200
        assert st["bad_requests"] == 0
        assert wait_for(lambda: srv.stats()["open"] == 0)


def test_url_port_and_ephemeral(Server):
    srv = Server()
    with pytest.raises(RuntimeError):
        srv.url
    with srv:
        assert 0 < srv.port < 65536
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert srv.ca_pem is None
        assert srv.running
    assert not srv.running


def test_fixed_port(Server):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    with Server(port=port) as srv:
        assert srv.port == port
        sock = connect(srv)
        sock.sendall(get())
        assert Reader(sock).response()[0] == 200
        sock.close()


def test_ipv6_loopback(Server):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine: {exc}")
    with Server(host="::1") as srv:
        assert srv.url == f"http://[::1]:{srv.port}"
        sock = connect(srv)
        sock.sendall(get())
        assert Reader(sock).response()[0] == 200
        sock.close()


def test_pipelined_requests_answered_in_order(Server):
    with Server(echo=True) as srv:
        sock = connect(srv)
        reqs = [get(f"/req/{i}") for i in range(20)]
        reqs[7] = b"POST /req/7 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"
        sock.sendall(b"".join(reqs))  # one write: the server sees them in one read
        reader = Reader(sock)
        for i in range(20):
            status, _, body, _ = reader.response()
            assert status == 200
            assert body == reqs[i]
        sock.close()
        assert srv.stats()["requests"] == 20
        assert srv.stats()["accepted"] == 1


def test_pipelined_fixed_responses(Server):
    with Server(body=b'{"ok":true}') as srv:
        sock = connect(srv)
        sock.sendall(get() * 50)
        reader = Reader(sock)
        for _ in range(50):
            assert reader.response()[2] == b'{"ok":true}'
        sock.close()


def test_request_split_byte_by_byte(Server):
    with Server(echo=True) as srv:
        sock = connect(srv)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        req = b"PUT /split HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        for i in range(len(req)):
            sock.send(req[i:i + 1])
            time.sleep(0.001)
        assert Reader(sock).response()[2] == req
        sock.close()


def test_requests_split_at_every_point(Server):
    reqs = [b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody",
            b"GET /b HTTP/1.1\nHost: t\n\n",  # bare LF line endings (RFC 9112 §2.2)
            get("/c")]
    data = b"".join(reqs)
    for echo in (True, False):
        with Server(echo=echo) as srv:
            sock = connect(srv)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            reader = Reader(sock)
            for i in range(1, len(data)):
                sock.sendall(data[:i])
                time.sleep(0.001)  # two segments, so the server sees two reads
                sock.sendall(data[i:])
                for req in reqs:
                    status, _, body, _ = reader.response()
                    assert status == 200
                    if echo:
                        assert body == req, i
            sock.close()
            assert srv.stats()["requests"] == 3 * (len(data) - 1)


def test_chunked_response_parses_with_http_client(Server):
    with Server() as plain:
        conn = http.client.HTTPConnection("127.0.0.1", plain.port, timeout=TIMEOUT)
        conn.request("GET", "/")
        expected = conn.getresponse().read()
        conn.close()
    for chunk_size in (0, 1, 10, 136, 137, 1000):
        with Server(chunked=True, chunk_size=chunk_size) as srv:
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
            for _ in range(3):
                conn.request("GET", "/")
                resp = conn.getresponse()
                assert resp.getheader("Transfer-Encoding") == "chunked"
                assert resp.getheader("Content-Length") is None
                assert resp.read() == expected
            conn.close()
            if chunk_size == 10:
                # and the framing itself: 13 chunks of 10 bytes, one of 7, then the last chunk
                sock = connect(srv)
                sock.sendall(get())
                raw = b""
                while not raw.endswith(b"0\r\n\r\n"):
                    data = sock.recv(65536)
                    assert data
                    raw += data
                body = raw.split(b"\r\n\r\n", 1)[1]
                assert body.count(b"\r\na\r\n") == 12 and body.startswith(b"a\r\n")
                assert b"\r\n7\r\n" in body
                sock.close()


def test_chunked_explicit_body_and_empty_body(Server):
    payload = bytes(range(256)) * 40
    with Server(body=payload, chunked=True, chunk_size=333) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        conn.request("GET", "/")
        assert conn.getresponse().read() == payload
        conn.close()
    with Server(body=b"", chunked=True) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        conn.request("GET", "/")
        assert conn.getresponse().read() == b""
        conn.close()


def test_head_has_no_body_and_keeps_framing(Server):
    for kwargs in ({}, {"chunked": True, "chunk_size": 16}, {"echo": True}):
        with Server(**kwargs) as srv:
            sock = connect(srv)
            reader = Reader(sock)
            sock.sendall(b"HEAD / HTTP/1.1\r\nHost: t\r\n\r\n" + get("/after"))
            status, headers, body, _ = reader.response(head_request=True)
            assert status == 200 and body == b""
            if kwargs.get("chunked"):
                assert headers["transfer-encoding"] == "chunked"
            elif not kwargs.get("echo"):
                assert headers["content-length"] == "137"
            # the next response starts right after the head: no body bytes were sent
            status, _, body, _ = reader.response()
            assert status == 200 and len(body) > 0
            if kwargs.get("echo"):
                assert body == get("/after")
            sock.close()
    with Server() as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        conn.request("HEAD", "/")
        resp = conn.getresponse()
        assert resp.read() == b"" and resp.getheader("Content-Length") == "137"
        conn.request("GET", "/")
        assert len(conn.getresponse().read()) == 137
        conn.close()


def test_echo_returns_exact_request_bytes(Server):
    with Server(echo=True) as srv:
        sock = connect(srv)
        req = (b"POST /api/v3/order?symbol=BTCUSDT HTTP/1.1\r\nHost: api.test\r\n"
               b"X-MBX-APIKEY: abc\r\nContent-Type: application/x-www-form-urlencoded\r\n"
               b"Content-Length: 22\r\n\r\nside=BUY&quantity=0.01")
        sock.sendall(req)
        status, headers, body, _ = Reader(sock).response()
        assert status == 200
        assert body == req
        assert headers["content-type"] == "application/octet-stream"
        sock.close()
        # http.client's own request comes back too, so a client can match responses to requests
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        big = os.urandom(300_000)
        conn.request("POST", "/big", body=big)
        echoed = conn.getresponse().read()
        assert echoed.startswith(b"POST /big HTTP/1.1\r\n") and echoed.endswith(big)
        conn.close()


def test_request_body_is_discarded_without_echo(Server):
    with Server() as srv:
        sock = connect(srv)
        reader = Reader(sock)
        body = b"x" * 2_000_000  # larger than any buffer the server keeps
        sock.sendall(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 65536):
            sock.sendall(body[i:i + 65536])
        sock.sendall(get())
        assert len(reader.response()[2]) == 137
        assert len(reader.response()[2]) == 137  # the body did not leak into the next request
        sock.close()
        assert srv.stats()["bytes_in"] >= len(body)


def test_large_response_body_is_intact(Server):
    payload = os.urandom(4 << 20)
    with Server(body=payload) as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        for _ in range(2):
            conn.request("GET", "/")
            assert conn.getresponse().read() == payload
        conn.close()
        assert wait_for(lambda: srv.stats()["bytes_out"] >= 2 * len(payload))


def test_status_and_extra_headers(Server):
    headers = [("X-Test", "1"), (b"Retry-After", b"2"), ("Content-Type", "text/plain")]
    with Server(status=429, headers=headers, body="slow down") as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 429 and resp.reason == "Too Many Requests"
        assert resp.getheader("X-Test") == "1" and resp.getheader("Retry-After") == "2"
        assert resp.getheader("Content-Type") == "text/plain"
        assert resp.read() == b"slow down"
        conn.close()
    with Server(status=204) as srv:
        sock = connect(srv)
        reader = Reader(sock)
        sock.sendall(get() + get())
        for _ in range(2):
            status, headers, _, head = reader.response()
            assert status == 204
            assert b"Content-Length" not in head and b"Transfer-Encoding" not in head
        sock.close()


def test_client_connection_close(Server):
    with Server() as srv:
        sock = connect(srv)
        reader = Reader(sock)
        sock.sendall(get(extra=b"Connection: close\r\n") + get("/never-answered"))
        status, headers, _, _ = reader.response()
        assert status == 200 and headers["connection"] == "close"
        assert reader.at_eof()
        sock.close()
        assert srv.stats()["requests"] == 1


def test_http10_clients(Server):
    for kwargs in ({}, {"chunked": True, "chunk_size": 8}):
        with Server(**kwargs) as srv:
            sock = connect(srv)
            reader = Reader(sock)
            sock.sendall(b"GET / HTTP/1.0\r\n\r\n")
            status, headers, body, _ = reader.response()
            # never chunked to HTTP/1.0 (RFC 9112 §6.1): Content-Length instead
            assert headers["content-length"] == "137" and len(body) == 137
            assert headers["connection"] == "close"
            assert reader.at_eof()
            sock.close()

            sock = connect(srv)
            reader = Reader(sock)
            for _ in range(3):
                sock.sendall(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                status, headers, body, _ = reader.response()
                assert headers["connection"] == "keep-alive" and len(body) == 137
            sock.close()
    with Server() as srv:  # http.client in HTTP/1.0 mode
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        conn._http_vsn, conn._http_vsn_str = 10, "HTTP/1.0"
        conn.request("GET", "/")
        assert len(conn.getresponse().read()) == 137
        conn.close()


@pytest.mark.parametrize("request_bytes, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                                       # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),                 # two Hosts
    (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 400),
    (b"GET  / HTTP/1.1\r\nHost: t\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost : t\r\n\r\n", 400),                           # space before colon
    (b"GET / HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n", 400),                 # obs-fold
    (b"GET / HTTP/1.1\r\nHost: t\r\nX: a\x01b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
    (b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 400),
])
def test_malformed_request_gets_error_and_close(Server, request_bytes, status):
    with Server() as srv:
        sock = connect(srv)
        reader = Reader(sock)
        sock.sendall(get() + request_bytes + get())
        assert reader.response()[0] == 200
        got, headers, _, _ = reader.response()
        assert got == status and headers["connection"] == "close"
        assert reader.at_eof()
        sock.close()
        st = srv.stats()
        assert st["requests"] == 1 and st["bad_requests"] == 1


def test_oversized_head_gets_400(Server):
    with Server() as srv:
        sock = connect(srv)
        reader = Reader(sock)
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100_000)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may have answered and closed before taking it all
        assert reader.response()[0] == 400
        sock.close()


def test_empty_lines_before_request_are_ignored(Server):
    with Server() as srv:
        sock = connect(srv)
        sock.sendall(b"\r\n\r\n" + get())
        assert Reader(sock).response()[0] == 200
        sock.close()


# ---- close_after, idle timeout, delay ----------------------------------------------------


def test_close_after_announced(Server):
    with Server(close_after=3) as srv:
        sock = connect(srv)
        reader = Reader(sock)
        # ten pipelined requests: exactly three answers, the third says close, then a clean FIN
        # (the server drains the rest instead of resetting the connection)
        sock.sendall(get() * 10)
        for i in range(3):
            status, headers, body, _ = reader.response()
            assert len(body) == 137
            assert headers.get("connection") == ("close" if i == 2 else None)
        assert reader.at_eof()
        sock.close()
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=TIMEOUT)
        for i in range(6):  # http.client reconnects after an announced close
            conn.request("GET", "/")
            resp = conn.getresponse()
            resp.read()
            assert resp.will_close == (i % 3 == 2)
        conn.close()
        assert srv.stats()["accepted"] == 3


def test_final_response_survives_unread_pipelined_requests(Server):
    # The last response (4 MiB: much of it still in the kernel's send buffer when the server
    # is done writing) is followed by ~100 KB of requests the server will never read. A bare
    # close() with unread input sends RST and drops the unsent tail (RFC 9112 §9.6); the
    # server must half-close and drain instead.
    payload = os.urandom(4 << 20)
    with Server(body=payload, close_after=1) as srv:
        sock = connect(srv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.sendall(get() * 3500)
        status, headers, body, _ = Reader(sock).response()
        assert headers["connection"] == "close"
        assert body == payload
        sock.close()


def test_close_after_silent(Server):
    with Server(close_after=2, close_silently=True) as srv:
        sock = connect(srv)
        reader = Reader(sock)
        for _ in range(2):
            sock.sendall(get())
            status, headers, _, _ = reader.response()
            assert status == 200 and "connection" not in headers
        assert reader.at_eof()  # closed without warning: the race a pooled client must survive
        sock.close()
        assert wait_for(lambda: srv.stats()["open"] == 0)


def test_idle_timeout_closes_idle_connection(Server):
    with Server(idle_timeout_ms=100) as srv:
        sock = connect(srv)
        reader = Reader(sock)
        sock.sendall(get())
        assert reader.response()[0] == 200
        start = time.monotonic()
        assert reader.at_eof()  # the server closed it; bounded by the socket timeout
        assert time.monotonic() - start >= 0.05
        sock.close()
        assert wait_for(lambda: srv.stats()["open"] == 0)


def test_idle_timeout_counts_from_last_activity(Server):
    with Server(idle_timeout_ms=400) as srv:
        sock = connect(srv)
        reader = Reader(sock)
        for _ in range(10):  # 1 s of traffic in all, never 400 ms idle
            sock.sendall(get())
            assert reader.response()[0] == 200
            time.sleep(0.1)
        assert srv.stats()["accepted"] == 1
        assert reader.at_eof()
        sock.close()


def test_idle_timeout_tls(Server):
    with Server(tls=True, idle_timeout_ms=100) as srv:
        sock = tls_connect(srv, client_ctx(srv))
        sock.sendall(get())
        reader = Reader(sock)
        assert reader.response()[0] == 200
        assert reader.at_eof()
        sock.close()


def test_delay_does_not_block_other_connections(Server):
    delay = 0.4
    n = 5
    with Server(delay_ms=int(delay * 1000)) as srv:
        socks = [connect(srv) for _ in range(n)]
        results = [None] * n

        def one(i):
            start = time.monotonic()
            socks[i].sendall(get())
            status = Reader(socks[i]).response()[0]
            results[i] = (status, time.monotonic() - start)

        start = time.monotonic()
        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT)
        elapsed = time.monotonic() - start
        for s in socks:
            s.close()
        assert all(r is not None and r[0] == 200 for r in results), results
        assert all(r[1] >= delay * 0.95 for r in results), results
        # served one after another this would take n * delay
        assert elapsed < n * delay * 0.8, elapsed


def test_delay_applies_to_each_pipelined_request(Server):
    with Server(delay_ms=100, echo=True) as srv:
        sock = connect(srv)
        reader = Reader(sock)
        start = time.monotonic()
        sock.sendall(get("/1") + get("/2"))
        assert reader.response()[2] == get("/1")
        assert reader.response()[2] == get("/2")
        assert time.monotonic() - start >= 0.19
        sock.close()


# ---- TLS -----------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_tls_versions_verify_against_ca(Server, version, tmp_path):
    name = "1.2" if version == ssl.TLSVersion.TLSv1_2 else "1.3"
    with Server(tls=True, tls_min=name, tls_max=name) as srv:
        assert srv.url == f"https://127.0.0.1:{srv.port}"
        assert srv.ca_pem.startswith(b"-----BEGIN CERTIFICATE-----")
        cafile = srv.write_ca(tmp_path / "ca.pem")
        ctx = ssl.create_default_context(cafile=str(cafile))
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        for hostname in ("localhost", "127.0.0.1"):
            conn = http.client.HTTPSConnection(hostname, srv.port, context=ctx, timeout=TIMEOUT)
            for _ in range(5):
                conn.request("GET", "/")
                assert len(conn.getresponse().read()) == 137
            assert conn.sock.version() == ("TLSv1.2" if name == "1.2" else "TLSv1.3")
            conn.close()
        st = srv.stats()
        assert st["tls_handshakes"] == 2 and st["requests"] == 10
        # a client that insists on the other version is refused
        other = ssl.TLSVersion.TLSv1_3 if name == "1.2" else ssl.TLSVersion.TLSv1_2
        with pytest.raises(ssl.SSLError):
            tls_connect(srv, client_ctx(srv, version=other)).close()


def test_tls_wrong_hostname_fails_verification(Server):
    with Server(tls=True) as srv:
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_connect(srv, client_ctx(srv), hostname="example.com")


def test_tls_ipv6_san(Server):
    try:
        probe = socket.socket(socket.AF_INET6)
        probe.bind(("::1", 0))
        probe.close()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback on this machine: {exc}")
    with Server(host="::1", tls=True) as srv:
        assert srv.url == f"https://[::1]:{srv.port}"
        sock = tls_connect(srv, client_ctx(srv), hostname="::1")
        sock.sendall(get())
        assert Reader(sock).response()[0] == 200
        sock.close()


def test_tls_pipelined_echo_and_large_body(Server):
    with Server(tls=True, echo=True) as srv:
        sock = tls_connect(srv, client_ctx(srv))
        reqs = [get(f"/{i}") for i in range(30)]
        sock.sendall(b"".join(reqs))
        reader = Reader(sock)
        for req in reqs:
            assert reader.response()[2] == req
        big = b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n" + b"z" * 1_000_000
        sock.sendall(big)
        assert reader.response()[2] == big
        sock.close()
    payload = os.urandom(3 << 20)
    with Server(tls=True, body=payload, chunked=True, chunk_size=65536) as srv:
        conn = http.client.HTTPSConnection("localhost", srv.port, context=client_ctx(srv),
                                           timeout=TIMEOUT)
        for _ in range(2):
            conn.request("GET", "/")
            assert conn.getresponse().read() == payload
        conn.close()


@pytest.mark.parametrize("version, tickets", [
    (ssl.TLSVersion.TLSv1_2, True),
    (ssl.TLSVersion.TLSv1_2, False),  # session id: the server-side session cache
    (ssl.TLSVersion.TLSv1_3, True),
])
def test_tls_session_resumption(Server, version, tickets):
    with Server(tls=True) as srv:
        ctx = client_ctx(srv, version=version)
        if not tickets:
            ctx.options |= ssl.OP_NO_TICKET
        first = tls_connect(srv, ctx)
        first.sendall(get())
        assert Reader(first).response()[0] == 200  # TLS 1.3 tickets arrive after the handshake
        session = first.session
        assert session is not None
        assert not first.session_reused
        first.close()

        second = tls_connect(srv, ctx, session=session)
        second.sendall(get())
        assert Reader(second).response()[0] == 200
        assert second.session_reused
        second.close()
        st = srv.stats()
        assert st["tls_handshakes"] == 2 and st["tls_resumed"] == 1


def test_tls_alpn(Server):
    with Server(tls=True) as srv:
        ctx = client_ctx(srv)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        sock = tls_connect(srv, ctx)
        assert sock.selected_alpn_protocol() == "http/1.1"
        sock.close()
        ctx = client_ctx(srv)
        ctx.set_alpn_protocols(["h2"])
        with pytest.raises(ssl.SSLError):
            tls_connect(srv, ctx).close()


def _make_ca_and_client_cert(common_name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{common_name} CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, key_cert_sign=True, crl_sign=True,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return ca.public_bytes(pem), cert.public_bytes(pem) + key_pem


def _mtls_request(srv, version, chain_file):
    ctx = client_ctx(srv, version=version)
    if chain_file is not None:
        ctx.load_cert_chain(chain_file)
    sock = tls_connect(srv, ctx)
    try:
        # with TLS 1.3 the client's handshake ends before the server has checked its
        # certificate: a refusal shows at the first read
        sock.sendall(get())
        return Reader(sock).response()[0]
    finally:
        sock.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_mtls_required_and_refused(Server, version, tmp_path):
    ca_pem, chain = _make_ca_and_client_cert("trader-1")
    _, other_chain = _make_ca_and_client_cert("intruder")
    (tmp_path / "good.pem").write_bytes(chain)
    (tmp_path / "bad.pem").write_bytes(other_chain)
    with Server(tls=True, client_ca_pem=ca_pem) as srv:
        assert _mtls_request(srv, version, str(tmp_path / "good.pem")) == 200
        for chain_file in (None, str(tmp_path / "bad.pem")):
            with pytest.raises((ssl.SSLError, ConnectionResetError, EOFError,
                                BrokenPipeError)):
                _mtls_request(srv, version, chain_file)
        st = srv.stats()
        assert st["tls_handshakes"] == 1 and st["requests"] == 1


def test_client_ca_pem_must_hold_a_certificate(Server):
    junk = b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n"
    with pytest.raises(ValueError):
        Server(tls=True, client_ca_pem=junk).start()


# ---- lifecycle -----------------------------------------------------------------------------


_GIL_CLIENT = r"""
import socket, sys, time
port, go_at = int(sys.argv[1]), float(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port), timeout=5)
req = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
def one():
    s.sendall(req)
    data = b""
    while not data.endswith(b'"}'):
        chunk = s.recv(65536)
        assert chunk
        data += chunk
one()
print("ready", flush=True)
time.sleep(max(0.0, go_at - time.monotonic()))
start = time.monotonic()
for _ in range(200):
    one()
print(start, time.monotonic(), flush=True)
"""


def test_server_thread_never_needs_the_gil(Server):
    import subprocess
    import sys

    # How long a single C-level call that never releases the GIL takes here: sum() over a
    # range runs in C without reaching the eval loop, so no other thread of this process can
    # take the GIL until it returns.
    t = time.monotonic()
    sum(range(2_000_000))
    per_item = (time.monotonic() - t) / 2_000_000
    hold = int(3.0 / max(per_item, 1e-9))  # about 3 s of GIL held
    with Server() as srv:
        go_at = time.monotonic() + 1.0
        proc = subprocess.Popen([sys.executable, "-c", _GIL_CLIENT, str(srv.port), str(go_at)],
                                stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout.readline().strip() == "ready"
            time.sleep(max(0.0, go_at - 0.2 - time.monotonic()))
            held_from = time.monotonic()
            sum(range(hold))  # the GIL is held throughout this call
            held_to = time.monotonic()
            out, _ = proc.communicate(timeout=30)
        finally:
            proc.kill()
            proc.wait()
        start, end = map(float, out.split())
        # CLOCK_MONOTONIC is system-wide, so the timestamps compare across processes
        assert held_from < start and end < held_to, (held_from, start, end, held_to)
        assert srv.stats()["requests"] == 201



def test_start_stop_many_times_without_leaking_fds(Server):
    before = open_fds()
    for i in range(50):
        srv = Server(tls=(i % 5 == 0), idle_timeout_ms=(1000 if i % 2 else 0))
        srv.start()
        try:
            if i % 5 == 0:
                sock = tls_connect(srv, client_ctx(srv))
            else:
                sock = connect(srv)
            sock.sendall(get())
            assert Reader(sock).response()[0] == 200
            # the connection is still open when the server stops: stop closes it
            srv.stop()
            assert Reader(sock).at_eof()
            sock.close()
        finally:
            srv.stop()
    assert open_fds() == before


def test_restart_is_a_fresh_server(Server):
    srv = Server(tls=True)
    with srv:
        pem1 = srv.ca_pem
        sock = tls_connect(srv, client_ctx(srv))
        sock.sendall(get())
        Reader(sock).response()
        sock.close()
    final = srv.stats()
    assert final["requests"] == 1  # readable after stop
    with srv:
        assert srv.ca_pem != pem1
        assert srv.stats()["requests"] == 0
    srv.stop()  # stopping twice is harmless


def test_stop_with_many_busy_connections(Server):
    before = open_fds()
    srv = Server(delay_ms=10_000)  # every request is pending when stop comes
    srv.start()
    socks = [connect(srv) for _ in range(20)]
    for s in socks:
        s.sendall(get())
    assert wait_for(lambda: srv.stats()["accepted"] == 20)
    srv.stop()
    for s in socks:
        assert Reader(s).at_eof()
        s.close()
    assert srv.stats()["open"] == 0
    assert open_fds() == before


def test_port_in_use_raises_oserror(Server):
    with Server() as srv:
        with pytest.raises(OSError):
            Server(port=srv.port).start()


@pytest.mark.parametrize("kwargs", [
    {"host": "0.0.0.0"},
    {"host": "localhost"},
    {"host": "10.0.0.1"},
    {"port": -1},
    {"port": 65536},
    {"port": "80"},
    {"tls": 1},
    {"status": 99},
    {"status": 600},
    {"status": 101},
    {"body_size": -1},
    {"body_size": (64 << 20) + 1},
    {"chunk_size": 10},
    {"chunked": True, "chunk_size": -1},
    {"close_after": -1},
    {"close_silently": True},
    {"idle_timeout_ms": -5},
    {"delay_ms": 10**9},
    {"tls_min": "1.2"},
    {"tls": True, "tls_min": "1.1"},
    {"tls": True, "tls_max": "1.0"},
    {"tls": True, "tls_min": "1.3", "tls_max": "1.2"},
    {"tls": True, "tls_min": 3},
    {"client_ca_pem": b"-----BEGIN CERTIFICATE-----"},
    {"tls": True, "client_ca_pem": b"no pem here"},
    {"headers": [("Bad Name", "v")]},
    {"headers": [("X", "a\r\nInjected: 1")]},
    {"headers": [("Content-Length", "5")]},
    {"headers": [("connection", "close")]},
    {"headers": [("Transfer-Encoding", "chunked")]},
    {"headers": [("X",)]},
    {"headers": 5},
    {"body": 5},
    {"echo": True, "body": b"x"},
    {"status": 204, "body": b"x"},
    {"status": 304, "chunked": True},
    {"status": 204, "echo": True},
])
def test_bad_arguments_raise_value_error(Server, kwargs):
    with pytest.raises(ValueError):
        Server(**kwargs)


def test_positional_arguments_are_refused(Server):
    with pytest.raises(TypeError):
        Server("127.0.0.1")


def test_stats_counts_bytes(Server):
    with Server(body=b"0123456789") as srv:
        sock = connect(srv)
        req = get()
        sock.sendall(req)
        _, _, _, head = Reader(sock).response()
        sock.close()
        # bytes_out moves once send() has returned, which may be after the client has read
        assert wait_for(lambda: srv.stats()["bytes_out"] == len(head) + 10)
        st = srv.stats()
        assert st["bytes_in"] == len(req)
        assert st["bytes_out"] == len(head) + 10
        assert set(st) == {"accepted", "open", "requests", "bad_requests", "tls_handshakes",
                           "tls_resumed", "bytes_in", "bytes_out"}
