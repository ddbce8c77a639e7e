"""fastpool._engine._pure._tlsio.TLSTransport: TLS over memory BIOs on a plain socket.

The transport is the pure engine's alone (the C engine's TLS is fp_conn's), so these tests run
on it directly, against real peers on loopback: the embedded server (OpenSSL, TLS 1.2 and
1.3, tickets) and the scripted fault server (bad certificates, stalls, closes, unsolicited
bytes).
"""

from __future__ import annotations

import gc
import os
import socket
import ssl
import threading
import time

import pytest
from conftest import load_server
from support import faults
from support.certs import BAD_SERVER_CERTS

from fastpool._engine._pure._tlsio import TLSTransport, client_context
from fastpool._model.errors import ConnectTimeout, TLSError

SECOND = 1_000_000_000
REQ = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setblocking(False)
    return sock


def open_transport(port, ctx, host="localhost", session=None, deadline_s=5.0):
    t = TLSTransport(connect(port), ctx, host, session)
    try:
        t.handshake(time.monotonic_ns() + int(deadline_s * SECOND))
    except BaseException:
        t.close()
        raise
    t.setblocking(True)
    return t


def exchange(t: TLSTransport, request: bytes = REQ, limit: int = 100) -> bytes:
    """One request and its Content-Length response (bounded in reads)."""
    t.write(request)
    t.arm_write(2_000_000)
    while not t.flush():
        pass
    t.arm_read(2_000_000)
    data = b""
    for _ in range(limit):
        part = t.recv()
        if part == b"":
            raise EOFError(data)
        data += part or b""
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep:
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                return data
    raise AssertionError("no whole response within the read bound")


@pytest.fixture(params=["1.2", "1.3"])
def tls_version(request):
    return request.param


@pytest.fixture
def server(tls_version):
    srv = load_server()(tls=True, tls_min=tls_version, tls_max=tls_version).start()
    yield srv
    srv.stop()


def context_for(srv, version):
    return client_context(ca_pem=srv.ca_pem, min_version=version, max_version=version)


def test_handshake_and_exchanges(server, tls_version):
    t = open_transport(server.port, context_for(server, tls_version))
    try:
        assert t.version == f"TLSv{tls_version}"
        assert not t.resumed
        for _ in range(5):
            assert exchange(t).startswith(b"HTTP/1.1 200 ")
            assert t.wire_sent > 0
            assert not t.pending()
            assert not t.idle_stale()
    finally:
        t.close()
    assert server.stats()["requests"] == 5


def test_resumption_and_the_session_is_read_at_most_twice(server, tls_version):
    """The first connection yields a session (TLS 1.2: at the handshake; 1.3: once the
    tickets were read with the first response); later connections resume with it and read
    no session at all (each read leaks on CPython with gh-116810)."""
    ctx = context_for(server, tls_version)
    t = open_transport(server.port, ctx)
    session = t.take_session() if t.wants_session else None
    exchange(t)
    if session is None:
        assert t.wants_session  # TLS 1.3: post-handshake bytes were read
        session = t.take_session()
    assert session is not None and (session.has_ticket or session.id)
    assert not t.wants_session and t.take_session() is None
    t.close()
    for _ in range(3):
        t = open_transport(server.port, ctx, session=session)
        exchange(t)
        assert t.resumed
        assert not t.wants_session and t.take_session() is None
        assert not t.idle_stale()
        t.close()
    assert server.stats()["tls_resumed"] == 3


def test_tls13_tickets_while_idle_are_not_data():
    """The server's tickets arrive after the handshake; an idle check processes them and
    does not call the connection stale."""
    srv = load_server()(tls=True, tls_min="1.3", tls_max="1.3").start()
    try:
        t = open_transport(srv.port, context_for(srv, "1.3"))
        try:
            deadline = time.monotonic() + 2
            while not t.wants_session and time.monotonic() < deadline:
                assert not t.idle_stale()
                time.sleep(0.01)
            assert t.wants_session, "no post-handshake record (ticket) arrived"
            session = t.take_session()
            assert session is not None and session.has_ticket
            assert exchange(t).startswith(b"HTTP/1.1 200 ")
        finally:
            t.close()
    finally:
        srv.stop()


