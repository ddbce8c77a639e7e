"""The error model through the Pool: every failure is typed NotSent or MaybeSent, invalid
input never reaches the wire, broken connections are discarded, and a POST is never sent
twice by the pool, whatever breaks and whatever ``retries`` says."""

from __future__ import annotations

import socket
import threading

import pytest
from pool_helpers import answer_then_close, run_threads, tls_kwargs, wait_until  # noqa: F401
from support.faults import (
    MALFORMED_RESPONSES,
    Behavior,
    close_after_request,
    delay,
    garbage,
    malformed,
    never_read,
    partial_body,
    partial_head,
    reset_after_request,
    respond,
    stale_after,
    stall_after_request,
)
from support.ports import free_port

import fastpool

TLS_IDS = ["plain", "tls"]


def server_for(fault_server, certs, behavior, tls: bool):
    return fault_server(behavior, tls=certs.server if tls else None)


def assert_typed(exc: BaseException) -> None:
    """Exactly one of the two answers a trading engine needs."""
    assert isinstance(exc, fastpool.FastpoolError)
    assert isinstance(exc, fastpool.NotSentError) != isinstance(exc, fastpool.MaybeSentError)


# --- construction: URLs, refused, unresolvable ---------------------------------------------


@pytest.mark.parametrize("url", [
    "ftp://127.0.0.1:{port}/",
    "ws://127.0.0.1:{port}/",
    "127.0.0.1:{port}",
    "//127.0.0.1:{port}/",
    "http://",
    "http:///path",
    "http://:{port}/",
    "http://127.0.0.1:99999/",
    "http://127.0.0.1:0/",
    "http://127.0.0.1:-1/",
    "http://127.0.0.1:port/",
    "http://127.0.0.1:{port}/?q=1",
    "http://127.0.0.1:{port}/#frag",
    "http://user:secret@127.0.0.1:{port}/",
    "http://user@127.0.0.1:{port}/",
    "http://bad host:{port}/",
    "",
])
def test_invalid_base_url(fault_server, make_pool, url):
    server = fault_server(respond())
    with pytest.raises(fastpool.InvalidURL) as info:
        make_pool(url.format(port=server.port))
    exc = info.value
    assert isinstance(exc, fastpool.InvalidRequestError) and isinstance(exc, fastpool.NotSentError)
    assert isinstance(exc, ValueError) and exc.code == "url_invalid"
    assert server.connection_count == 0 and server.received == b""


def test_base_url_must_be_a_str(make_pool):
    with pytest.raises(fastpool.InvalidURL):
        make_pool(b"http://127.0.0.1/")


def test_credentials_are_not_echoed_in_the_error(make_pool):
    with pytest.raises(fastpool.InvalidURL) as info:
        make_pool("http://user:hunter2@127.0.0.1:1/")
    assert "credentials" in str(info.value)
    assert "hunter2" not in str(info.value) and "user" not in str(info.value)


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_refused_port(make_pool, certs, tls):
    port = free_port()
    url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
    with pytest.raises(fastpool.ConnectError) as info:
        make_pool(url, connections=2, **tls_kwargs(certs, tls))
    exc = info.value
    assert isinstance(exc, fastpool.NotSentError)
    assert not isinstance(exc, (fastpool.TLSError, fastpool.ResolveError, fastpool.TimeoutException))
    assert str(port) in str(exc)


def test_unresolvable_host(make_pool, monkeypatch):
    # The resolver is asked exactly once, at construction. It is faked here so that the test
    # stays on loopback (a real lookup of an unknown name would go to the DNS server).
    real = socket.getaddrinfo
    asked = []

    def fake(host, *args, **kwargs):
        asked.append(host)
        if host == "unresolvable.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    with pytest.raises(fastpool.ResolveError) as info:
        make_pool("http://unresolvable.invalid:8080/", connections=2)
    exc = info.value
    assert isinstance(exc, fastpool.ConnectError) and isinstance(exc, fastpool.NotSentError)
    assert "unresolvable.invalid" in str(exc)
    assert asked == ["unresolvable.invalid"]


