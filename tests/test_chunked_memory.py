"""A chunked body's framing costs no memory once consumed (issue 10, defect 3).

Limits.max_body_size bounds decoded bytes; nothing bounds framing (a 1-byte chunk may carry an
8 KB extension, a body may be a million 1-byte chunks). So a parser must keep only what it has
not consumed yet plus the decoded body, however the bytes arrive: the C decoder moves decoded
data down over the framing in place; the pure one drops consumed input after each feed() and
folds its decoded slices into blocks. These tests measure that, and check that the machinery
changes no result: many chunks (more than the pure parser folds at once), extensions,
trailers and late errors, fed whole, byte by byte, in pieces and split at every point, give
the same outcome on both engines.

The pure parser is measured with tracemalloc (its every allocation is a Python object); the C
parser's buffer is malloc()ed, invisible to tracemalloc, so it is measured by resident memory
against an input 16x the bound.
"""

from __future__ import annotations

import gc
import os
import tracemalloc

import pytest
from conftest import load_engine

from fastpool._model.errors import ProtocolError
from fastpool._model.limits import Limits

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
LAST = b"0\r\n\r\n"


def feed_all(parser, data, step):
    """Feeds data in pieces of step bytes (the pieces are bytes, as recv() returns)."""
    done = False
    for i in range(0, len(data), step):
        done = parser.feed(data[i:i + step])
    return done


