"""JSON with and without orjson: ``json=`` sends the same bytes, ``Response.json()`` returns
the same values, and what has no JSON form is an InvalidRequestError (NotSent)."""

from __future__ import annotations

import datetime
import enum
import json
import math
import os
import uuid
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.faults import respond

import fastpool
from fastpool._model import jsoncodec

#: CI installs the test extra, orjson included: a skip there would hide the fast path untested.
EXPECT_ORJSON = os.environ.get("FASTPOOL_EXPECT_C") == "1"


def _require_orjson() -> None:
    if jsoncodec._orjson is None:
        if EXPECT_ORJSON:
            pytest.fail("orjson was expected (FASTPOOL_EXPECT_C=1: the test extra has it)")
        pytest.skip("orjson is not installed")


@pytest.fixture(params=["orjson", "stdlib"])
def json_path(request, monkeypatch) -> str:
    """Runs the test with orjson's fast path, and again with the standard library only."""
    if request.param == "orjson":
        _require_orjson()
    else:
        monkeypatch.setattr(jsoncodec, "_orjson_dumps", None)
        monkeypatch.setattr(jsoncodec, "_orjson_loads", None)
    return request.param


class Color(enum.Enum):
    RED = "red"


class Side(str, enum.Enum):
    BUY = "BUY"


class Level(enum.IntEnum):
    TWO = 2


BODIES = [
    ({"symbol": "BTCUSDT", "qty": 1, "px": 0.1, "ok": True, "no": None},
     b'{"symbol":"BTCUSDT","qty":1,"px":0.1,"ok":true,"no":null}'),
    ({"s": "é€😀\u2028\x00\x1f\"\\/\n"}, '{"s":"é€😀\u2028\\u0000\\u001f\\"\\\\/\\n"}'.encode()),
    # floats as repr writes them: where orjson writes 1e-7, 1e16 or 0.00001 differently
    ([1e-07, 1e-05, 0.0001, 1e16, 1e22, 1.5e300, 5e-324, -0.0, 123456789.125, 1/3],
     b"[1e-07,1e-05,0.0001,1e+16,1e+22,1.5e+300,5e-324,-0.0,123456789.125,0.3333333333333333]"),
    # ints of any size (orjson alone refuses beyond 64 bits)
    ([2**63, 2**64 - 1, 2**64, -2**63 - 1, 2**200],
     ("[9223372036854775808,18446744073709551615,18446744073709551616,"
      f"-9223372036854775809,{2**200}]").encode()),
    # keys as json.dumps writes them (orjson alone refuses non-str keys)
    ({2: "a", 1.5: "b", True: "c", None: "d", "e": 1},
     b'{"2":"a","1.5":"b","true":"c","null":"d","e":1}'),
    # subclasses as their base type; enum members as their values; UUIDs as str
    ({"side": Side.BUY, "lvl": Level.TWO, "color": Color.RED, "id": uuid.UUID(int=1)},
     b'{"side":"BUY","lvl":2,"color":"red","id":"00000000-0000-0000-0000-000000000001"}'),
    ((1, [2, (3,)], {}), b"[1,[2,[3]],{}]"),
    ("null", b'"null"'),  # strings that look like what the fast path checks for
    ({"id": "1e5", "t": "0.00001", "n": "12345678901234567."},
     b'{"id":"1e5","t":"0.00001","n":"12345678901234567."}'),
    ([[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]], b"[" * 20 + b"]" * 20),
]


@pytest.mark.parametrize("value,expected", BODIES, ids=range(len(BODIES)))
def test_json_body_bytes(json_path, value, expected):
    assert jsoncodec.dumps(value) == expected


def test_deep_nesting(json_path):
    deep: list = []
    for _ in range(400):  # beyond orjson's own limit (254): the reference takes it
        deep = [deep]
    assert jsoncodec.dumps(deep) == b"[" * 401 + b"]" * 401


REFUSED = [
    (float("nan"), "NaN"), ({"p": float("inf")}, "NaN and infinities"), ([-math.inf], "NaN"),
    (Decimal("1.5"), "Decimal"), (datetime.datetime(2024, 1, 1), "datetime"),
    (datetime.date(2024, 1, 1), "date"), (b"raw", "bytes"), ({1, 2}, "set"),
    ({"s": "\ud800"}, "surrogate"), ({(1, 2): 1}, "keys"), (object(), "object"),
    (Color, "EnumType"),
]