def test_host_is_resolved_once_not_per_request(fault_server, make_pool, monkeypatch):
    server = fault_server(respond())
    real = socket.getaddrinfo
    asked = []

    def counting(host, *args, **kwargs):
        asked.append(host)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", counting)
    pool = make_pool(server.url("/", host="localhost"), connections=2)
    for _ in range(5):
        assert pool.get("/").status_code == 200
    pool.get("/close-me")
    assert asked == ["localhost"]


# Connect timeout: a TCP connect on loopback is refused or accepted at once (a full backlog
# still completes handshakes with syncookies), so no deterministic plain-TCP connect timeout
# exists here. The TLS handshake is part of the connect phase and can be stalled: see
# test_pool_tls.py::test_handshake_stall_is_a_connect_timeout.


# --- invalid requests never reach the wire -------------------------------------------------


INVALID_REQUESTS = {
    "method-space": (lambda p: p.request("GE T", "/"), "method_invalid"),
    "method-empty": (lambda p: p.request("", "/"), "method_invalid"),
    "method-crlf": (lambda p: p.request("GET\r\nX: 1", "/"), "method_invalid"),
    "method-not-str": (lambda p: p.request(b"GET", "/"), "method_invalid"),
    "method-non-ascii": (lambda p: p.request("GÉT", "/"), "method_invalid"),
    "header-name-space": (lambda p: p.get("/", headers={"Bad Name": "v"}), "header_name_invalid"),
    "header-name-empty": (lambda p: p.get("/", headers={"": "v"}), "header_name_invalid"),
    "header-name-colon": (lambda p: p.get("/", headers={"X:Y": "v"}), "header_name_invalid"),
    "header-name-non-ascii": (lambda p: p.get("/", headers={"Ü": "v"}), "header_name_invalid"),
    "header-value-crlf": (lambda p: p.get("/", headers={"X-A": "a\r\nInjected: 1"}),
                          "header_value_invalid"),
    "header-value-lf": (lambda p: p.get("/", headers={"X-A": "a\nb"}), "header_value_invalid"),
    "header-value-nul": (lambda p: p.get("/", headers={"X-A": "a\x00b"}), "header_value_invalid"),
    "header-host": (lambda p: p.get("/", headers={"Host": "evil"}), "header_forbidden"),
    "header-connection": (lambda p: p.get("/", headers={"connection": "close"}),
                          "header_forbidden"),
    "header-te": (lambda p: p.post("/", content=b"x", headers={"Transfer-Encoding": "chunked"}),
                  "header_forbidden"),
    "content-length-mismatch": (lambda p: p.post("/", content=b"abc",
                                                 headers={"Content-Length": "5"}),
                                "content_length_mismatch"),
    "raw-params-space": (lambda p: p.get("/", params="a b"), "target_invalid"),
    "raw-params-crlf": (lambda p: p.get("/", params=b"a=1\r\nX: y"), "target_invalid"),
    "raw-params-non-ascii": (lambda p: p.get("/", params="a=ü"), "target_invalid"),
    "content-wrong-type": (lambda p: p.post("/", content=123), "body_invalid"),
    "content-and-json": (lambda p: p.post("/", content=b"a", json={"a": 1}), "body_invalid"),
    "other-origin": (lambda p: p.get("http://127.0.0.2:9/x"), "url_invalid"),
    "other-scheme": (lambda p: p.get("https://127.0.0.1:9/x"), "url_invalid"),
}


