"""Property tests across implementations.

(a) Strictly valid generated responses: the pure engine, the C engine and h11 (a test-only
    oracle, strict enough on valid input) agree on status, version, reason, headers, body,
    interim count, framing (complete before end of input or not), trailing bytes and, for
    HTTP/1.1, keep-alive (h11 never keeps an HTTP/1.0 connection alive, fastpool may).
(b) Mutations of generated responses (bytes inserted, deleted, replaced, segments repeated),
    under default or small limits, fed whole and at random split points: every engine gives
    the same outcome for every split, and the engines give the same trace for the same split.

Deterministic (derandomize) and bounded, for a stable CI.
"""

from __future__ import annotations

import h11
import pytest
from conftest import load_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fastpool._model.errors import ProtocolError
from fastpool._model.limits import DEFAULT_LIMITS, Limits

SETTINGS = settings(
    max_examples=400,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
FRAMING_NAMES = (b"content-length", b"transfer-encoding", b"connection")
VCHAR_OBS = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))


@pytest.fixture(scope="module")
def engines():
    """Every engine that loads (the C one is skipped when absent, fails under EXPECT_C)."""
    from fastpool._engine import _pure

    found = [_pure]
    try:
        found.append(load_engine("c"))
    except pytest.skip.Exception:
        pass
    return found


# ---- generation ------------------------------------------------------------------------------


def token(max_size=12):
    return st.binary(min_size=1, max_size=max_size).map(
        lambda b: bytes(TCHAR[x % len(TCHAR)] for x in b))


def random_case(draw, data: bytes) -> bytes:
    return bytes(
        c ^ 0x20 if 0x41 <= (c & ~0x20) <= 0x5A and flip else c
        for c, flip in zip(data, draw(st.lists(st.booleans(), min_size=len(data),
                                               max_size=len(data))))
    )


field_name = token().filter(lambda n: n.lower() not in FRAMING_NAMES)
words = st.lists(st.binary(min_size=1, max_size=8).map(
    lambda b: bytes(VCHAR_OBS[x % len(VCHAR_OBS)] for x in b)), max_size=4)
ows = st.sampled_from([b"", b" ", b"\t", b"  ", b" \t "])


@st.composite
def field_value(draw):
    """(raw value with OWS around it, the value as parsed)."""
    ws = st.sampled_from([b" ", b"\t", b"  ", b" \t"])
    parts = draw(words)
    value = b""
    for i, w in enumerate(parts):
        value += (draw(ws) if i else b"") + w
    return draw(ows) + value + draw(ows), value


@st.composite
def fields(draw, max_size=6):
    """[(name, raw value, parsed value)]."""
    out = []
    # From both ends: integers() alone mostly gives heads with no fields at all.
    count = st.integers(0, max_size)
    for _ in range(draw(count | count.map(lambda n: max_size - n))):
        raw, value = draw(field_value())
        out.append((draw(field_name), raw, value))
    return out


@st.composite
def reason(draw):
    text = draw(st.binary(max_size=20).map(
        lambda b: bytes((b"\t " + VCHAR_OBS)[x % (len(VCHAR_OBS) + 2)] for x in b)))
    return draw(st.sampled_from([None, text]))


@st.composite
def chunked_body(draw, body: bytes, lenient: bool) -> bytes:
    out = b""
    pos = 0
    ext = st.sampled_from([b"", b";a", b";name=value", b';q="x y"', b";a=1;b"])
    # h11 takes an extension only right after the digits; fp_http.h also allows SP/HTAB.
    pre_ext = st.sampled_from([b"", b" ", b"\t "]) if lenient else st.just(b"")
    while pos < len(body):
        n = draw(st.integers(1, len(body) - pos))
        size = draw(st.sampled_from([b"%x", b"%X", b"0%x", b"00%X"])) % n
        out += size + draw(pre_ext) + draw(ext) + b"\r\n" + body[pos:pos + n] + b"\r\n"
        pos += n
    out += draw(st.sampled_from([b"0", b"000"])) + draw(ext) + b"\r\n"
    for name, raw, _ in draw(fields(max_size=2)):
        out += name + b":" + raw + b"\r\n"
    return out + b"\r\n"


EXTRA_FRAMING = [
    (name, b" " + value, value)
    for name, value in [
        (b"Content-Length", b"3"), (b"content-length", b"0"), (b"Content-Length", b"003"),
        (b"Content-Length", b"9223372036854775808"), (b"Content-Length", b"3, 3"),
        (b"Content-Length", b""), (b"Transfer-Encoding", b"chunked"),
        (b"Transfer-Encoding", b"gzip"), (b"Connection", b"close"),
    ]
]