def test_unsolicited_bytes_and_eof_make_an_idle_connection_stale(fault_server, certs):
    """Bytes after a complete response are data nobody asked for: pending() says so before
    the fd is waited on, and the idle check calls the connection stale; so does EOF."""
    def late_extra(conn):
        req = conn.read_request()
        if req is not None:
            conn.send(faults.http_response(200, b"ok"))
            conn.sleep(0.1)
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nextra")
            conn.hold(2.0)
        conn.close()

    srv = fault_server(late_extra, tls=certs.server)
    t = open_transport(srv.port, client_context(ca_file=str(certs.ca)))
    try:
        assert exchange(t).endswith(b"\r\n\r\nok")
        deadline = time.monotonic() + 2
        while not t.idle_stale() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert t.idle_stale()
    finally:
        t.close()
    srv2 = fault_server(faults.stale_after(1), tls=certs.server)
    t = open_transport(srv2.port, client_context(ca_file=str(certs.ca)))
    try:
        exchange(t)
        deadline = time.monotonic() + 2
        while not t.idle_stale() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert t.idle_stale()
    finally:
        t.close()


@pytest.mark.parametrize("name", sorted(BAD_SERVER_CERTS))
def test_verify_failures_are_tls_errors(fault_server, certs, name):
    bad = BAD_SERVER_CERTS[name]
    srv = fault_server(faults.respond(), tls=getattr(certs, bad.attr))
    with pytest.raises(TLSError, match=bad.reason) as info:
        open_transport(srv.port, client_context(ca_file=str(certs.ca)))
    assert info.value.verify_code == bad.verify_code


def test_verify_off_accepts_a_bad_certificate(fault_server, certs):
    srv = fault_server(faults.respond(), tls=certs.self_signed)
    t = open_transport(srv.port, client_context(verify=False))
    try:
        assert exchange(t).startswith(b"HTTP/1.1 200 ")
    finally:
        t.close()


def test_handshake_stall_is_a_connect_timeout(fault_server, certs):
    srv = fault_server(faults.handshake_stall(hold=3.0), tls=certs.server)
    start = time.monotonic()
    with pytest.raises(ConnectTimeout):
        open_transport(srv.port, client_context(ca_file=str(certs.ca)), deadline_s=0.3)
    assert time.monotonic() - start < 2.0


def test_handshake_closed_is_a_tls_error(fault_server, certs):
    srv = fault_server(faults.handshake_close(), tls=certs.server)
    with pytest.raises(TLSError):
        open_transport(srv.port, client_context(ca_file=str(certs.ca)))


def test_alpn_other_than_http11_is_refused(certs):
    """A server that selects h2 is refused at the handshake."""
    sctx = faults.server_tls_context(certs.server)
    sctx.set_alpn_protocols(["h2"])
    lsock = socket.create_server(("127.0.0.1", 0))
    port = lsock.getsockname()[1]

    def serve():
        c, _ = lsock.accept()
        try:
            with sctx.wrap_socket(c, server_side=True):
                time.sleep(0.5)
        except (OSError, ssl.SSLError):
            pass

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    ctx = client_context(ca_file=str(certs.ca))
    ctx.set_alpn_protocols(["h2", "http/1.1"])  # offer h2 so that the server may pick it
    try:
        with pytest.raises(TLSError, match="ALPN"):
            open_transport(port, ctx)
    finally:
        th.join(5)
        lsock.close()