@pytest.mark.parametrize("case", sorted(INVALID_REQUESTS))
def test_invalid_request_is_not_sent(fault_server, make_pool, case):
    call, code = INVALID_REQUESTS[case]
    server = fault_server(respond())
    pool = make_pool(server.url("/"), connections=1)
    with pytest.raises(fastpool.InvalidRequestError) as info:
        call(pool)
    exc = info.value
    assert isinstance(exc, fastpool.NotSentError) and isinstance(exc, ValueError)
    assert exc.code == code, (exc.code, str(exc))
    # the connection is untouched: the next request is the first thing the server sees
    r = pool.get("/after")
    assert r.status_code == 200
    server.wait_for_requests(1)
    assert [(q.connection, q.index, q.target) for q in server.requests] == [(0, 0, "/after")]
    assert bytes(server.connections[0].received) == server.requests[0].raw
    s = pool.stats()
    assert s["connects"] == 1 and s["open"] == 1


@pytest.mark.parametrize("headers,code", [
    ({"Host": "evil"}, "header_forbidden"),
    ({"X-A": "a\r\nb"}, "header_value_invalid"),
    ({"Bad Name": "v"}, "header_name_invalid"),
    ({"Content-Length": "0"}, "header_forbidden"),
])
def test_invalid_pool_headers_fail_construction_before_connecting(fault_server, make_pool,
                                                                  headers, code):
    # Content-Length in the constant block would go on every request, a POST then carrying
    # it twice with different values: fp_write_fields refuses it (FP_E_FIELD_FORBIDDEN).
    server = fault_server(respond())
    with pytest.raises(fastpool.InvalidRequestError) as info:
        make_pool(server.url("/"), connections=2, headers=headers)
    assert info.value.code == code
    assert server.connection_count == 0


@pytest.mark.parametrize("kwargs", [
    {"connections": 0}, {"connections": -1}, {"connections": 2, "max_connections": 1},
    {"retries": -1}, {"retries": 1.5}, {"timeout": -1}, {"engine": "rust"},
])
def test_invalid_pool_arguments(fault_server, make_pool, kwargs):
    server = fault_server(respond())
    with pytest.raises(ValueError):
        make_pool(server.url("/"), **kwargs)
    assert server.connection_count == 0


# --- timeouts ------------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_read_timeout_discards_the_connection(fault_server, certs, make_pool, tls):
    server = server_for(fault_server, certs, delay(400), tls)
    pool = make_pool(server.url("/"), connections=1, timeout=fastpool.Timeout(5.0, read=0.05),
                     **tls_kwargs(certs, tls))
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/slow")
    exc = info.value
    assert_typed(exc)
    assert isinstance(exc, fastpool.MaybeSentError) and isinstance(exc, fastpool.TimeoutException)
    assert exc.phase == "read"
    s = pool.stats()
    assert s["errors"] == 1 and s["timeouts"] == 1 and s["retries"] == 0
    # the next request (with time enough) goes on a new connection and works
    r = pool.get("/next", timeout=5.0)
    assert r.status_code == 200 and r.headers["x-request-target"] == "/next"
    targets = [(q.connection, q.target) for q in server.requests]
    assert ("/slow", "/next") == tuple(t for _, t in targets)
    assert targets[0][0] != targets[1][0]
    assert server.connections[targets[0][0]].requests[0].target == "/slow"
    assert len(server.connections[targets[0][0]].requests) == 1


@pytest.mark.parametrize("timeout", [
    fastpool.Timeout(5.0, total=0.2), 0.2, fastpool.Timeout(0.2),
    fastpool.Timeout(connect=1, read=0.2, write=1, pool=1),
], ids=["total", "float", "all-phases", "explicit"])
def test_per_request_timeout_overrides_the_pool(fault_server, make_pool, timeout):
    server = fault_server(delay(1000))
    pool = make_pool(server.url("/"), connections=1, timeout=30.0)
    with pytest.raises(fastpool.TimeoutException) as info:
        pool.get("/x", timeout=timeout)
    assert_typed(info.value)
    assert isinstance(info.value, fastpool.MaybeSentError)
    if isinstance(timeout, fastpool.Timeout) and timeout.total is not None:
        assert "total deadline" in str(info.value)
    server.wait_for_requests(1)
    assert len(server.requests) == 1


