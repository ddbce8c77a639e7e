"""Pool basics against nginx on plain HTTP, TLS 1.2 and TLS 1.3, on both engines: methods,
params, headers, bodies, chunked / large / bodiless responses, and the Response API."""

from __future__ import annotations

import datetime
import json

import pytest
from pool_helpers import new_tag, nginx_mark, tagged_entries, tls_kwargs  # noqa: F401
from support.faults import respond
from support.nginx import TICKER_BODY, static_body

import fastpool

pytestmark = nginx_mark

LISTENERS = ["plain", "tls12", "tls13"]
TLS_VERSION = {"plain": "", "tls12": "TLSv1.2", "tls13": "TLSv1.3"}


@pytest.fixture(params=LISTENERS)
def listener(request):
    return request.param


@pytest.fixture
def pool(nginx, certs, listener, make_pool):
    lst = nginx.listeners[listener]
    return make_pool(nginx.url(listener, "/"), connections=2, **tls_kwargs(certs, lst.tls))


def order_doc(r) -> dict:
    assert r.status_code == 200, r.text
    return r.json()


# --- methods -------------------------------------------------------------------------------


def test_every_method_reaches_the_server_as_itself(pool, nginx, listener):
    mark = nginx.access_log.mark()
    tag = new_tag()
    h = {"X-Test-Tag": tag}
    calls = [
        ("GET", lambda: pool.get("/api/v3/order", headers=h)),
        ("POST", lambda: pool.post("/api/v3/order", content=b"x=1", headers=h)),
        ("PUT", lambda: pool.put("/api/v3/order", content=b"x=2", headers=h)),
        ("PATCH", lambda: pool.patch("/api/v3/order", json={"x": 3}, headers=h)),
        ("DELETE", lambda: pool.delete("/api/v3/order", headers=h)),
        ("OPTIONS", lambda: pool.options("/api/v3/order", headers=h)),
        ("DELETE", lambda: pool.request("DELETE", "/api/v3/order", headers=h)),
        ("PATCH", lambda: pool.request("patch", "/api/v3/order", headers=h)),  # upper-cased
    ]
    for method, call in calls:
        r = call()
        doc = order_doc(r)
        assert doc["method"] == method and doc["uri"] == "/api/v3/order"
        assert r.request.method == method
    r = pool.head("/api/v3/order", headers=h)
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["content-length"]) > 0  # the GET body's length, not sent
    entries = tagged_entries(nginx.access_log, tag, len(calls) + 1, since=mark)
    assert [e.method for e in entries] == [m for m, _ in calls] + ["HEAD"]
    assert {e.ssl_protocol for e in entries} == {TLS_VERSION[listener]}
    assert all(e.status == 200 for e in entries)


def test_sequential_requests_share_one_keep_alive_connection(pool):
    first = pool.get("/api/v3/order")
    serial = first.headers["x-connection"]
    for i in range(2, 6):
        r = pool.get("/api/v3/order")
        assert r.headers["x-connection"] == serial  # LIFO: the hottest connection
        assert r.headers["x-connection-requests"] == str(int(first.headers["x-connection-requests"]) + i - 1)
    s = pool.stats()
    assert s["requests"] == 5 and s["errors"] == 0 and s["connects"] == 2 and s["open"] == 2


# --- params ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params,query",
    [
        ({"symbol": "BTCUSDT", "limit": 5}, "symbol=BTCUSDT&limit=5"),
        ({"q": "a b", "u": "ü€", "amp": "a&b=c", "plus": "1+1"},
         "q=a%20b&u=%C3%BC%E2%82%AC&amp=a%26b%3Dc&plus=1%2B1"),
        ({"ids": [1, 2, 3], "t": True, "f": False, "n": None, "x": 1.5},
         "ids=1&ids=2&ids=3&t=true&f=false&n=&x=1.5"),
        ([("b", "2"), ("a", "1"), ("b", "3")], "b=2&a=1&b=3"),  # caller's order kept
        ({"clé": "v"}, "cl%C3%A9=v"),
        ("already=encoded&x=%20", "already=encoded&x=%20"),
        ({}, None),
    ],
    ids=["simple", "escapes", "lists-bools", "pairs", "unicode-key", "raw-str", "empty"],
)
def test_params_are_encoded_into_the_target(pool, params, query):
    doc = order_doc(pool.get("/api/v3/order", params=params))
    assert doc["uri"] == "/api/v3/order" + (f"?{query}" if query else "")


