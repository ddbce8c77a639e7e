"""pytest-benchmark microbenchmarks of the HTTP/1.1 framing layer: fastpool's two engines beside
httptools and h11 (`make bench-micro`; the compact median table is printed by bench/conftest.py).

Cases (one pytest-benchmark group each, so every engine and peer of a case is one table block):

    parse ticker-137   137 B  a ticker price: 2 header lines, 66 B JSON body
    parse ticker-300   292 B  a book ticker behind a gateway head (Date, rate-limit header)
    parse book-2k     ~2 KB   an order-book snippet behind 10 header lines, 1600 B JSON body
    parse chunked-64k  64 KB  a snapshot in 16 chunks of 4 KB
    build GET          GET /api/v3/ticker/price?symbol=BTCUSDT, Host + User-Agent + Accept
    build POST         POST /api/v3/order, the same three lines, Content-Type, 80 B JSON body

The response bytes are the ones bench/c_parse_bench.c builds (same names), so a row here is the
C-level number of bench/c_bench.sh plus the cost of crossing into Python and back.

What one measured call includes, per implementation:

    c, python        engine.parse_response(data), called directly by pytest-benchmark's loop: a
                     new ResponseParser, the copy of data into its buffer, the parse, the
                     RawResponse with head, spans and body as bytes. Header names and values
                     are offsets only (materialised lazily).
    c+headers,       the same call in a small Python function that also reads .headers: the
    python+headers   (name, value) bytes pairs built too, which is what httptools and h11 hand
                     back (and the wrapper call, as theirs); compare these rows with theirs.
    httptools        feed_data(data) on one HttpResponseParser reused across calls (a keep-alive
                     connection's parser, as llhttp is meant to be used), callbacks collecting
                     (name, value) pairs and body pieces, get_status_code(), the body joined.
                     Parser construction is not included (it is per connection).
    h11              receive_data(data) and next_event() until EndOfMessage on one
                     Connection(CLIENT) reused across calls (keep-alive). Between calls, untimed:
                     start_next_cycle(), send(Request), send(EndOfMessage) -- h11 will not
                     parse a response without a finished request in flight. Set-up per call
                     means pedantic mode (one call per timed round), so each h11 row also
                     includes one perf_counter() read and one runner call that the other rows
                     amortise away: the group "overhead" shows that constant (~0.14 us on the
                     2-core VM) with an empty target; under 0.5 % of any h11 row.

    build c, python  engine.build_request(method, target, block, fields, body), called directly:
                     validation and one contiguous buffer. block (User-Agent, Accept) is
                     pre-encoded once with encode_header_block, as the pool does; Host may not
                     be in it (the pool owns Host), so the constant "Host: ..." line is
                     prepended to the block once.
    build h11        a fresh Connection(CLIENT) per call (untimed, pedantic), timed:
                     h11.Request(...) construction (h11's validation), send(Request), for POST
                     send(Data), then send(EndOfMessage) (h11 requires it even for a GET), the
                     pieces joined into one buffer.
    build httptools  n/a: httptools has no request writer (skipped).

Each benchmark asserts the result of the benchmarked call itself (status, body length or body,
request bytes), so a broken parser cannot benchmark fast. No timing thresholds: benchmarks
measure, tests assert.
Every callable is warmed up before pytest-benchmark calibrates it (see _bench).
"""

from __future__ import annotations

import importlib

import pytest

# Rounds of at least 20 us (pytest-benchmark's default is 5 us): a sub-microsecond call then runs
# >= 20 times per timed round, so the per-round perf_counter() read and runner call (~0.1 us on
# this VM) add a few ns per call, the same for every row. (This marker overrides
# --benchmark-min-time for this file.)
pytestmark = pytest.mark.benchmark(min_time=20e-6)

# ---- data (byte-identical to bench/c_parse_bench.c) ---------------------------------------------


def _with_cl(head_fmt: bytes, body: bytes) -> bytes:
    return head_fmt % len(body) + body