def traced_peak(fn) -> int:
    """Peak bytes allocated by fn(), beyond what was allocated before it ran."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# ---- pure engine: tracemalloc --------------------------------------------------------------

# 1-byte chunks with 1000-byte extensions: ~1 KB of framing per decoded byte.
EXT_CHUNK = b"1;" + b"e" * 1000 + b"\r\nx\r\n"


@pytest.mark.parametrize("step", [1, 7, 4096, 65536], ids=lambda s: f"step{s}")
def test_pure_framing_is_released_when_fed_in_pieces(step):
    """The base commit kept every byte of framing: peak >= the input (~150 KB byte by byte,
    ~2 MB otherwise). Now: the partial line being read, the piece (and its copy into the
    buffer), the decoded body: ~7 KB byte by byte, ~2 x step + 15 KB in pieces."""
    engine = load_engine("python")
    chunks = {1: 150, 7: 300}.get(step, 2000)
    data = HEAD + EXT_CHUNK * chunks + LAST
    results = []

    def run():
        p = engine.ResponseParser()
        assert feed_all(p, data, step)
        results.append(p.result().body)

    peak = traced_peak(run)
    assert results == [b"x" * chunks]
    assert peak < 2 * step + 64 * 1024, (peak, len(data))


@pytest.mark.parametrize("how", ["whole", "bytes"])
def test_pure_tiny_chunks_cost_no_object_each(how):
    """2-byte chunks: the base commit kept one slice object per chunk (~48 bytes each, ~7x
    the wire bytes, ~24x the decoded bytes); now decoded slices are folded into blocks."""
    engine = load_engine("python")
    chunks = 30_000 if how == "whole" else 5_000
    data = HEAD + b"2\r\nab\r\n" * chunks + LAST
    decoded = 2 * chunks
    results = []

    def run():
        p = engine.ResponseParser()
        assert p.feed(data) if how == "whole" else feed_all(p, data, 1)
        results.append(len(p.result().body))

    peak = traced_peak(run)
    assert results == [decoded]
    assert peak < 4 * decoded + 64 * 1024, (peak, decoded)


# ---- both engines: resident memory ---------------------------------------------------------


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
def test_framing_is_not_resident(engine):
    """64 MB of framing for 8 000 decoded bytes, fed in 64 KB pieces (a socket's reads): what
    stays resident is bounded by what is buffered, far below the input (16 MB of slack for
    the allocator and the interpreter)."""
    chunk = b"1;" + b"e" * 8000 + b"\r\nx\r\n"
    data = HEAD + chunk * 8000 + LAST
    assert len(data) > 64 * 1000 * 1000
    gc.collect()
    before = rss()
    p = engine.ResponseParser()
    view = memoryview(data)
    for i in range(0, len(data), 65536):
        p.feed(view[i:i + 65536])
    grown = rss() - before
    assert p.result().body == b"x" * 8000
    assert grown < 16 * 1024 * 1024, grown


# ---- both engines: same outcomes ----------------------------------------------------------


def many_chunks(n: int) -> bytes:
    """n chunks of sizes 1..17 and some with extensions: more chunks than the pure parser
    folds at once, lines of every length."""
    out = []
    for i in range(n):
        size = 1 + i % 17
        ext = b";i=%d" % i if i % 5 == 0 else b""
        out.append(b"%x%s\r\n%s\r\n" % (size, ext, bytes([97 + i % 26]) * size))
    return b"".join(out)


def expected_body(n: int) -> bytes:
    return b"".join(bytes([97 + i % 26]) * (1 + i % 17) for i in range(n))


TRAILERS = b"0\r\nX-One: 1\r\nX-Two: 2\r\n\r\n"


def outcome(engine, data, pieces, limits=None):
    """(status, body, trailing) or the ProtocolError code, feeding pieces then EOF."""
    p = engine.ResponseParser(limits=limits or Limits())
    try:
        for piece in pieces:
            p.feed(piece)
        if not p.complete:
            p.feed_eof()
        r = p.result()
        return r.status_code, r.head, r.body, r.trailing, r.keep_alive
    except ProtocolError as exc:
        return exc.code


def splits(data):
    yield "whole", [data]
    yield "bytes", [data[i:i + 1] for i in range(len(data))]
    for step in (2, 3, 7, 64, 1000):
        yield f"step{step}", [data[i:i + step] for i in range(0, len(data), step)]


def check_everywhere(engine, data, expected, limits=None, every_split=True):
    for name, pieces in splits(data):
        assert outcome(engine, data, pieces, limits) == expected, name
    if every_split:
        for i in range(1, len(data)):
            got = outcome(engine, data, [data[:i], data[i:]], limits)
            assert got == expected, i


def test_many_chunks_same_body(engine):
    data = HEAD + many_chunks(300) + TRAILERS + b"HTTP/1.1 200"
    expected = (200, HEAD, expected_body(300), b"HTTP/1.1 200", True)
    check_everywhere(engine, data, expected)


@pytest.mark.parametrize("tail, code", [
    (b"5\r\nhelloXY", "chunk_crlf"),
    (b"5\r\nhello\rX", "chunk_crlf"),
    (b"g\r\n", "chunk_size"),
    (b"5;\x01\r\n", "chunk_extension"),
    (b"0\r\nbadheader\r\n\r\n", "header_no_colon"),
    (b"5\r\nhel", "truncated"),
    (b"", "truncated"),
    (b"0\r\nX-Trailer: 1\r\n", "truncated"),
])
def test_late_errors_same_code(engine, tail, code):
    """An error after hundreds of chunks (after many compactions and folds) has the code it
    has in a one-chunk body; end of input right after consumed framing is 'truncated', not
    'no_response'."""
    data = HEAD + many_chunks(200) + tail
    check_everywhere(engine, data, code, every_split=False)
    check_everywhere(engine, HEAD + tail, code)


def test_limits_across_compaction(engine):
    """max_body counts decoded bytes over all chunks; the trailer section's max_head counts
    from its first line, however much of it was consumed and dropped before."""
    body = many_chunks(100)
    n = len(expected_body(100))
    ok = (200, HEAD, expected_body(100), b"", True)
    check_everywhere(engine, HEAD + body + LAST, ok, Limits(max_body_size=n), every_split=False)
    check_everywhere(engine, HEAD + body + LAST, "body_too_large", Limits(max_body_size=n - 1),
                     every_split=False)
    # Trailer section: "X-A: 1\r\n" is 8 bytes; 8 lines + the empty line = 66 bytes (and the
    # response head, which max_head_size bounds too, is 47).
    trailers = b"0\r\n" + b"X-A: 1\r\n" * 8 + b"\r\n"
    check_everywhere(engine, HEAD + body + trailers, ok, Limits(max_head_size=66),
                     every_split=False)
    check_everywhere(engine, HEAD + body + trailers, "head_too_large",
                     Limits(max_head_size=65), every_split=False)


def test_feed_after_complete_chunked(engine):
    """Bytes fed after a chunked response completed (after compaction) are its trailing."""
    p = engine.ResponseParser()
    for piece in (HEAD, b"3\r\nabc\r\n", b"0\r\n\r\nHT", b"TP"):
        p.feed(piece)
    r = p.result()
    assert (r.body, r.trailing, r.head) == (b"abc", b"HTTP", HEAD)