@st.composite
def response(draw, mode="strict", with_body=None):
    """(raw, head_request, expected) of a response; expected as in as_expected() plus the
    framing and where the body starts, keep_alive None where it is not compared.

    strict: valid for fp_http.h and for h11. lenient: valid for fp_http.h only (bare LF lines,
    whitespace before chunk extensions, interim responses in HTTP/1.0). head: lenient plus
    framing fields that may break the head rules (expected is then meaningless).
    with_body: None, or the framing ("length", "chunked", "close") of a response that has a
    body (not HEAD, 204 or 304; HTTP/1.1 when chunked).
    """
    lenient = mode != "strict"
    # Bare LF lines in one response of four: any of them sends a head to the line machine,
    # and the fast path deserves its share of the inputs.
    mixed = lenient and draw(st.integers(0, 3)) == 0
    eol = st.sampled_from([b"\r\n", b"\n"]) if mixed else st.just(b"\r\n")
    minor = 1 if with_body == "chunked" else draw(st.sampled_from([0, 1]))
    version = b"HTTP/1.%d" % minor
    head_request = with_body is None and draw(st.integers(0, 4)) == 0
    raw = b""
    interim = 0
    if minor == 1 or lenient:
        for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
            status = draw(st.sampled_from([100, 102, 103, 150, 199]))
            raw += b"%s %d" % (version, status) + (b" Info" if draw(st.booleans()) else b"")
            raw += draw(eol)
            for name, value, _ in draw(fields(max_size=2)):
                raw += name + b":" + value + draw(eol)
            raw += draw(eol)
            interim += 1
    status = draw(st.sampled_from([200, 201, 204, 206, 301, 304, 404, 500, 999])
                  | st.integers(200, 599)) if with_body is None else 200
    text = draw(reason())
    raw += b"%s %d" % (version, status) + (b"" if text is None else b" " + text) + draw(eol)
    headers = [(name, value, parsed) for name, value, parsed in draw(fields())]
    body = draw(st.binary(max_size=120))
    framings = ["length", "chunked", "close"] if minor else ["length", "close"]
    if lenient:  # chunked framing has the most rules to break (and is refused in HTTP/1.0)
        framings += ["chunked", "chunked"] if minor else ["chunked"] if mode == "head" else []
    framing = with_body or draw(st.sampled_from(framings))
    framing_field = None
    if framing == "length":
        digits = draw(st.sampled_from([b"%d", b"0%d", b"000%d"])) % len(body)
        framing_field = (random_case(draw, b"Content-Length"), b" " + digits, digits)
    elif framing == "chunked":
        te = random_case(draw, b"chunked")
        framing_field = (random_case(draw, b"Transfer-Encoding"), b" " + te, te)
    connection = draw(st.sampled_from(
        [None, b"close", b"keep-alive", b"Keep-Alive", b"upgrade, close", b"foo", b"CLOSE"]))
    extra = [framing_field] if framing_field else []
    if connection is not None:
        extra.append((random_case(draw, b"Connection"), b" " + connection, connection))
    if mode == "head":
        # Framing fields that break (or test) the head rules in an otherwise tidy head:
        # duplicates, conflicts, bad values.
        for field in draw(st.lists(st.sampled_from(EXTRA_FRAMING + ["again"]), max_size=2)):
            if field != "again":
                extra.append(field)
            elif framing_field:
                extra.append(framing_field)
    for field in extra:
        headers.insert(draw(st.integers(0, len(headers))), field)
    for name, value, _ in headers:
        raw += name + b":" + value + draw(eol)
    raw += draw(eol)
    body_start = len(raw)

    no_body = head_request or status in (204, 304)
    if no_body:
        body = b""
    elif framing == "chunked":
        raw += draw(chunked_body(body, lenient))
    else:
        raw += body
    close_delimited = framing == "close" and not no_body
    trailing = b""
    if not close_delimited and draw(st.booleans()):
        trailing = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
        raw += trailing
    tokens = [] if connection is None else [t.strip() for t in connection.lower().split(b",")]
    keep_alive = None
    if minor == 1:
        keep_alive = b"close" not in tokens and not close_delimited
    expected = {
        "status": status,
        "version": f"HTTP/1.{minor}",
        "reason": text or b"",
        "headers": comparable_headers((name, parsed) for name, _, parsed in headers),
        "body": body,
        "interim": interim,
        "complete_before_eof": not close_delimited,
        "trailing": trailing,
        "keep_alive": keep_alive,
        "body_start": body_start,
    }
    return raw, head_request, expected


# ---- running ---------------------------------------------------------------------------------


def outcome(engine, raw, head_request, limits, pieces):
    """The whole observable behaviour for one way of feeding raw: feed() results, then the
    result (every attribute) or the error code."""
    p = engine.ResponseParser(head_request=head_request, limits=limits)
    trace = []
    try:
        for piece in pieces:
            trace.append(p.feed(piece))
        if not p.complete:
            trace.append(("eof", p.feed_eof()))
    except ProtocolError as exc:
        return trace, exc.code
    r = p.result()
    return trace, (r.status_code, r.http_version, r.reason, r.head, r.spans, r.headers, r.body,
                   r.keep_alive, r.interim, r.trailing)