def test_params_are_appended_to_a_query_in_the_url(pool):
    r = pool.get("/api/v3/order?a=1", params={"b": "2 3"})
    assert order_doc(r)["uri"] == "/api/v3/order?a=1&b=2%203"
    assert r.url.endswith("/api/v3/order?a=1&b=2%203")


def test_path_is_percent_encoded(pool):
    r = pool.get("/chunked/echo-uri", params={"p": "ü"})
    assert r.content == b"uri=/chunked/echo-uri?p=%C3%BC;end\n"
    r = pool.get("/api/v3/a b/ü")  # 404, but the target went out encoded
    assert r.status_code == 404
    assert r.headers["x-request-uri"] == "/api/v3/a%20b/%C3%BC"


def test_base_url_path_prefixes_every_target(nginx, certs, listener, make_pool):
    lst = nginx.listeners[listener]
    p = make_pool(nginx.url(listener, "/api/v3/"), connections=1, **tls_kwargs(certs, lst.tls))
    assert order_doc(p.get("/order", params={"id": 1}))["uri"] == "/api/v3/order?id=1"
    assert order_doc(p.get("order"))["uri"] == "/api/v3/order"
    assert p.url == nginx.url(listener, "/api/v3")


def test_absolute_url_on_the_pool_origin(pool, nginx, listener):
    r = pool.get(nginx.url(listener, "/api/v3/order?z=1"), params={"y": 2})
    assert order_doc(r)["uri"] == "/api/v3/order?z=1&y=2"
    r = pool.get(nginx.url(listener, "/").rstrip("/"))  # no path at all: "/"
    assert r.headers["x-request-uri"] == "/"
    with pytest.raises(fastpool.InvalidURL):
        pool.get("http://127.0.0.2:1/api/v3/order")


def test_absolute_url_is_not_prefixed_with_the_base_path(nginx, certs, listener, make_pool):
    """An absolute URL names the whole target (as in httpx): the pool's base path is for
    relative ones. Sending a response's own .url again must hit the same resource."""
    lst = nginx.listeners[listener]
    p = make_pool(nginx.url(listener, "/api/v3"), connections=1, **tls_kwargs(certs, lst.tls))
    r = p.get(nginx.url(listener, "/api/v3/order?x=1"))
    assert order_doc(r)["uri"] == "/api/v3/order?x=1"
    first = p.get("/order", params={"id": 7})
    again = p.get(first.url)
    assert order_doc(again)["uri"] == order_doc(first)["uri"] == "/api/v3/order?id=7"
    assert again.url == first.url


# --- request headers -----------------------------------------------------------------------


def test_request_header_reaches_the_server(pool):
    r = pool.get("/api/v3/ticker", headers={"X-Test-Tag": "t-1"})
    assert r.headers["x-test-tag"] == "t-1"
    r = pool.get("/api/v3/ticker", headers=[("x-test-tag", "t-2")])
    assert r.headers["X-Test-Tag"] == "t-2"
    r = pool.get("/api/v3/ticker")
    assert "x-test-tag" not in r.headers  # nothing leaks from one request to the next


def test_pool_headers_and_request_override(nginx, certs, listener, make_pool):
    lst = nginx.listeners[listener]
    p = make_pool(nginx.url(listener, "/"), connections=1, headers={"X-Test-Tag": "pool"},
                  **tls_kwargs(certs, lst.tls))
    assert p.get("/api/v3/ticker").headers["x-test-tag"] == "pool"
    r = p.get("/api/v3/ticker", headers={"x-TEST-tag": "req"})
    assert r.headers.get_list("x-test-tag") == ["req"]
    assert p.get("/api/v3/ticker").headers["x-test-tag"] == "pool"  # the override is per request