def test_total_deadline_on_the_pool(fault_server, make_pool):
    server = fault_server(delay(1000))
    pool = make_pool(server.url("/"), connections=1, timeout=fastpool.Timeout(5.0, total=0.2))
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/x")
    assert isinstance(info.value, fastpool.TimeoutException)
    assert "total deadline" in str(info.value)


def test_total_deadline_bounds_retries(fault_server, make_pool):
    """Retries allowed, but the total deadline runs out first: the error is the timeout,
    and the request was sent at most as often as retries allow."""
    server = fault_server(delay(300))
    pool = make_pool(server.url("/"), connections=1,
                     timeout=fastpool.Timeout(5.0, read=0.1, total=0.25))
    with pytest.raises(fastpool.TimeoutException):
        pool.get("/x", retries=10)
    assert 1 <= len(server.requests) <= 11


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_write_timeout(fault_server, certs, make_pool, tls):
    """The server never reads: a large body fills the socket buffers and the write stalls.
    Bytes were written, so it is a MaybeSent WriteTimeout."""
    server = server_for(fault_server, certs, never_read(hold=10.0), tls)
    pool = make_pool(server.url("/"), connections=1, timeout=fastpool.Timeout(5.0, write=0.2),
                     **tls_kwargs(certs, tls))
    with pytest.raises(fastpool.WriteTimeout) as info:
        pool.post("/upload", content=b"x" * (32 << 20))
    exc = info.value
    assert_typed(exc)
    assert isinstance(exc, fastpool.MaybeSentError) and exc.phase == "write"
    assert pool.stats()["open"] <= 1


def test_pool_timeout_when_every_connection_is_busy(fault_server, make_pool):
    server = fault_server(delay(500))
    pool = make_pool(server.url("/"), connections=1, max_connections=1,
                     timeout=fastpool.Timeout(5.0, pool=0.05))
    busy = threading.Thread(target=lambda: pool.get("/busy"), daemon=True)
    busy.start()
    server.wait_for_requests(1)
    with pytest.raises(fastpool.PoolTimeout) as info:
        pool.get("/waiting")
    exc = info.value
    assert isinstance(exc, fastpool.NotSentError) and isinstance(exc, fastpool.TimeoutException)
    assert exc.phase == "pool"
    busy.join(10)
    assert not busy.is_alive()
    assert [q.target for q in server.requests] == ["/busy"]
    # the connection came back: now the request goes through
    assert pool.get("/later", timeout=5.0).status_code == 200
    s = pool.stats()
    assert s["connects"] == 1 and s["open"] == 1


def test_pool_grows_to_max_connections_instead_of_waiting(fault_server, make_pool):
    server = fault_server(delay(500))
    pool = make_pool(server.url("/"), connections=1, max_connections=2,
                     timeout=fastpool.Timeout(5.0, pool=0.05))
    busy = threading.Thread(target=lambda: pool.get("/busy"), daemon=True)
    busy.start()
    server.wait_for_requests(1)
    assert pool.get("/second").status_code == 200  # a new connection, not a PoolTimeout
    busy.join(10)
    assert pool.stats()["connects"] == 2
    assert len({q.connection for q in server.requests}) == 2


# --- malformed responses and disconnects ---------------------------------------------------

#: MALFORMED_RESPONSES kind -> ProtocolError.code, by the rules of csrc/fp_http.h (a space in
#: a field name is header_whitespace even when no colon follows: the name scan stops there).
MALFORMED_CODES = {
    "bad-status-line": "status",
    "not-http": "version",
    "bad-version": "version",
    "bad-content-length": "content_length_invalid",
    "conflicting-content-length": "content_length_multiple",
    "bad-chunk-size": "chunk_size",
    "header-no-colon": "header_whitespace",
    "space-before-colon": "header_whitespace",
    "nul-in-header": "header_value",
    "binary-garbage": "version",
}
EXTRA_MALFORMED = {
    "no-colon-at-all": (b"HTTP/1.1 200 OK\r\nXNoColon\r\nContent-Length: 2\r\n\r\nok",
                        "header_no_colon"),
    "obs-fold": (b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok", "obs_fold"),
    "cl-and-te": (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"2\r\nok\r\n0\r\n\r\n", "content_length_and_chunked"),
    "te-gzip": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok", "transfer_encoding"),
    "unsolicited-101": (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
                        "unsolicited_101"),
    "chunk-no-crlf": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX0\r\n\r\n",
                      "chunk_crlf"),
}


