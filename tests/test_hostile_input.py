"""Hostile and odd input from the caller: query parameters, headers, URLs and timeouts.

Every refusal is an InvalidRequestError (NotSent) that names the field, with the same class
and message on both engines; nothing refused reaches the wire, and no URL can make a
request go to another host or carry a header of its own.
"""

from __future__ import annotations

import enum
import math
import time
from decimal import Decimal

import pytest
from conftest import load_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import faults
from support.faults import respond, stall_after_request

import fastpool
from fastpool._model.headers import encode_fields
from fastpool._model.request import RequestBuilder
from fastpool._model.url import build_target, parse_origin


class Side(str, enum.Enum):
    BUY = "BUY"


class Level(enum.IntEnum):
    TWO = 2


def _outcome(encode, params):
    """What an encoder does with params: ("ok", bytes) or (class name, code, message)."""
    try:
        return ("ok", encode(params))
    except Exception as exc:  # noqa: BLE001 - the class is part of the outcome compared
        return (type(exc).__name__, getattr(exc, "code", None), str(exc))


# --- query parameters: what each value becomes -------------------------------------------


GOOD_PARAMS = [
    ({"symbol": "BTCUSDT", "qty": 3, "flag": True, "off": False, "x": None},
     b"symbol=BTCUSDT&qty=3&flag=true&off=false&x="),
    # floats: repr's shortest digits, never an exponent (exchanges' patterns refuse "1e-07")
    ({"p": 0.1, "q": 1e-07, "r": 1.5e-10, "s": 1e22, "t": -0.0, "u": 123456789.125},
     b"p=0.1&q=0.0000001&r=0.00000000015&s=10000000000000000000000&t=-0.0&u=123456789.125"),
    ({"p": 1e16, "q": 0.0001, "r": 0.00001}, b"p=10000000000000000&q=0.0001&r=0.00001"),
    # Decimals fixed-point, as written (trailing zeros kept: a price's tick size)
    ({"price": Decimal("0.00001000"), "q": Decimal("1E-7"), "r": Decimal("1.5E+3"),
      "s": Decimal("-0")}, b"price=0.00001000&q=0.0000001&r=1500&s=-0"),
    # enums through their base type: a str enum is its value, an IntEnum its digits
    ({"side": Side.BUY, "level": Level.TWO, Side.BUY: 1}, b"side=BUY&level=2&BUY=1"),
    ({"ids": [1, 2.5, Decimal("3.0")], "t": ("a b", None)}, b"ids=1&ids=2.5&ids=3.0&t=a%20b&t="),
    ({1: "int key", None: "none key"}, b"1=int%20key&=none%20key"),
    ([("a", "1"), ["b", "2"]], b"a=1&b=2"),
    ({"big": 2**70}, b"big=1180591620717411303424"),
    ({"k": "a\r\nX-Injected: 1", "#": "?&="}, b"k=a%0D%0AX-Injected%3A%201&%23=%3F%26%3D"),
    ("?already=encoded", b"already=encoded"),
    (memoryview(b"?a=1"), b"a=1"),
    ({}, b""),
]


@pytest.mark.parametrize("params,expected", GOOD_PARAMS, ids=range(len(GOOD_PARAMS)))
def test_query_values(engine, params, expected):
    assert engine.encode_query(params) == expected
    assert fastpool.encode_query(params) == expected.decode()