@pytest.mark.parametrize("value,words", REFUSED, ids=range(len(REFUSED)))
def test_json_refusals(json_path, value, words):
    with pytest.raises(fastpool.InvalidRequestError) as info:
        jsoncodec.dumps(value)
    assert isinstance(info.value, fastpool.NotSentError) and info.value.code == "body_invalid"
    assert str(info.value).startswith("json: ") and words in str(info.value), str(info.value)


def test_circular_structure_is_refused(json_path):
    loop: list = []
    loop.append(loop)
    with pytest.raises(fastpool.InvalidRequestError, match="Circular"):
        jsoncodec.dumps(loop)


def _without_orjson(fn, *args):
    saved = jsoncodec._orjson_dumps, jsoncodec._orjson_loads
    jsoncodec._orjson_dumps = jsoncodec._orjson_loads = None
    try:
        return fn(*args)
    finally:
        jsoncodec._orjson_dumps, jsoncodec._orjson_loads = saved


def _outcome(fn, *args):
    try:
        return ("ok", fn(*args))
    except Exception as exc:  # noqa: BLE001 - the class and message are the outcome
        return (type(exc).__name__, str(exc))


_LEAVES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-2**70, max_value=2**70),
    st.floats(), st.floats(min_value=-1e-3, max_value=1e-3), st.floats(min_value=1e15),
    st.text(), st.sampled_from(["null", "1e5", "0.00001", "x" * 17 + ".", "12345678901234567."]),
)
_JSONISH = st.recursive(
    _LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.one_of(st.text(max_size=4), st.integers(), st.floats(), st.none(),
                                  st.booleans()), inner, max_size=4)),
    max_leaves=12)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSONISH)
def test_orjson_and_the_standard_library_send_the_same_bytes(value):
    _require_orjson()
    assert _outcome(jsoncodec.dumps, value) == _without_orjson(_outcome, jsoncodec.dumps, value)


RECEIVED = [
    b'{"orderId":12345678901234567890123,"t":1700000000000123456}',  # beyond 64 bits
    b"[18446744073709551616,-9223372036854775809,9223372036854775807]",
    b'{"p":0.1,"q":1e-7,"r":1E400,"s":-0.0,"t":1.0000000000000000000000001}',
    b'{"a":1,"a":2}',                      # duplicate keys: the last one wins
    b"[NaN,Infinity,-Infinity]",           # not JSON, but json.loads reads them
    b'"\\ud800"',                          # a lone surrogate escape
    b"\xef\xbb\xbf{}",                     # a UTF-8 BOM
    '{"a":"é"}'.encode("utf-16"),          # UTF-16 with a BOM
    b'{"a":"\xff"}',                       # invalid UTF-8: refused by both
    b"",                                   # refused by both
    b'{"a":',                              # refused by both
    b'{"id":"123456789012345678901234"}',  # a long digit run in a string
]


def _loaded(content):
    try:
        value = jsoncodec.loads(content)
    except ValueError as exc:  # json.JSONDecodeError, orjson's (a subclass), UnicodeDecodeError
        return ("error", isinstance(exc, json.JSONDecodeError) or isinstance(exc, UnicodeError))
    return ("ok", repr(value))  # repr: NaN != NaN, and -0.0 == 0.0


@pytest.mark.parametrize("content", RECEIVED, ids=range(len(RECEIVED)))
def test_orjson_and_the_standard_library_read_the_same_values(content):
    _require_orjson()
    assert _loaded(content) == _without_orjson(_loaded, content)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_JSONISH)
def test_any_body_reads_the_same(value):
    _require_orjson()
    content = json.dumps(value).encode()  # what a server may send: NaN, big ints included
    assert _loaded(content) == _without_orjson(_loaded, content)


def test_big_ints_stay_ints(json_path):
    assert jsoncodec.loads(b'{"id":12345678901234567890123}') == {"id": 12345678901234567890123}
    assert type(jsoncodec.loads(b"[18446744073709551616]")[0]) is int


def test_json_body_on_the_wire(fault_server, make_pool, json_path):
    server = fault_server(respond(body=b'{"orderId":12345678901234567890123,"p":1e-7}'))
    pool = make_pool(server.url("/"), connections=1)
    r = pool.post("/order", json={1: 2**70, "p": 1e-07, "s": "é", "side": Side.BUY})
    assert r.json() == {"orderId": 12345678901234567890123, "p": 1e-07}
    with pytest.raises(fastpool.InvalidRequestError):
        pool.post("/order", json={"price": float("nan")})
    server.wait_for_requests(1)
    (req,) = server.requests
    assert req.body == '{"1":1180591620717411303424,"p":1e-07,"s":"é","side":"BUY"}'.encode()
    assert req.header("Content-Type") == "application/json"
