"""The request writer (fp_write_request / fp_write_fields / fp_check_*) on every engine."""

from __future__ import annotations

import pytest

from fastpool._model.errors import InvalidRequestError, NotSentError

# RFC 9110 §5.6.2, spelled out here rather than taken from an engine.
TCHAR = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
NON_TCHAR = [b for b in range(256) if b not in TCHAR]
VALUE_FORBIDDEN = [b for b in range(0x20) if b != 0x09] + [0x7F]
VALUE_ALLOWED = [b for b in range(256) if b not in VALUE_FORBIDDEN]
TARGET_FORBIDDEN = list(range(0x21)) + [0x7F] + list(range(0x80, 0x100))
TARGET_ALLOWED = list(range(0x21, 0x7F))


def error_code(call):
    with pytest.raises(InvalidRequestError) as info:
        call()
    return info.value.code


def not_refused(code, make_call, byte_values):
    """The byte values b for which make_call(bytes([b])) does not raise code."""
    return [b for b in byte_values if error_code(lambda: make_call(bytes([b]))) != code]


def get(engine, *, method=b"GET", target=b"/", block=b"", fields=(), body=None):
    return engine.build_request(method, target, block, list(fields), body)


# ---- exact bytes -----------------------------------------------------------------------------


def test_get_minimal(engine):
    assert get(engine, target=b"/api/v3/ticker?symbol=BTCUSDT") == (
        b"GET /api/v3/ticker?symbol=BTCUSDT HTTP/1.1\r\n\r\n"
    )


def test_post_with_body(engine):
    assert get(engine, method=b"POST", target=b"/api/v3/order", body=b"a=1&b=2") == (
        b"POST /api/v3/order HTTP/1.1\r\nContent-Length: 7\r\n\r\na=1&b=2"
    )


def test_empty_body_gets_content_length_zero(engine):
    assert get(engine, method=b"POST", body=b"") == b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"


def test_block_fields_length_body_in_order(engine):
    block = engine.encode_header_block([(b"User-Agent", b"fp/1"), (b"Accept", b"*/*")])
    assert block == b"User-Agent: fp/1\r\nAccept: */*\r\n"
    out = get(engine, method=b"PUT", target=b"/o", block=block,
              fields=[(b"X-Sig", b"abc"), (b"X-Empty", b"")], body=b"\r\n\r\nraw")
    assert out == (
        b"PUT /o HTTP/1.1\r\nUser-Agent: fp/1\r\nAccept: */*\r\nX-Sig: abc\r\nX-Empty: \r\n"
        b"Content-Length: 7\r\n\r\n\r\n\r\nraw"
    )


def test_block_is_copied_verbatim(engine):
    # The block is pre-encoded and pre-validated: the writer does not re-check or reformat it.
    block = b"a:b\r\nC-D:  e \r\n"
    assert get(engine, block=block) == b"GET / HTTP/1.1\r\n" + block + b"\r\n"


def test_values_written_as_given(engine):
    value = b" \tleading, inner\ttab, obs-text \x80\xff, trailing\t "
    assert get(engine, fields=[(b"X", value)]) == b"GET / HTTP/1.1\r\nX: " + value + b"\r\n\r\n"


def test_asterisk_target_and_extension_method(engine):
    assert get(engine, method=b"OPTIONS", target=b"*") == b"OPTIONS * HTTP/1.1\r\n\r\n"
    assert get(engine, method=b"M-SEARCH", target=b"/") == b"M-SEARCH / HTTP/1.1\r\n\r\n"


def test_encode_header_block_empty(engine):
    assert engine.encode_header_block([]) == b""


def test_encode_header_block_refuses_content_length(engine):
    # The block goes on every request (bodiless ones too) and the writer adds its own
    # Content-Length: fp_write_fields refuses one here.
    for name in (b"Content-Length", b"content-length", b"CONTENT-LENGTH"):
        with pytest.raises(InvalidRequestError) as info:
            engine.encode_header_block([(b"X-A", b"1"), (name, b"5")])
        assert info.value.code == "header_forbidden"


# ---- method ----------------------------------------------------------------------------------


def test_method_every_non_tchar_byte(engine):
    call = lambda b: get(engine, method=b"GE" + b + b"T")
    assert not_refused("method_invalid", call, NON_TCHAR) == []


def test_method_every_tchar_byte(engine):
    for b in TCHAR:
        method = bytes([b]) * 2
        assert get(engine, method=method).startswith(method + b" / HTTP/1.1\r\n")


@pytest.mark.parametrize("method", [b"", b" GET", b"GET ", b"GET\r\n", b"G\x00T"])
def test_method_invalid_shapes(engine, method):
    assert error_code(lambda: get(engine, method=method)) == "method_invalid"


# ---- target ----------------------------------------------------------------------------------


def test_target_every_forbidden_byte(engine):
    call = lambda b: get(engine, target=b"/a" + b + b"b")
    assert not_refused("target_invalid", call, TARGET_FORBIDDEN) == []


def test_target_every_allowed_byte(engine):
    for b in TARGET_ALLOWED:
        target = b"/" + bytes([b])
        assert get(engine, target=target) == b"GET " + target + b" HTTP/1.1\r\n\r\n"


@pytest.mark.parametrize("target", [b"", b"a/b", b"http://h/x", b"*/", b"**", b" /", b"/ "])
def test_target_invalid_shapes(engine, target):
    assert error_code(lambda: get(engine, target=target)) == "target_invalid"


