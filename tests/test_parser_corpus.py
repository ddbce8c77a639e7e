"""Every case of tests/parser_cases.py on every engine: fed whole, byte by byte, and split in
two at every offset. The outcome may not depend on how the bytes arrived (fp_http.h)."""

from __future__ import annotations

from array import array

import pytest
from parser_cases import CASES, Result

from fastpool._model.errors import ProtocolError
from fastpool._model.limits import DEFAULT_LIMITS

EOF_ERRORS = ("truncated", "no_response")


def new_parser(engine, case):
    return engine.ResponseParser(head_request=case.head_request,
                                 limits=case.limits or DEFAULT_LIMITS)


def run(engine, case, pieces):
    """Feeds pieces, then EOF when the response is not complete; checks when completion is
    reported. Returns the RawResponse or the ProtocolError code."""
    p = new_parser(engine, case)
    expected = case.expected
    # Where the response ends in raw: feed() must say True exactly from there on.
    if isinstance(expected, Result) and not expected.close_delimited:
        end = len(case.raw) - len(expected.trailing)
    else:
        end = None
    fed = 0
    try:
        for piece in pieces:
            fed += len(piece)
            done = p.feed(piece)
            assert done == (end is not None and fed >= end), (fed, end)
            assert p.complete == done
    except ProtocolError as exc:
        assert exc.code not in EOF_ERRORS, "feed() raised an end-of-input error"
        return exc.code
    if not p.complete:
        try:
            assert p.feed_eof() is True
        except ProtocolError as exc:
            assert exc.code in EOF_ERRORS, "feed_eof() raised an error feed() should have"
            return exc.code
    assert p.complete
    return p.result()


def check(outcome, case):
    expected = case.expected
    if isinstance(expected, str):
        assert outcome == expected
        return
    assert not isinstance(outcome, str), f"unexpected error {outcome!r}"
    got = (outcome.status_code, outcome.http_version, outcome.reason, outcome.headers,
           outcome.body, outcome.keep_alive, outcome.interim, outcome.trailing)
    assert got == tuple(expected[:8])
    for value in (outcome.reason, outcome.head, outcome.body, outcome.trailing):
        assert type(value) is bytes
    # head is the final head as received; spans are offsets into it and give the headers.
    head = outcome.head
    assert head in case.raw
    assert head.startswith(b"%s %d" % (expected.version.encode(), expected.status))
    assert head.endswith(b"\n\n") or head.endswith(b"\n\r\n")
    spans = array("I")
    spans.frombytes(outcome.spans)
    assert len(spans) == 4 * len(expected.headers)
    decoded = [
        (head[spans[i]:spans[i] + spans[i + 1]], head[spans[i + 2]:spans[i + 2] + spans[i + 3]])
        for i in range(0, len(spans), 4)
    ]
    assert decoded == expected.headers


@pytest.fixture(params=CASES, ids=[c.id for c in CASES])
def case(request):
    return request.param


def test_whole(engine, case):
    check(run(engine, case, [case.raw]), case)


def test_byte_by_byte(engine, case):
    raw = case.raw
    check(run(engine, case, [raw[i:i + 1] for i in range(len(raw))]), case)


def test_every_split(engine, case):
    raw = case.raw
    for i in range(len(raw) + 1):
        check(run(engine, case, [raw[:i], raw[i:]]), case)


def test_parse_response_one_shot(engine, case):
    limits = case.limits or DEFAULT_LIMITS
    try:
        outcome = engine.parse_response(case.raw, head_request=case.head_request, limits=limits,
                                         eof=True)
    except ProtocolError as exc:
        outcome = exc.code
    check(outcome, case)
    if isinstance(case.expected, Result) and case.expected.close_delimited:
        # Without eof a close-delimited response is never complete.
        assert engine.parse_response(case.raw, head_request=case.head_request,
                                      limits=limits) is None


ERROR_CASES = [c for c in CASES if isinstance(c.expected, str)]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c.id for c in ERROR_CASES])
def test_failed_parser_stays_failed(engine, case):
    p = new_parser(engine, case)
    with pytest.raises(ProtocolError) as first:
        p.feed(case.raw)
        p.feed_eof()
    assert first.value.code == case.expected
    assert not p.complete
    for call in (lambda: p.feed(b"HTTP/1.1 200 OK\r\n\r\n"), p.feed_eof, lambda: p.feed(b""),
                 p.result):
        with pytest.raises(ProtocolError) as again:
            call()
        assert again.value.code == case.expected


def test_incomplete_then_more_data(engine):
    # NEED_MORE is not a state: a parser that said False keeps going when bytes arrive.
    p = engine.ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nContent-Le") is False
    assert p.feed(b"") is False
    assert p.feed(b"ngth: 3\r\n\r\nab") is False
    assert p.feed(b"cdef") is True
    assert p.feed(b"gh") is True  # after completion, bytes go to trailing
    r = p.result()
    assert (r.body, r.trailing) == (b"abc", b"defgh")
    assert p.feed_eof() is True


def test_input_buffer_may_be_reused(engine):
    # The caller's receive buffer is reused between reads; the parser must have copied it.
    buf = bytearray(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
    p = engine.ResponseParser()
    assert p.feed(buf) is False
    buf[:] = b"cd"
    assert p.feed(buf) is True
    buf[:] = b"\x00" * len(buf)
    r = p.result()
    assert (r.status_code, r.body, r.headers) == (200, b"abcd", [(b"Content-Length", b"4")])


def test_memoryview_input(engine):
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
    p = engine.ResponseParser()
    assert p.feed(memoryview(data)[:10]) is False
    assert p.feed(memoryview(data)[10:]) is True
    assert p.result().body == b"hi"


def test_parse_response_incomplete_is_none(engine):
    assert engine.parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab") is None
    assert engine.parse_response(b"") is None