def test_exact_request_headers_on_the_wire(fault_server, make_pool):
    """What goes out, exactly: Host, the default User-Agent, pool headers, overrides (one
    value each), Content-Length for bodies, Content-Type for json."""
    server = fault_server(respond())
    p = make_pool(server.url("/"), connections=1,
                  headers={"X-Api-Key": "k1", "X-Pool": "p", "User-Agent": "bot/1"})
    p.get("/a")
    p.get("/b", headers={"x-api-key": "k2", "X-Extra": "  spaced  "})
    p.post("/c", json={"a": 1})
    p.post("/d", content=b"raw", headers={"Content-Type": "text/plain"})
    p.post("/e")
    p.get("/f", headers={"User-Agent": "other/2"})
    server.wait_for_requests(6)
    a, b, c, d, e, f = server.requests
    host = f"127.0.0.1:{server.port}"

    def names(req):
        return [k.lower() for k, _ in req.headers]

    assert a.header("host") == host and a.header("x-api-key") == "k1"
    assert a.header("user-agent") == "bot/1" and names(a).count("user-agent") == 1
    assert a.header("content-length") is None and a.body == b""
    assert names(b).count("x-api-key") == 1 and b.header("x-api-key") == "k2"
    assert b.header("x-pool") == "p" and b.header("x-extra") == "spaced"
    assert c.header("content-type") == "application/json" and json.loads(c.body) == {"a": 1}
    assert c.header("content-length") == str(len(c.body))
    assert d.header("content-type") == "text/plain" and d.body == b"raw"
    assert names(d).count("content-type") == 1
    assert e.method == "POST" and e.header("content-length") == "0" and e.body == b""
    assert f.header("user-agent") == "other/2" and names(f).count("user-agent") == 1
    for req in server.requests:
        assert req.version == "HTTP/1.1" and names(req).count("host") == 1
        assert "connection" not in names(req) and "transfer-encoding" not in names(req)
    assert [r.connection for r in server.requests] == [0] * 6


def test_default_user_agent(fault_server, make_pool):
    server = fault_server(respond())
    make_pool(server.url("/"), connections=1).get("/")
    server.wait_for_requests(1)
    assert server.requests[0].header("user-agent") == f"fastpool/{fastpool.__version__}"


# --- response headers ----------------------------------------------------------------------


def test_repeated_and_case_insensitive_response_headers(pool):
    r = pool.get("/headers/repeated")
    h = r.headers
    assert h.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    assert h.get_list("SET-COOKIE") == h.get_list("Set-Cookie")
    assert h.get_list("x-dup") == ["one", "two"] and h["X-Dup"] == "one, two"
    assert h.get_list("x-dup", split_commas=True) == ["one", "two"]
    assert h.get_list("absent") == [] and h.get("absent") is None
    assert "CONTENT-type" in h and h["Content-Type"] == h["content-type"] == "text/plain"
    assert sum(1 for k, _ in h.multi_items() if k.lower() == "set-cookie") == 2
    assert all(k == k.lower() for k in h.keys())


def test_response_header_values_are_stripped(fault_server, make_pool):
    server = fault_server(respond(headers=[("X-Pad", " \t padded value \t "),
                                           ("X-Empty", "   ")]))
    r = make_pool(server.url("/"), connections=1).get("/")
    assert r.headers["x-pad"] == "padded value"
    assert r.headers["x-empty"] == ""


# --- bodies --------------------------------------------------------------------------------