TICKER_137 = _with_cl(
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
    b'{"symbol":"BTCUSDT","price":"64123.45000000","time":1716000000000}',
)

TICKER_300 = _with_cl(
    b"HTTP/1.1 200 OK\r\nDate: Sat, 18 May 2024 02:40:00 GMT\r\n"
    b"Content-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\n"
    b"Connection: keep-alive\r\nx-mbx-used-weight-1m: 6\r\n\r\n",
    b'{"symbol":"BTCUSDT","bidPrice":"64123.45000000","bidQty":"1.20000000",'
    b'"askPrice":"64123.46000000","askQty":"0.50000000"}',
)


def _book_json(n: int) -> bytes:
    """A JSON body of exactly n bytes, order-book shaped (book_json in c_parse_bench.c)."""
    out = b'{"lastUpdateId":1027024,"bids":['
    i = 0
    while len(out) + 40 < n:
        out += b'%s["%d.%02d000000","%d.00000000"]' % (
            b"," if i else b"", 64000 - i, i % 100, 1 + i % 9)
        i += 1
    out += b" " * (n - 2 - len(out))
    return out + b"]}"


BOOK_2K = _with_cl(
    b"HTTP/1.1 200 OK\r\nDate: Sat, 18 May 2024 02:40:00 GMT\r\n"
    b"Content-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\n"
    b"Connection: keep-alive\r\nVary: Accept-Encoding\r\n"
    b"x-mbx-uuid: 3b1f9a3e-7d5c-4b2a-9c1e-2f8d6e4a0b7c\r\n"
    b"x-mbx-used-weight: 25\r\nx-mbx-used-weight-1m: 25\r\n"
    b"Strict-Transport-Security: max-age=31536000; includeSubdomains\r\n"
    b"Cache-Control: no-cache, no-store, must-revalidate\r\n\r\n",
    _book_json(1600),
)

_CHUNK = 4096
CHUNKED_64K = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"".join(b"%x\r\n" % _CHUNK + bytes([ord("a") + i]) * _CHUNK + b"\r\n" for i in range(16))
    + b"0\r\n\r\n"
)
CHUNKED_64K_BODY = b"".join(bytes([ord("a") + i]) * _CHUNK for i in range(16))

# case -> (response bytes, expected body, expected number of header lines)
PARSE_CASES = {
    "ticker-137": (TICKER_137, TICKER_137[TICKER_137.index(b"\r\n\r\n") + 4:], 2),
    "ticker-300": (TICKER_300, TICKER_300[TICKER_300.index(b"\r\n\r\n") + 4:], 5),
    "book-2k": (BOOK_2K, BOOK_2K[BOOK_2K.index(b"\r\n\r\n") + 4:], 10),
    "chunked-64k": (CHUNKED_64K, CHUNKED_64K_BODY, 2),
}
assert len(TICKER_137) == 137, len(TICKER_137)
assert 280 <= len(TICKER_300) <= 320, len(TICKER_300)
assert 1900 <= len(BOOK_2K) <= 2200, len(BOOK_2K)
assert len(CHUNKED_64K_BODY) == 65536

HOST = b"api.example.com"
USER_AGENT = b"fastpool/0.1"
ACCEPT = b"application/json"
GET_TARGET = b"/api/v3/ticker/price?symbol=BTCUSDT"
POST_TARGET = b"/api/v3/order"
POST_BODY = (b'{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT",'
             b'"quantity":"10","price":"64000"}')
assert len(POST_BODY) == 80, len(POST_BODY)
CONTENT_TYPE = (b"Content-Type", b"application/json")

EXPECTED_GET = (b"GET " + GET_TARGET + b" HTTP/1.1\r\nHost: " + HOST + b"\r\nUser-Agent: "
                + USER_AGENT + b"\r\nAccept: " + ACCEPT + b"\r\n\r\n")
EXPECTED_POST = (b"POST " + POST_TARGET + b" HTTP/1.1\r\nHost: " + HOST + b"\r\nUser-Agent: "
                 + USER_AGENT + b"\r\nAccept: " + ACCEPT + b"\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 80\r\n\r\n" + POST_BODY)

