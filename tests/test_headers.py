"""Response headers: looked up one name at a time by the engine, or decoded whole; the same
answers either way, on both engines."""

from __future__ import annotations

import pytest

from fastpool._model.headers import Headers

HEAD = (b"HTTP/1.1 200 OK\r\n"
        b"Content-Type: application/json;charset=UTF-8\r\n"
        b"X-MBX-USED-WEIGHT-1M: 7\r\n"
        b"Set-Cookie: a=1\r\n"
        b"set-cookie: b=2\r\n"
        b"X-Empty:\r\n"
        b"X-Latin: caf\xe9\r\n"
        b"Content-Length: 2\r\n\r\n")


@pytest.fixture
def headers(engine):
    raw = engine.parse_response(HEAD + b"{}")
    return engine, raw, Headers._lazy(engine.decode_headers, engine.header_values, raw.head,
                                      raw.spans)


@pytest.mark.parametrize("name,values", [
    ("x-mbx-used-weight-1m", ["7"]),
    ("X-MBX-Used-Weight-1M", ["7"]),
    ("set-cookie", ["a=1", "b=2"]),
    ("SET-COOKIE", ["a=1", "b=2"]),
    ("x-empty", [""]),
    ("x-latin", ["caf\xe9"]),
    ("content-length", ["2"]),
    ("missing", []),
    ("x-mbx-used-weight-1", []),      # a prefix is not a match
    ("\u20ac", []),                   # not latin-1: no field can be named so
])
def test_single_lookups_match_the_full_decode(headers, name, values):
    engine, raw, h = headers
    assert engine.header_values(raw.head, raw.spans, name.lower().encode("latin-1", "replace")) \
        == (values if name != "\u20ac" else [])
    assert h.get_list(name) == values
    assert (name in h) == bool(values)
    if values:
        assert h[name] == ", ".join(values)
    else:
        with pytest.raises(KeyError):
            h[name]
        assert h.get(name, "default") == "default"
    full = Headers(raw.headers)  # decoded whole, for comparison
    assert full.get_list(name) == values


def test_lookups_do_not_decode_everything_until_needed(headers):
    _, _, h = headers
    assert h["content-type"] == "application/json;charset=UTF-8"
    assert h._items is None  # still lazy
    assert len(h) == 6 and h._items is not None  # iteration needs everything
    assert h.get_list("set-cookie") == ["a=1", "b=2"]  # served by the index now