def test_malformed_table_is_complete():
    assert set(MALFORMED_CODES) == set(MALFORMED_RESPONSES)


@pytest.mark.parametrize("kind", sorted(MALFORMED_CODES) + sorted(EXTRA_MALFORMED))
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_malformed_response_is_a_protocol_error_and_discards(fault_server, certs, make_pool,
                                                             kind, tls):
    if kind in EXTRA_MALFORMED:
        data, code = EXTRA_MALFORMED[kind]
        behavior = garbage(data, then="hold")
    else:
        behavior, code = malformed(kind, then="hold"), MALFORMED_CODES[kind]
    server = server_for(fault_server, certs, behavior, tls)
    pool = make_pool(server.url("/"), connections=1, timeout=5.0, **tls_kwargs(certs, tls))
    for i in range(2):
        with pytest.raises(fastpool.ProtocolError) as info:
            pool.get(f"/m{i}")
        exc = info.value
        assert_typed(exc)
        assert isinstance(exc, fastpool.MaybeSentError)
        assert exc.code == code, (exc.code, str(exc))
    # each attempt came on its own connection: the broken one was not reused
    conns = [q.connection for q in server.requests]
    assert len(conns) == 2 and len(set(conns)) == 2
    s = pool.stats()
    assert s["errors"] == 2 and s["retries"] == 0


def test_limits_violation_is_a_protocol_error(fault_server, make_pool):
    server = fault_server(respond(body=b"x" * 5000))
    pool = make_pool(server.url("/"), connections=1,
                     limits=fastpool.Limits(max_body_size=4096))
    with pytest.raises(fastpool.ProtocolError) as info:
        pool.get("/big")
    assert info.value.code == "body_too_large"


DISCONNECTS = {
    "close-after-request": (close_after_request, fastpool.ServerDisconnected, "no_response"),
    "partial-head": (partial_head, fastpool.ServerDisconnected, "truncated"),
    "partial-body": (partial_body, fastpool.ServerDisconnected, "truncated"),
    "reset-after-request": (reset_after_request, fastpool.ReadError, None),
}


@pytest.mark.parametrize("case", sorted(DISCONNECTS))
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_server_disconnect_after_the_request(fault_server, certs, make_pool, case, tls):
    factory, exc_type, code = DISCONNECTS[case]
    server = server_for(fault_server, certs, factory(), tls)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    with pytest.raises(exc_type) as info:
        pool.get("/x")
    exc = info.value
    assert_typed(exc)
    assert isinstance(exc, fastpool.MaybeSentError) and isinstance(exc, fastpool.ReadError)
    if code is not None:
        assert exc.code == code
    server.wait_for_requests(1)
    assert len(server.requests) == 1  # GET with retries=0: sent once


# --- order safety: a POST is never sent twice ------------------------------------------------


def _post_faults():
    return {
        "close-after-request": close_after_request(),
        "reset-after-request": reset_after_request(),
        "partial-head": partial_head(),
        "partial-body": partial_body(),
        "garbage": garbage(then="close"),
        "malformed": malformed("bad-status-line", then="close"),
        "read-timeout": delay(400),
        "stall": stall_after_request(hold=0.3),
        "stale-on-next-request": stale_after(1, when="on_next_request"),
    }


POST_FAULTS = sorted(_post_faults())