# ---- implementations --------------------------------------------------------------------------


def _engine(name: str):
    """The engine module, or a clean skip saying why it is not there."""
    if name == "c":
        try:
            return importlib.import_module("fastpool._engine._core")
        except ImportError as exc:
            pytest.skip(f"C engine not built (fastpool._engine._core: {exc}); "
                        "`make build` builds it")
    return importlib.import_module("fastpool._engine._pure")


def _peer(name: str):
    return pytest.importorskip(name, reason=f"{name} is not installed (pip install {name})")


# Rounds for the pedantic (one call per timed round) h11 benchmarks: ~0.5 s each.
_H11_ROUNDS = {"ticker-137": 20000, "ticker-300": 20000, "book-2k": 10000, "chunked-64k": 3000}


def _bench(benchmark, fn, *args):
    """benchmark(fn, *args) after a warm-up: pytest-benchmark calibrates iterations per round
    from the first call, and a cold first call longer than a round's target pins a 1 us call
    to one iteration per round, adding a perf_counter() read and a runner call to each."""
    for _ in range(_WARMUP):
        fn(*args)
    return benchmark(fn, *args)


_WARMUP = 300


def _headers_too(parse):
    def run(data):
        r = parse(data)
        r.headers  # materialise the (name, value) pairs, as httptools and h11 do
        return r
    return run


class _Collect:
    """httptools protocol: the callbacks a client needs to get status, headers and body."""

    __slots__ = ("headers", "body", "done")

    def __init__(self) -> None:
        self.headers: list = []
        self.body: list = []
        self.done = False

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_body(self, body):
        self.body.append(body)

    def on_message_complete(self):
        self.done = True


def _parse_httptools(httptools, data):
    c = _Collect()
    p = httptools.HttpResponseParser(c)
    feed, status, join = p.feed_data, p.get_status_code, b"".join

    def run():
        c.headers = []
        c.body = []
        c.done = False
        feed(data)
        if not c.done:
            raise AssertionError("httptools: message not complete")
        return status(), c.headers, join(c.body)

    return run


def _h11_request(h11):
    return h11.Request(method=b"GET", target=GET_TARGET,
                       headers=[(b"Host", HOST), (b"User-Agent", USER_AGENT), (b"Accept", ACCEPT)])


def _parse_h11(h11, data):
    conn = h11.Connection(h11.CLIENT)
    request = _h11_request(h11)
    Response, Data, EndOfMessage = h11.Response, h11.Data, h11.EndOfMessage

    end = h11.EndOfMessage()

    def setup():  # untimed: make the keep-alive connection ready for the next response
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        conn.send(request)
        conn.send(end)  # h11 wants the end of a bodiless request said explicitly
        return (), {}

    def run():
        conn.receive_data(data)
        status = headers = None
        body = []
        while True:
            ev = conn.next_event()
            t = type(ev)
            if t is Data:
                body.append(ev.data)
            elif t is Response:
                status, headers = ev.status_code, ev.headers
            elif t is EndOfMessage:
                return status, headers, b"".join(body)
            else:
                raise AssertionError(f"h11: unexpected event {ev!r}")

    return setup, run


# ---- benchmarks -------------------------------------------------------------------------------

PARSE_IMPLS = ["c", "c+headers", "python", "python+headers", "httptools", "h11"]