def test_read_timeout_is_blocking_io_error_and_the_deadline_holds(fault_server, certs):
    """A kernel receive timeout surfaces as BlockingIOError (the caller's READ_TIMEOUT), in
    time; the request's ciphertext had reached the socket (wire_sent: MaybeSent)."""
    srv = fault_server(faults.stall_after_request(hold=3.0), tls=certs.server)
    t = open_transport(srv.port, client_context(ca_file=str(certs.ca)))
    try:
        t.write(REQ)
        assert t.flush()
        assert t.wire_sent > len(REQ)  # records: header + tag around the plaintext
        t.arm_read(300_000)
        start = time.monotonic()
        with pytest.raises(BlockingIOError):
            for _ in range(10):
                t.recv()
        assert time.monotonic() - start < 2.0
    finally:
        t.close()


def test_write_timeout_to_a_reader_that_never_reads(fault_server, certs):
    """SO_SNDTIMEO bounds each send; a partial send is counted in wire_sent."""
    srv = fault_server(faults.never_read(hold=3.0), tls=certs.server)
    t = open_transport(srv.port, client_context(ca_file=str(certs.ca)))
    try:
        t.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        t.write(b"POST / HTTP/1.1\r\nContent-Length: 8388608\r\n\r\n" + b"x" * 8388608)
        t.arm_write(200_000)
        start = time.monotonic()
        with pytest.raises(BlockingIOError):
            for _ in range(1000):
                if t.flush():
                    break
        assert time.monotonic() - start < 3.0
        assert 0 < t.wire_sent < 8388608
    finally:
        t.close()


def test_reset_is_an_os_error_not_end_of_input(fault_server, certs):
    """A reset while waiting for the response is a read error (as fp_conn reports it), not
    the b"" that SSLSocket.recv() turns it into."""
    srv = fault_server(faults.reset_after_request(), tls=certs.server)
    t = open_transport(srv.port, client_context(ca_file=str(certs.ca)))
    try:
        t.write(REQ)
        assert t.flush()
        t.arm_read(2_000_000)
        with pytest.raises(OSError):
            for _ in range(10):
                if t.recv() == b"":
                    pytest.fail("a reset read as end of input")
    finally:
        t.close()


def test_close_sends_no_close_notify(certs):
    """close() writes nothing: the server sees an EOF without close_notify (SSLEOFError with
    suppress_ragged_eofs=False; a close_notify would read as b"")."""
    sctx = faults.server_tls_context(certs.server)
    lsock = socket.create_server(("127.0.0.1", 0))
    seen = []

    def serve():
        c, _ = lsock.accept()
        c.settimeout(5)
        try:
            with sctx.wrap_socket(c, server_side=True, suppress_ragged_eofs=False) as s:
                s.recv(65536)
                s.sendall(faults.http_response(200, b"ok"))
                try:
                    seen.append(s.recv(65536))
                except ssl.SSLEOFError:
                    seen.append("eof without close_notify")
        except (OSError, ssl.SSLError) as exc:
            seen.append(exc)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        t = open_transport(lsock.getsockname()[1], client_context(ca_file=str(certs.ca)))
        exchange(t)
        t.close()
        assert t.sock.fileno() == -1
        th.join(5)
        assert seen == ["eof without close_notify"]
    finally:
        lsock.close()


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_reconnects_do_not_grow_resident_memory():
    """Issue 10 defect 10: 600 resumed reconnects with an exchange each. SSLSocket with a
    session read per connection grew ~13 KB each (~8 MB here); the bound is 3 MB."""

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    srv = load_server()(tls=True).start()
    try:
        ctx = context_for(srv, None)
        session = None
        marks = []
        for i in range(700):
            if i in (100, 699):
                gc.collect()
                marks.append(rss())
            t = open_transport(srv.port, ctx, session=session)
            exchange(t)
            got = t.take_session()
            session = got or session
            t.close()
        assert srv.stats()["tls_resumed"] >= 690
        assert marks[1] - marks[0] < 3 * 1024 * 1024, marks
    finally:
        srv.stop()