BAD_PARAMS = [
    # (params, code, words the message must hold)
    ({"k": object()}, "params_invalid", ["'k'", "object"]),
    ({"k": float("nan")}, "params_invalid", ["'k'", "nan", "finite"]),
    ({"k": float("-inf")}, "params_invalid", ["'k'", "-inf"]),
    ({"k": Decimal("NaN")}, "params_invalid", ["'k'", "NaN"]),
    ({"k": Decimal("Infinity")}, "params_invalid", ["'k'", "Infinity"]),
    ({"k": b"raw"}, "params_invalid", ["'k'", "bytes", "decode"]),
    ({"k": bytearray(b"raw")}, "params_invalid", ["'k'", "bytearray"]),
    ({"k": {"nested": 1}}, "params_invalid", ["'k'", "dict"]),
    ({"k": [1, [2]]}, "params_invalid", ["'k'", "list or tuple", "list"]),
    ({"k": {1, 2}}, "params_invalid", ["'k'", "set"]),
    ({"k": 3 + 4j}, "params_invalid", ["'k'", "complex"]),
    ({"k": 10**5000}, "params_invalid", ["'k'", "digits"]),
    ({"k": "\ud800"}, "params_invalid", ["'k'", "UTF-8"]),
    ({"\udfff": 1}, "params_invalid", ["UTF-8"]),
    ({b"name": 1}, "params_invalid", ["name", "bytes"]),
    ({(1, 2): 1}, "params_invalid", ["name", "tuple"]),
    ([("a",)], "params_invalid", ["pairs", "length 1"]),
    ([("a", 1, 2)], "params_invalid", ["pairs", "length 3"]),
    (["ab"], "params_invalid", ["pairs", "str"]),
    ([1], "params_invalid", ["pairs", "int"]),
    ([None], "params_invalid", ["pairs", "NoneType"]),
    (5, "params_invalid", ["params", "int"]),
    (object(), "params_invalid", ["params", "object"]),
    ("a=ü", "target_invalid", ["ASCII"]),
]


@pytest.mark.parametrize("params,code,words", BAD_PARAMS, ids=range(len(BAD_PARAMS)))
def test_query_refusals(engine, params, code, words):
    with pytest.raises(fastpool.InvalidRequestError) as info:
        engine.encode_query(params)
    exc = info.value
    assert isinstance(exc, fastpool.NotSentError) and isinstance(exc, ValueError)
    assert exc.code == code
    for word in words:
        assert word in str(exc), (word, str(exc))


@pytest.mark.parametrize("params,code,words", BAD_PARAMS, ids=range(len(BAD_PARAMS)))
def test_both_engines_refuse_alike(params, code, words):
    c, py = load_engine("c"), load_engine("python")
    assert _outcome(c.encode_query, params) == _outcome(py.encode_query, params)


def test_form_bodies_say_data(engine):
    with pytest.raises(fastpool.InvalidRequestError) as info:
        fastpool.encode_form({"qty": float("nan")})
    assert info.value.code == "body_invalid"
    assert str(info.value).startswith("data: parameter 'qty'")
    assert fastpool.encode_form({"price": Decimal("1.10")}) == b"price=1.10"


_SCALARS = st.one_of(
    st.text(max_size=8), st.integers(), st.integers(min_value=-2**80, max_value=2**80),
    st.floats(), st.floats(width=32), st.decimals(), st.booleans(), st.none(),
    st.binary(max_size=4), st.sampled_from([Side.BUY, Level.TWO, object(), 1j]),
)
_VALUES = st.one_of(_SCALARS, st.lists(_SCALARS, max_size=3), st.tuples(_SCALARS),
                    st.dictionaries(st.text(max_size=2), _SCALARS, max_size=1))
_KEYS = st.one_of(st.text(max_size=6), st.integers(), st.none(), st.booleans(), st.floats(),
                  st.binary(max_size=2))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(_KEYS, _VALUES), max_size=5))
def test_engines_agree_on_any_params(pairs):
    """The C encoder's own fast paths and the shared rule give the same bytes, and the same
    error, for anything a caller may pass (as pairs, and as a dict)."""
    c, py = load_engine("c"), load_engine("python")
    assert _outcome(c.encode_query, pairs) == _outcome(py.encode_query, pairs)
    try:
        as_dict = dict(pairs)
    except TypeError:  # an unhashable key
        return
    assert _outcome(c.encode_query, as_dict) == _outcome(py.encode_query, as_dict)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                 st.decimals(allow_nan=False, allow_infinity=False)))
def test_numbers_read_back_exactly_and_without_exponent(value):
    text = load_engine("python").encode_query({"v": value}).decode()[2:]
    assert "e" not in text.lower()
    assert text.lstrip("-").replace(".", "", 1).isdigit()
    assert type(value)(text) == value
    assert load_engine("c").encode_query({"v": value}).decode()[2:] == text


# --- request headers ------------------------------------------------------------------------