@pytest.mark.parametrize("retries", [0, 3])
@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("fault", POST_FAULTS)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_non_idempotent_request_is_never_sent_twice(fault_server, certs, make_pool, fault,
                                                    method, retries, tls):
    server = server_for(fault_server, certs, _post_faults()[fault], tls)
    pool = make_pool(server.url("/"), connections=2, retries=retries,
                     timeout=fastpool.Timeout(5.0, read=0.1), **tls_kwargs(certs, tls))
    body = b'{"symbol":"BTCUSDT","side":"BUY","qty":"1","clientOrderId":"o-1"}'
    if fault == "stale-on-next-request":
        assert pool.request(method, "/order", content=b"warm-up").status_code == 200
    with pytest.raises(fastpool.MaybeSentError) as info:
        pool.request(method, "/order", content=body, retries=retries)
    assert_typed(info.value)
    # Let every connection finish: the pool closes its sockets, each server-side behavior
    # sees EOF (or times out its own bounded wait) and has recorded all it read.
    pool.close()
    server.wait_idle(timeout=10)
    orders = [q for q in server.requests if q.body == body]
    assert len(orders) == 1, [(q.connection, q.index, q.method) for q in server.requests]
    assert orders[0].method == method
    for rec in server.connections:
        assert body not in rec.partial  # no second copy arrived in pieces either
    assert server.received.count(body) == 1
    assert pool.stats()["retries"] == 0


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_post_on_a_connection_closed_while_idle_is_moved_and_sent_once(fault_server, certs,
                                                                       make_pool, tls):
    """Closed before the write: NotSent, so even a POST is moved to a fresh connection."""
    close_now = threading.Event()
    server = server_for(fault_server, certs, answer_then_close(close_now), tls)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    assert pool.get("/warm").status_code == 200
    close_now.set()
    wait_until(server.connections[0].done.is_set, what="the server to close")
    close_now.clear()
    r = pool.post("/order", content=b"order-1")
    assert r.status_code == 200 and r.headers["x-request-target"] == "/order"
    posts = [q for q in server.requests if q.method == "POST"]
    assert len(posts) == 1 and posts[0].connection != 0 and posts[0].body == b"order-1"
    assert server.connections[0].partial == b""
    s = pool.stats()
    assert s["stale"] == 1 and s["errors"] == 0


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_stale_connection_closed_after_reading_the_request_is_maybe_sent(
        fault_server, certs, make_pool, tls):
    """Each connection answers one request and closes after reading the next one: that
    next request is MaybeSent (the server read it). Not retried with retries=0 (GET
    included); with retries=1 the GET is sent again, on a fresh connection, and succeeds."""
    server = server_for(fault_server, certs, stale_after(1, when="on_next_request"), tls)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    assert pool.get("/first").status_code == 200
    with pytest.raises(fastpool.ServerDisconnected) as info:
        pool.get("/second")
    assert info.value.code == "no_response"
    assert_typed(info.value)
    server.wait_for_requests(2)
    assert [(q.connection, q.target) for q in server.requests] == [(0, "/first"), (0, "/second")]
    assert pool.get("/third").status_code == 200  # on a fresh connection: its first request
    r = pool.get("/fourth", retries=1)  # the /third connection reads it and closes
    assert r.status_code == 200 and r.headers["x-request-target"] == "/fourth"
    fourth = [q for q in server.requests if q.target == "/fourth"]
    assert len(fourth) == 2 and fourth[0].connection != fourth[1].connection
    assert fourth[0].index == 1 and fourth[1].index == 0
    s = pool.stats()
    assert s["errors"] == 1 and s["retries"] == 1


def _read_some_then_reset(nbytes: int = 65536) -> Behavior:
    """Read the first nbytes of what arrives (a large request is still being written), then
    reset the connection."""

    def run(conn) -> None:
        got = 0
        for _ in range(10_000):
            data = conn.read_raw()
            if not data:
                break
            got += len(data)
            if got >= nbytes:
                break
        conn.reset()

    return Behavior(f"read-{nbytes}-then-reset", run)