def test_json_and_content_bodies_round_trip(pool, nginx):
    if not nginx.has_echo:
        pytest.skip("nginx echo module not installed")
    doc = {"symbol": "BTCUSDT", "qty": "0.001", "tags": ["ü", "€"], "n": None, "ok": True}
    r = pool.post("/echo", json=doc)
    assert r.json() == doc
    payload = bytes(range(256)) * 64  # 16 KiB, every byte value
    assert pool.put("/echo", content=payload).content == payload
    assert pool.patch("/echo", content=bytearray(b"abc")).content == b"abc"
    assert pool.post("/echo", content="naïve").text == "naïve"
    assert pool.post("/echo", content=memoryview(b"mv")).content == b"mv"
    assert pool.post("/echo", content=b"").content == b""


def test_content_and_json_together_is_invalid(pool):
    with pytest.raises(fastpool.InvalidRequestError) as info:
        pool.post("/echo", content=b"a", json={"a": 1})
    assert isinstance(info.value, fastpool.NotSentError)


@pytest.mark.parametrize("path,size", [("/chunked/64k.bin", 65536), ("/chunked/1m.bin", 1 << 20),
                                       ("/static/1m.bin", 1 << 20), ("/static/64k.bin", 65536)])
def test_chunked_and_large_responses(pool, path, size):
    r = pool.get(path)
    assert r.status_code == 200
    assert len(r.content) == size and r.content == static_body(size)
    if path.startswith("/chunked/"):
        assert r.headers["transfer-encoding"] == "chunked" and "content-length" not in r.headers
    else:
        assert r.headers["content-length"] == str(size)
    # the connection is still usable and the buffer was reset
    r2 = pool.get("/api/v3/ticker")
    assert r2.content == TICKER_BODY
    assert r2.headers["x-connection"] == r.headers["x-connection"]


def test_chunked_small(pool):
    r = pool.get("/chunked/ticker")
    assert r.content == TICKER_BODY and r.json()["symbol"] == "BTCUSDT"


def test_bodiless_responses_keep_the_connection(pool):
    first = pool.get("/api/v3/ticker")
    conn = first.headers["x-connection"]
    r = pool.head("/static/1m.bin")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == "1048576"
    r = pool.get("/204")
    assert r.status_code == 204 and r.content == b"" and r.text == ""
    r = pool.get("/304")
    assert r.status_code == 304 and r.content == b""
    r = pool.get("/static/2k.bin", headers={"If-None-Match": "*"})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"]
    r = pool.head("/chunked/64k.bin")
    assert r.content == b""
    last = pool.get("/api/v3/ticker")
    assert last.content == TICKER_BODY
    assert last.headers["x-connection"] == conn
    assert int(last.headers["x-connection-requests"]) == int(first.headers["x-connection-requests"]) + 6


def test_connection_close_response_is_not_reused(pool):
    r = pool.get("/close")
    assert r.status_code == 200 and r.content == b"close\n"
    assert r.headers["connection"] == "close"
    after = [pool.get("/api/v3/ticker") for _ in range(3)]
    assert r.headers["x-connection"] not in {a.headers["x-connection"] for a in after}
    s = pool.stats()
    assert s["errors"] == 0 and s["requests"] == 4


# --- the Response API ----------------------------------------------------------------------


def test_response_api(pool, nginx, listener):
    r = pool.get("/api/v3/ticker", params={"symbol": "BTCUSDT"})
    assert r.status_code == 200 and r.is_success and not r.is_error
    assert r.http_version == "HTTP/1.1"
    assert r.reason_phrase == "OK"
    assert r.content == TICKER_BODY and isinstance(r.content, bytes)
    assert r.text == TICKER_BODY.decode()
    assert r.json() == json.loads(TICKER_BODY)
    assert r.json(parse_float=str)["time"] == 1700000000000
    assert r.headers["content-type"] == "application/json"
    assert r.encoding == "utf-8"
    assert r.url == nginx.url(listener, "/api/v3/ticker?symbol=BTCUSDT")
    assert r.request.method == "GET" and r.request.url == r.url
    assert r.head.startswith(b"HTTP/1.1 200 OK\r\n") and r.head.endswith(b"\r\n\r\n")
    assert repr(r) == "<Response [200 OK]>"
    assert r.raise_for_status() is r
    t = r.timings
    assert isinstance(t, fastpool.Timings)
    assert 0 < t.start <= t.acquired <= t.written <= t.first_byte <= t.complete
    assert t.total == t.complete - t.start and t.server == t.first_byte - t.written
    assert isinstance(r.elapsed, datetime.timedelta)
    assert r.elapsed > datetime.timedelta(0)
    assert abs(r.elapsed.total_seconds() * 1e9 - t.total) < 2000  # same stamps, us rounding