# The +headers rows are for the heads; chunked-64k is about the body.
@pytest.mark.parametrize("case,impl", [
    pytest.param(case, impl, id=f"{case}-{impl}")
    for case in PARSE_CASES for impl in PARSE_IMPLS
    if not (case == "chunked-64k" and impl.endswith("+headers"))
])
def test_parse(benchmark, case, impl):
    data, want_body, n_fields = PARSE_CASES[case]
    benchmark.group = f"parse {case}"
    benchmark.extra_info.update(case=f"parse {case} ({len(data)} B)", impl=impl)

    if impl in ("httptools", "h11"):
        mod = _peer(impl)
        if impl == "httptools":
            result = _bench(benchmark, _parse_httptools(mod, data))
        else:
            setup, run = _parse_h11(mod, data)
            result = benchmark.pedantic(run, setup=setup, rounds=_H11_ROUNDS[case],
                                        warmup_rounds=100)
    else:
        name, _, extra = impl.partition("+")
        parse = _engine(name).parse_response
        # The plain rows time the engine call itself, nothing wrapped around it.
        r = _bench(benchmark, _headers_too(parse) if extra else parse, data)
        result = r.status_code, (r.headers if extra else None), r.body

    status, headers, body = result
    assert status == 200, status
    assert len(body) == len(want_body) and body == want_body, (len(body), len(want_body))
    if headers is not None:
        assert len(list(headers)) == n_fields, list(headers)


BUILD_IMPLS = ["c", "python", "httptools", "h11"]


@pytest.mark.parametrize("impl", BUILD_IMPLS)
@pytest.mark.parametrize("case", ["GET", "POST"])
def test_build(benchmark, case, impl):
    benchmark.group = f"build {case}"
    benchmark.extra_info.update(
        case=f"build {case}" + (f" ({len(POST_BODY)} B body)" if case == "POST" else ""),
        impl=impl)
    expected = EXPECTED_GET if case == "GET" else EXPECTED_POST

    if impl == "httptools":
        _peer("httptools")
        pytest.skip("n/a: httptools parses only, it has no request writer")

    if impl == "h11":
        h11 = _peer("h11")
        Request, Data, EndOfMessage, Connection = h11.Request, h11.Data, h11.EndOfMessage, \
            h11.Connection
        base = [(b"Host", HOST), (b"User-Agent", USER_AGENT), (b"Accept", ACCEPT)]

        def setup():  # untimed: a connection in the state to send a request
            return (Connection(h11.CLIENT),), {}

        if case == "GET":
            def run(conn):  # h11 needs EndOfMessage to finish even a bodiless request
                send = conn.send
                return b"".join((
                    send(Request(method=b"GET", target=GET_TARGET, headers=base)),
                    send(EndOfMessage()),
                ))
        else:
            post_headers = base + [CONTENT_TYPE, (b"Content-Length", b"%d" % len(POST_BODY))]

            def run(conn):
                send = conn.send
                return b"".join((
                    send(Request(method=b"POST", target=POST_TARGET, headers=post_headers)),
                    send(Data(data=POST_BODY)),
                    send(EndOfMessage()),
                ))

        out = benchmark.pedantic(run, setup=setup, rounds=20000, warmup_rounds=100)
        # h11 writes names as given; compare case-insensitively in the head only.
        head, _, body = out.partition(b"\r\n\r\n")
        want_head, _, want_body = expected.partition(b"\r\n\r\n")
        assert sorted(head.lower().split(b"\r\n")) == sorted(want_head.lower().split(b"\r\n")), out
        assert body == want_body, out
        return

    engine = _engine(impl)
    # The pool's constant block, encoded once; Host is the pool's own line, not a block field.
    block = b"Host: " + HOST + b"\r\n" + engine.encode_header_block(
        [(b"User-Agent", USER_AGENT), (b"Accept", ACCEPT)])
    if case == "GET":
        args = (b"GET", GET_TARGET, block, (), None)
    else:
        args = (b"POST", POST_TARGET, block, [CONTENT_TYPE], POST_BODY)
    out = _bench(benchmark, engine.build_request, *args)  # the engine call itself, unwrapped
    assert out == expected, out


def test_overhead_pedantic_round(benchmark):
    """The constant inside every pedantic (h11) row: one timed round around an empty call."""
    benchmark.group = "overhead"
    benchmark.extra_info.update(case="overhead: pedantic round, empty call", impl="h11")

    def setup():
        return (), {}

    def run():
        return None

    assert benchmark.pedantic(run, setup=setup, rounds=20000, warmup_rounds=100) is None