@pytest.mark.parametrize("retries", [0, 3])
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_connection_lost_while_writing_a_large_post(fault_server, certs, make_pool, tls,
                                                    retries):
    """The server reads 64 KiB of an 8 MiB POST and resets: bytes of the request reached
    the server, so the failure is MaybeSent (never StaleConnection / NotSent) and the POST
    is not sent again on another connection."""
    server = server_for(fault_server, certs, _read_some_then_reset(), tls)
    pool = make_pool(server.url("/"), connections=2, retries=retries, **tls_kwargs(certs, tls))
    with pytest.raises(fastpool.FastpoolError) as info:
        pool.post("/order", content=b"x" * (8 << 20))
    exc = info.value
    assert_typed(exc)
    assert isinstance(exc, fastpool.MaybeSentError), repr(exc)
    pool.close()
    server.wait_idle(timeout=10)
    reached = [c.index for c in server.connections if c.received]
    assert len(reached) == 1, [len(c.received) for c in server.connections]
    s = pool.stats()
    assert s["retries"] == 0 and s["stale"] == 0


def _first_connection_fails(fail: Behavior) -> Behavior:
    """Connection 0 misbehaves with ``fail``; every later connection answers."""
    ok = respond()

    def run(conn) -> None:
        (fail if conn.record.index == 0 else ok)(conn)

    return Behavior(f"first-fails[{fail.name}]", run)


IDEMPOTENT = ["GET", "HEAD", "OPTIONS", "PUT", "DELETE"]


@pytest.mark.parametrize("method", IDEMPOTENT)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_idempotent_request_retried_until_it_succeeds(fault_server, certs, make_pool, method,
                                                      tls):
    server = server_for(fault_server, certs, _first_connection_fails(close_after_request()), tls)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    r = pool.request(method, "/idem", retries=2)
    assert r.status_code == 200
    sent = [q for q in server.requests if q.target == "/idem"]
    assert [q.method for q in sent] == [method, method]
    assert [q.connection for q in sent] == sorted({q.connection for q in sent})
    s = pool.stats()
    assert s["retries"] == 1 and s["errors"] == 0


@pytest.mark.parametrize("method", IDEMPOTENT)
def test_idempotent_request_gives_up_after_retries(fault_server, make_pool, method):
    server = fault_server(close_after_request())
    pool = make_pool(server.url("/"), connections=1, retries=2)
    with pytest.raises(fastpool.ServerDisconnected) as info:
        pool.request(method, "/idem")
    assert_typed(info.value)
    pool.close()
    server.wait_idle(timeout=10)
    sent = [q for q in server.requests if q.target == "/idem"]
    assert len(sent) == 3  # 1 + 2 retries, each on its own connection
    assert len({q.connection for q in sent}) == 3
    s = pool.stats()
    assert s["retries"] == 2 and s["errors"] == 1


@pytest.mark.parametrize("method", IDEMPOTENT)
def test_idempotent_request_not_retried_without_retries(fault_server, make_pool, method):
    server = fault_server(_first_connection_fails(close_after_request()))
    pool = make_pool(server.url("/"), connections=1, retries=3)
    with pytest.raises(fastpool.ServerDisconnected):
        pool.request(method, "/idem", retries=0)  # the per-request value wins
    pool.close()
    server.wait_idle(timeout=10)
    assert len([q for q in server.requests if q.target == "/idem"]) == 1


def test_error_stats(fault_server, make_pool):
    server = fault_server(close_after_request())
    pool = make_pool(server.url("/"), connections=1)
    for _ in range(3):
        with pytest.raises(fastpool.ServerDisconnected):
            pool.get("/x")
    s = pool.stats()
    assert s["errors"] == 3 and s["timeouts"] == 0 and s["requests"] == 0
    assert s["open"] <= 1