def test_timings_of_a_large_chunked_response(pool):
    t = pool.get("/chunked/1m.bin").timings
    assert t.start <= t.acquired <= t.written <= t.first_byte <= t.complete


# (A 429 or 418 raises RateLimitedError and starts a cooldown: tests/test_pool_exchange.py.)
@pytest.mark.parametrize("status,kind", [(400, "Client error"),
                                         (500, "Server error"), (503, "Server error")])
def test_raise_for_status(pool, status, kind):
    r = pool.get(f"/status/{status}")
    assert r.status_code == status and r.is_error and not r.is_success
    assert r.json()["code"] < 0
    with pytest.raises(fastpool.HTTPStatusError) as info:
        r.raise_for_status()
    exc = info.value
    # The server's answer, not a transport failure: neither of the two kinds, so a handler
    # that reconciles MaybeSent orders does not fire on a clean rejection.
    assert isinstance(exc, fastpool.FastpoolError)
    assert not isinstance(exc, (fastpool.NotSentError, fastpool.MaybeSentError))
    assert exc.response is r and exc.status_code == status
    assert kind in str(exc) and str(status) in str(exc) and "/status/" in str(exc)
    # an HTTP error status is a response, not a failure: the pool counts no error
    assert pool.stats()["errors"] == 0


def test_reason_phrase_and_charset_from_the_server(fault_server, make_pool):
    server = fault_server(respond(status=404, body="é".encode("latin-1"),
                                  headers=[("Content-Type", 'text/plain; charset="latin-1"')]))
    r = make_pool(server.url("/"), connections=1).get("/")
    assert r.status_code == 404 and r.reason_phrase == "Not Found"
    assert r.encoding == "latin-1" and r.text == "é"


# --- framings other than keep-alive Content-Length / chunked ---------------------------------


@pytest.mark.parametrize("data,body,version", [
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok", "HTTP/1.0"),
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nclose-delimited body", b"close-delimited body",
     "HTTP/1.1"),
    (b"HTTP/1.0 200 OK\r\n\r\nuntil eof", b"until eof", "HTTP/1.0"),
    (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
     b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nfinal", b"final",
     "HTTP/1.1"),
], ids=["http10-length", "close-delimited", "http10-close-delimited", "interim"])
def test_non_persistent_responses_are_read_whole_and_not_reused(fault_server, make_pool, data,
                                                                body, version):
    from support.faults import garbage

    server = fault_server(garbage(data, then="close"))
    pool = make_pool(server.url("/"), connections=1)
    for i in range(3):
        r = pool.get(f"/n{i}")
        assert r.status_code == 200 and r.content == body and r.http_version == version
    # every response ended its connection: each request came on a new one, none failed
    assert [(q.connection, q.index) for q in server.requests] == [(0, 0), (1, 0), (2, 0)]
    s = pool.stats()
    assert s["errors"] == 0 and s["stale"] == 0 and s["requests"] == 3


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_tls13_session_tickets_do_not_make_idle_connections_stale(fault_server, certs,
                                                                  make_pool, tls):
    """A TLS 1.3 server sends session tickets after the handshake: the idle connection's
    socket turns readable without anything being wrong with it."""
    server = fault_server(respond(), tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=3, **tls_kwargs(certs, tls))
    for i in range(6):
        assert pool.get(f"/t{i}").status_code == 200
    s = pool.stats()
    assert s["stale"] == 0 and s["connects"] == 3 and s["retries"] == 0
    assert server.connection_count == 3