def split(raw, cuts):
    points = sorted({c % (len(raw) + 1) for c in cuts})
    return [raw[a:b] for a, b in zip([0] + points, points + [len(raw)])]


def h11_outcome(raw, head_request):
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=b"HEAD" if head_request else b"GET", target=b"/",
                          headers=[(b"Host", b"example")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    got = {"interim": 0, "body": b"", "complete_before_eof": True}
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            assert got["complete_before_eof"], "h11 needs data after end of input"
            got["complete_before_eof"] = False
            conn.receive_data(b"")
        elif type(event) is h11.InformationalResponse:
            got["interim"] += 1
        elif type(event) is h11.Response:
            got["status"] = event.status_code
            got["version"] = "HTTP/" + event.http_version.decode()
            got["reason"] = event.reason
            got["headers"] = comparable_headers(event.headers.raw_items())
        elif type(event) is h11.Data:
            got["body"] += event.data
        elif type(event) is h11.EndOfMessage:
            break
        else:
            raise AssertionError(f"unexpected h11 event {event!r}")
    got["trailing"] = conn.trailing_data[0] if got["complete_before_eof"] else b""
    # A close-delimited body ends with the connection: h11 says so only with its next event.
    got["keep_alive"] = conn.their_state is h11.DONE and got["complete_before_eof"]
    return got


def comparable_headers(pairs):
    """Names lowercased (h11 does); so is the Transfer-Encoding value, which h11 rewrites."""
    out = []
    for name, value in pairs:
        name = name.lower()
        out.append((name, value.lower() if name == b"transfer-encoding" else value))
    return out


def as_expected(result, keep_alive_compared):
    status, version, reason, _, _, headers, body, keep_alive, interim, trailing = result
    return {
        "status": status, "version": version, "reason": reason,
        "headers": comparable_headers(headers), "body": body, "interim": interim,
        "trailing": trailing, "keep_alive": keep_alive if keep_alive_compared else None,
    }


# ---- (a) valid responses: engines and h11 agree --------------------------------------------------


@SETTINGS
@given(case=response(), cuts=st.lists(st.integers(min_value=0), max_size=3))
def test_valid_responses_agree_with_h11(engines, case, cuts):
    raw, head_request, expected = case
    oracle = h11_outcome(raw, head_request)
    compare_ka = expected["keep_alive"] is not None
    oracle["keep_alive"] = oracle["keep_alive"] if compare_ka else None
    complete_before_eof = oracle.pop("complete_before_eof")
    # The generator's own expectation keeps the oracle honest too.
    assert oracle == {k: v for k, v in expected.items()
                      if k not in ("complete_before_eof", "body_start")}
    assert complete_before_eof == expected["complete_before_eof"]
    for engine in engines:
        for pieces in ([raw], split(raw, cuts)):
            trace, result = outcome(engine, raw, head_request, DEFAULT_LIMITS, pieces)
            assert not isinstance(result, str), f"{engine.__name__}: {result} on valid input"
            assert as_expected(result, compare_ka) == oracle
            # Complete before end of input exactly when the framing says so.
            assert (trace[-1] is True) == complete_before_eof


# ---- (b) invalid inputs: engines agree with each other, whatever the split -----------------------

INTERESTING = [
    b"\r", b"\n", b" ", b"\t", b":", b";", b",", b"0", b"9", b"a", b"F", b"-", b"H", b"\x00",
    b"\x01", b"\x7f", b"\x80", b"\xff", b"\r\n", b"\r\n\r\n", b"\r\n ", b"Content-Length: 3\r\n",
    b"Content-Length: +3\r\n", b"Transfer-Encoding: chunked\r\n", b"Transfer-Encoding: gzip\r\n",
    b"Connection: close\r\n", b"HTTP/1.1 101 S\r\n\r\n", b"HTTP/1.1 100 C\r\n\r\n", b"0\r\n\r\n",
    b"ffffffffffffffffff\r\n", b";\x01", b"X y: z\r\n", b"NoColon\r\n",
]
LINES = [
    b"Content-Length: 3\r\n", b"Content-Length: 0\r\n", b"content-length: 00\r\n",
    b"Content-Length: 9223372036854775808\r\n", b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: gzip\r\n", b"Connection: close\r\n", b"Connection: keep-alive\r\n",
    b"HTTP/1.1 101 S\r\n\r\n", b"HTTP/1.1 100 C\r\n\r\n", b"HTTP/1.0 200 OK\r\n", b"\r\n", b"\n",
    b" folded\r\n", b"X-Long: " + b"v" * 40 + b"\r\n", b"0\r\n\r\n", b"5;e\r\nhello\r\n",
    b"X: y\r\n", b"X: y\n",
]
BODY_LINES = [b"0\r\n", b"0\r\n\r\n", b"5\r\nhello\r\n", b"3;x=y\r\n", b"1 ;\x01\r\n",
              b"ffffffffffffffff\r\n", b"00000000000000001\r\n", b"\r\n", b"\n", b"X: y\r\n",
              b"X y\r\n", b" fold\r\n", b"Trailer: " + b"t" * 30 + b"\r\n"]
# Each small set tightens one limit, so that the others do not fire first; DEFAULT twice.
LIMITS = [DEFAULT_LIMITS, DEFAULT_LIMITS, Limits(max_headers=3), Limits(max_line_size=24),
          Limits(max_head_size=80), Limits(max_interim=1), Limits(max_body_size=24),
          Limits(max_headers=4, max_line_size=40, max_head_size=160, max_interim=2,
                 max_body_size=48)]
# For body edits: limits the clean head always meets (chunk-size and trailer lines, bodies).
BODY_LIMITS = [DEFAULT_LIMITS, Limits(max_body_size=24),
               Limits(max_headers=16, max_line_size=100, max_head_size=300, max_body_size=60)]


@st.composite
def mutated(draw):
    """Edits of a generated response: either of its heads (with extra framing fields) or of
    its body only (behind a clean head, so that the chunked decoder gets its share)."""
    # Edits come from a Random seeded by Hypothesis: its own integers and sampled_from
    # cluster at their simplest values, which put most edits on the first bytes.
    rnd = draw(st.randoms(use_true_random=True))
    in_body = rnd.random() < 0.5
    if in_body:
        framing = rnd.choice(["length", "chunked", "chunked", "chunked", "close"])
        raw, head_request, expected = draw(response("lenient", framing))
    else:
        raw, head_request, expected = draw(response("head"))
    raw = bytearray(raw)
    # Line edits never touch the first status line (a wrong first line is covered enough).
    lo = expected["body_start"] if in_body else 0
    # Some inputs stay unmutated: lenient but valid (bare LF, chunk-extension whitespace).
    for _ in range(rnd.randint(0, 3)):
        if len(raw) < lo:
            break
        at = rnd.randrange(lo, len(raw) + 1)
        # Whole-line edits get the most weight: they keep heads well-formed enough to reach
        # the framing rules (duplicates, conflicts) instead of dying on the first bad byte.
        op = rnd.choice(["insert", "delete", "replace", "repeat", "truncate"] + ["line"] * 4)
        piece = rnd.choice(INTERESTING) if rnd.random() < 0.7 else rnd.randbytes(rnd.randint(1, 2))
        if op == "insert":
            raw[at:at] = piece
        elif op == "delete":
            del raw[at:at + rnd.randint(1, 3)]
        elif op == "replace":
            raw[at:at + len(piece)] = piece
        elif op == "repeat":  # e.g. a whole field line, to make duplicates
            raw[at:at] = raw[at:rnd.randint(at, min(len(raw), at + 40))]
        elif op == "truncate":
            del raw[at:]
        else:  # whole lines: insert one, repeat one or drop one
            starts = [i + 1 for i, c in enumerate(raw) if c == 10 and i + 1 >= max(lo, 1)]
            if not starts:
                continue
            i = rnd.randrange(len(starts))
            line = raw[starts[i]:starts[i + 1]] if i + 1 < len(starts) else raw[starts[i]:]
            how = rnd.choice(["insert", "repeat", "drop"])
            if how == "insert":
                raw[starts[i]:starts[i]] = rnd.choice(BODY_LINES if in_body else LINES)
            elif how == "repeat":
                raw[starts[i]:starts[i]] = line
            else:
                del raw[starts[i]:starts[i] + len(line)]
    limits = rnd.choice(BODY_LIMITS if in_body else LIMITS)
    return bytes(raw), head_request, limits


@SETTINGS
@given(case=mutated(), cuts=st.lists(st.integers(min_value=0), min_size=1, max_size=4))
def test_mutated_inputs_engines_agree(engines, case, cuts):
    raw, head_request, limits = case
    pieces_ways = [[raw], split(raw, cuts), [raw[i:i + 1] for i in range(len(raw))]]
    final = None
    for pieces in pieces_ways:
        traces = [outcome(engine, raw, head_request, limits, pieces) for engine in engines]
        # Same split, same behaviour call by call on every engine.
        assert all(t == traces[0] for t in traces[1:]), [e.__name__ for e in engines]
        # Any split, same final outcome.
        if final is None:
            final = traces[0][1]
        assert traces[0][1] == final
