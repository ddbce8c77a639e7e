"""The C engine builds fastpool.Response by writing its slots directly; this must stay true
(a change to Response's layout would silently cost ~0.45 us per request) and be exact."""

import sys

import pytest
from conftest import load_engine

from fastpool._model.response import Response, ResponseContext


@pytest.fixture
def core():
    return load_engine("c")


RAW = (200, 1, b"HTTP/1.1 200 OK\r\nA: b\r\n\r\n", b"", b"body", 13, 2, 1, 2, 3, 4)


def test_fastpool_response_uses_direct_slots(core):
    assert core.response_layout_direct(Response)


def test_direct_build_is_exact(core):
    ctx = (ResponseContext(None, None, None), "GET", b"/x", 0)
    r = core.new_response(Response, RAW, ctx)
    assert type(r) is Response
    assert (r.status_code, r.content, r._raw, r._ctx) == (200, b"body", RAW, ctx)
    assert sys.getrefcount(r) == 2
    before = sys.getrefcount(RAW)
    del r
    assert sys.getrefcount(RAW) == before - 1


class Other:
    # Another class with object slots of the same names, at other offsets.
    __slots__ = ("extra", "_ctx", "_raw", "content", "status_code")


class Dynamic:  # no __slots__: attributes live in __dict__, built through setattr
    pass


def test_layout_follows_the_class(core):
    assert core.response_layout_direct(Other)
    assert not core.response_layout_direct(Dynamic)
    for cls in (Other, Response, Dynamic, Other):
        r = core.new_response(cls, RAW, ("ctx",))
        assert type(r) is cls
        assert (r.status_code, r.content, r._raw, r._ctx) == (200, b"body", RAW, ("ctx",))