BAD_HEADERS = [
    ({"X-MBX-APIKEY": None}, "header_value_invalid", ["'X-MBX-APIKEY'", "None", "omit"]),
    ({"X-A": True}, "header_value_invalid", ["'X-A'", "bool"]),
    ({"X-A": ["a", "b"]}, "header_value_invalid", ["'X-A'", "list"]),
    ({"X-A": object()}, "header_value_invalid", ["'X-A'", "object"]),
    ({b"X-A": {"a": 1}}, "header_value_invalid", ["'X-A'", "dict"]),
    ({"X-A": "\ud800"}, "header_value_invalid", ["'X-A'", "UTF-8"]),
    ({None: "v"}, "header_name_invalid", ["name", "None"]),
    ({1: "v"}, "header_name_invalid", ["name", "int"]),
    ([("X-A",)], "header_name_invalid", ["pairs", "tuple"]),
    ([("X-A", "v", "w")], "header_name_invalid", ["pairs", "tuple"]),
    (["ab"], "header_name_invalid", ["pairs", "str"]),
    ("X-A: v", "header_name_invalid", ["headers", "str"]),
    (5, "header_name_invalid", ["headers", "int"]),
]


@pytest.mark.parametrize("headers,code,words", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
def test_header_refusals(headers, code, words):
    with pytest.raises(fastpool.InvalidRequestError) as info:
        encode_fields(headers)
    assert info.value.code == code
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_header_values_that_are_accepted():
    assert encode_fields({"A": "v", "B": b"w", "C": 5, "D": 1.5, "E": bytearray(b"x"),
                          "F": memoryview(b"y"), "G": Side.BUY, Side.BUY: "z", "H": "é"}) == [
        (b"A", b"v"), (b"B", b"w"), (b"C", b"5"), (b"D", b"1.5"), (b"E", b"x"), (b"F", b"y"),
        (b"G", b"BUY"), (b"BUY", b"z"), (b"H", "é".encode())]


# --- through the pools: nothing refused reaches the wire ------------------------------------


REFUSED_CALLS = {
    "params-object": (lambda p: p.get("/", params={"symbol": object()}), "'symbol'"),
    "params-nan": (lambda p: p.post("/", params={"price": float("nan")}), "'price'"),
    "params-bytes": (lambda p: p.get("/", params={"sig": b"\x00"}), "'sig'"),
    "params-nested": (lambda p: p.get("/", params={"ids": [[1]]}), "'ids'"),
    "params-bad-pair": (lambda p: p.get("/", params=[("a",)]), "pairs"),
    "header-none": (lambda p: p.post("/", headers={"X-MBX-APIKEY": None}), "'X-MBX-APIKEY'"),
    "header-list": (lambda p: p.get("/", headers={"X-A": ["v"]}), "'X-A'"),
    "header-name-none": (lambda p: p.get("/", headers={None: "v"}), "name"),
    "json-nan": (lambda p: p.post("/", json={"price": float("inf")}), "NaN"),
    "json-decimal": (lambda p: p.post("/", json={"price": Decimal("1")}), "Decimal"),
    "url-bytes": (lambda p: p.get(b"/x"), "str"),
    "url-upper-scheme-elsewhere": (lambda p: p.get("HTTP://evil.example/x"), "origin"),
    "url-network-path": (lambda p: p.get("//evil.example/x"), "network-path"),
    "url-crlf": (lambda p: p.get("/x\r\nX-Injected: 1"), "control character"),
}


def test_refused_input_never_reaches_the_wire(fault_server, make_pool):
    server = fault_server(respond())
    pool = make_pool(server.url("/"), connections=1)
    for name, (call, words) in REFUSED_CALLS.items():
        with pytest.raises(fastpool.InvalidRequestError) as info:
            call(pool)
        exc = info.value
        assert isinstance(exc, fastpool.NotSentError), name
        assert words in str(exc), (name, str(exc))
    assert pool.get("/after").status_code == 200
    server.wait_for_requests(1)
    assert [q.target for q in server.requests] == ["/after"]
    assert bytes(server.connections[0].received) == server.requests[0].raw


def test_pool_headers_with_a_none_value_fail_construction(fault_server, make_pool):
    server = fault_server(respond())
    with pytest.raises(fastpool.InvalidRequestError) as info:
        make_pool(server.url("/"), connections=1, headers={"X-MBX-APIKEY": None})
    assert "'X-MBX-APIKEY'" in str(info.value)
    assert server.connection_count == 0


def test_decimal_float_and_enum_params_on_the_wire(fault_server, make_pool):
    server = fault_server(respond())
    pool = make_pool(server.url("/"), connections=1)
    pool.post("/order", params={"price": Decimal("0.00001000"), "qty": 1e-07, "side": Side.BUY},
              headers={"X-Qty": 5})
    server.wait_for_requests(1)
    req = server.requests[0]
    assert req.target == "/order?price=0.00001000&qty=0.0000001&side=BUY"
    assert req.header("X-Qty") == "5"


# --- URLs: nothing reaches another host, nothing smuggles a header --------------------------


#: url -> the target sent (pool base path "/api"), or the words of the InvalidURL refusing it
HOSTILE_URLS = {
    "/v3/order": "/api/v3/order",
    "v3/order": "/api/v3/order",
    "v3/orders:cancel": "/api/v3/orders:cancel",   # a colon in a path is no scheme
    "/a b/é": "/api/a%20b/%C3%A9",                  # percent-encoded, as httpx does
    "/x?a=1#frag": "/api/x?a=1",
    " http://evil.example/": "/api/%20http://evil.example/",  # a path on this host
    "\\\\evil.example\\x": "/api/\\\\evil.example\\x",       # a path on this host
    "{origin}/x?a=1": "/x?a=1",                   # absolute: the whole target
    "{ORIGIN}/x": "/x",                           # upper-case scheme and host: same origin
    "{origin}": "/",
    "{origin}#x": "/",
    "HTTP://evil.example/x": "is not on this pool's origin",
    "http://evil.example/x": "is not on this pool's origin",
    "https://{hostport}/x": "is not on this pool's origin",    # another scheme, same host
    "http://127.0.0.2:{port}/x": "is not on this pool's origin",
    "http://[::1]:{port}/x": "is not on this pool's origin",
    "http://{hostport}@evil.example/x": "credentials",
    "http://evil.example\\@{hostport}/x": "credentials",
    "http://user:hunter2@{hostport}/x": "credentials",
    "http://{hostport}\\evil.example/x": "is not on this pool's origin",
    "ftp://{hostport}/x": "http or https",
    "javascript://{hostport}/x": "http or https",
    "http:evil.example/x": "without //",
    "HTTPS:/evil.example/x": "without //",
    "//evil.example/x": "network-path reference",
    "///x": "network-path reference",
    "/x\r\nX-Injected: 1": "control character '\\r'",
    "/x\nX-Injected: 1": "control character '\\n'",
    "{origin}/x\r\nX-Injected: 1": "control character '\\r'",   # urlsplit would drop CR LF
    "{origin}/a\tb": "control character '\\t'",
    "/x\x00y": "control character '\\x00'",
    "/x\x7f": "control character '\\x7f'",
    "/x\x1b[31m": "control character '\\x1b'",
}


def _hostile(server):
    origin = server.url("").rstrip("/")
    hostport = origin.split("://", 1)[1]
    for url, expected in HOSTILE_URLS.items():
        yield (url.format(origin=origin, ORIGIN=origin.upper(), hostport=hostport,
                          port=server.port), expected)


@pytest.mark.parametrize("engine_name", ["c", "python"])
def test_hostile_targets_in_the_writer(fault_server, engine_name):
    """Unit level, both engines: each accepted URL becomes exactly one request line and the
    pool's own two header lines; each refused one is InvalidURL (NotSent)."""
    engine = load_engine(engine_name)
    server = fault_server(respond())
    builder = RequestBuilder(parse_origin(server.url("/api")), engine)
    for url, expected in _hostile(server):
        if expected.startswith("/"):
            data = builder.prepare("GET", url).data
            lines = data.split(b"\r\n")
            assert lines[0] == f"GET {expected} HTTP/1.1".encode(), url
            assert [line.split(b":")[0] for line in lines[1:-2]] == [b"Host", b"User-Agent"]
            assert lines[1] == b"Host: " + server.url("").split("://")[1].rstrip("/").encode()
        else:
            with pytest.raises(fastpool.InvalidURL) as info:
                builder.prepare("GET", url)
            assert isinstance(info.value, fastpool.NotSentError)
            assert expected in str(info.value), (url, str(info.value))
            assert "hunter2" not in str(info.value)


def test_hostile_targets_through_the_pool(fault_server, make_pool):
    server = fault_server(respond())
    pool = make_pool(server.url("/api"), connections=1)
    sent = []
    for url, expected in _hostile(server):
        if expected.startswith("/"):
            assert pool.get(url).headers["x-request-target"] == expected
            sent.append(expected)
        else:
            with pytest.raises(fastpool.InvalidURL):
                pool.get(url)
    server.wait_for_requests(len(sent))
    assert server.connection_count == 1  # every accepted URL went down the pool's connection
    requests = server.requests
    assert [q.target for q in requests] == sent
    assert all(q.header("X-Injected") is None for q in requests)
    assert bytes(server.connections[0].received) == b"".join(q.raw for q in requests)


def test_unhashable_urls_and_methods_are_typed_refusals(fault_server, make_pool):
    server = fault_server(respond())
    pool = make_pool(server.url("/"), connections=1)
    for url in (["/x"], {"a": 1}, b"/x", None):
        with pytest.raises(fastpool.InvalidURL):
            pool.get(url)
    for method in (["GET"], {"GET": 1}, None):
        with pytest.raises(fastpool.InvalidRequestError, match="method"):
            pool.request(method, "/x")
    assert pool.get("/after").status_code == 200
    server.wait_for_requests(1)
    assert [q.target for q in server.requests] == ["/after"]


def test_error_requests_are_redacted_with_the_pools_names(fault_server, make_pool):
    server = fault_server(faults.close_after_request())
    pool = make_pool(server.url("/"), connections=1, redact=["myToken"])
    with pytest.raises(fastpool.MaybeSentError) as info:
        pool.post("/order?mytoken=abc", params={"signature": "s3cr3t", "symbol": "BTC"},
                  content=b"x")
    request = info.value.request
    assert "s3cr3t" not in request.url and "abc" not in request.url
    assert "symbol=BTC" in request.url
    assert b"signature=s3cr3t" in request.target  # exactly as sent, for who needs it
    assert "s3cr3t" not in repr(info.value) and "s3cr3t" not in str(info.value)


def test_build_target_refuses_non_str():
    origin = parse_origin("http://127.0.0.1:1")
    for url in (b"/x", None, 5):
        with pytest.raises(fastpool.InvalidURL):
            build_target(origin, url)


def test_absolute_url_with_a_unicode_host_is_its_idna_origin():
    origin = parse_origin("https://bücher.example/api")
    assert origin.host == "xn--bcher-kva.example"
    assert build_target(origin, "https://BÜCHER.example/x") == b"/x"
    assert build_target(origin, "https://xn--bcher-kva.example:443/x") == b"/x"


# --- Timeout(total=...) alone ---------------------------------------------------------------


def test_a_total_alone_is_a_timeout():
    t = fastpool.Timeout(total=0.5)
    assert t == fastpool.Timeout(0.5, total=0.5)
    assert (t.connect, t.write, t.read, t.pool, t.total) == (0.5, 0.5, 0.5, 0.5, 0.5)
    assert t.total_ns == 500_000_000 and t.read_ns == 500_000_000
    # a phase given explicitly keeps its value, None included
    t = fastpool.Timeout(total=2.0, connect=None, read=0.25)
    assert (t.connect, t.write, t.read, t.pool, t.total) == (None, 2.0, 0.25, 2.0, 2.0)
    assert fastpool.Timeout(None, total=1.0).read is None  # an explicit default wins
    with pytest.raises(ValueError, match="a total"):
        fastpool.Timeout(connect=1.0)
    with pytest.raises(ValueError):
        fastpool.Timeout(total=-1)
    with pytest.raises(ValueError):
        fastpool.Timeout(total=math.nan)


def test_a_total_alone_bounds_a_request(fault_server, make_pool):
    server = fault_server(stall_after_request(hold=10.0))
    pool = make_pool(server.url("/"), connections=1, timeout=fastpool.Timeout(total=0.5))
    start = time.monotonic()
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/stall")
    assert time.monotonic() - start < 3.0  # generous: the 0.5 s deadline held
    assert isinstance(info.value, fastpool.MaybeSentError)