# ---- fields ----------------------------------------------------------------------------------


def writers(engine):
    """Both ways a field reaches the wire: the pool's block and the per-request fields."""
    return [
        lambda name, value: engine.encode_header_block([(name, value)]),
        lambda name, value: get(engine, fields=[(name, value)]),
    ]


def test_field_name_every_non_tchar_byte(engine):
    for write in writers(engine):
        call = lambda b: write(b"X" + b + b"Y", b"v")
        assert not_refused("header_name_invalid", call, NON_TCHAR) == []


def test_field_name_empty(engine):
    for write in writers(engine):
        assert error_code(lambda: write(b"", b"v")) == "header_name_invalid"


def test_field_value_every_forbidden_byte(engine):
    for write in writers(engine):
        call = lambda b: write(b"X", b"a" + b + b"b")
        assert not_refused("header_value_invalid", call, VALUE_FORBIDDEN) == []


def test_field_value_every_allowed_byte(engine):
    value = bytes(VALUE_ALLOWED)
    assert engine.encode_header_block([(b"X", value)]) == b"X: " + value + b"\r\n"
    assert get(engine, fields=[(b"X", value)]) == b"GET / HTTP/1.1\r\nX: " + value + b"\r\n\r\n"


@pytest.mark.parametrize("name", [b"Host", b"host", b"HOST", b"hOsT", b"Connection", b"connection",
                                  b"CONNECTION", b"Transfer-Encoding", b"transfer-encoding",
                                  b"TRANSFER-ENCODING"])
def test_field_forbidden_names(engine, name):
    for write in writers(engine):
        assert error_code(lambda: write(name, b"x")) == "header_forbidden"


@pytest.mark.parametrize("name", [b"Hosts", b"X-Host", b"Connection2", b"Keep-Alive",
                                  b"Transfer-Encodings", b"TE", b"Upgrade"])
def test_field_names_near_forbidden_allowed(engine, name):
    assert engine.encode_header_block([(name, b"x")]) == name + b": x\r\n"


# ---- Content-Length given by the caller ---------------------------------------------------------


@pytest.mark.parametrize("name", [b"Content-Length", b"content-length", b"CONTENT-LENGTH"])
@pytest.mark.parametrize("value", [b"3", b" 3", b"3\t", b" \t3 \t", b"003"])
def test_content_length_equal_is_dropped(engine, name, value):
    out = get(engine, method=b"POST", fields=[(b"A", b"1"), (name, value), (b"B", b"2")],
              body=b"abc")
    assert out == b"POST / HTTP/1.1\r\nA: 1\r\nB: 2\r\nContent-Length: 3\r\n\r\nabc"


def test_content_length_zero_with_empty_body_is_dropped(engine):
    out = get(engine, method=b"POST", fields=[(b"Content-Length", b"0")], body=b"")
    assert out == b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"


def test_content_length_long_zero_prefix_is_equal(engine):
    # The value is compared as a number, however many leading zeros it carries.
    out = get(engine, method=b"POST", fields=[(b"Content-Length", b"0" * 5000 + b"3")], body=b"abc")
    assert out == b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"


@pytest.mark.parametrize("value", [b"4", b"2", b"", b"abc", b"+3", b"-3", b"3, 3", b"3 3", b"0x3",
                                   b"3.0", b"99999999999999999999999999"])
def test_content_length_different_is_mismatch(engine, value):
    call = lambda: get(engine, method=b"POST", fields=[(b"Content-Length", value)], body=b"abc")
    assert error_code(call) == "content_length_mismatch"


@pytest.mark.parametrize("value", [b"0", b"3"])
def test_content_length_without_body_is_mismatch(engine, value):
    call = lambda: get(engine, fields=[(b"Content-Length", value)], body=None)
    assert error_code(call) == "content_length_mismatch"


# ---- which error wins ---------------------------------------------------------------------------


def test_validation_order(engine):
    bad_field = [(b"Bad Name", b"v")]
    # method, then target, then the fields in order.
    assert error_code(lambda: get(engine, method=b"G T", target=b"x", fields=bad_field)) == (
        "method_invalid")
    assert error_code(lambda: get(engine, target=b"x", fields=bad_field)) == "target_invalid"
    fields = [(b"A", b"\x00"), (b"Bad Name", b"v")]
    assert error_code(lambda: get(engine, fields=fields)) == "header_value_invalid"
    fields = [(b"Content-Length", b"9"), (b"Bad Name", b"v")]
    assert error_code(lambda: get(engine, fields=fields, body=b"")) == "content_length_mismatch"
    # Within a field: the name, then the forbidden names, then the value (fp_check_field's
    # order as the header lists it); and fp_check_field before the Content-Length comparison.
    assert error_code(lambda: get(engine, fields=[(b"Ho st", b"\x00")])) == "header_name_invalid"
    assert error_code(lambda: get(engine, fields=[(b"Host", b"\x00")])) == "header_forbidden"
    assert error_code(lambda: get(engine, fields=[(b"X-A", b"\x00")])) == "header_value_invalid"
    call = lambda: get(engine, fields=[(b"Content-Length", b"3\r\n")], body=b"abc")
    assert error_code(call) == "header_value_invalid"


def test_invalid_request_is_not_sent(engine):
    with pytest.raises(InvalidRequestError) as info:
        get(engine, method=b"")
    assert isinstance(info.value, NotSentError)
    assert isinstance(info.value, ValueError)
