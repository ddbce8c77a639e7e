"""Response cases for the parser, shared by both engines (tests/test_parser_corpus.py).

Each case is (id, raw, head_request, limits or None for the defaults, expected), where expected
is a Result or the name of a ProtocolError code (fastpool._model.codes). The expectations are written
from csrc/fp_http.h, not taken from either engine; the comments cite the rule that decides.

A Result's close_delimited says the response completes only at end of input; every other
Result must be complete as soon as its last byte is fed, and an error other than
"truncated"/"no_response" must come from feed(), those two from feed_eof().
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Union

from fastpool._model.codes import PARSE_CODES
from fastpool._model.limits import Limits


class Result(NamedTuple):
    status: int
    version: str
    reason: bytes
    headers: list
    body: bytes
    keep_alive: bool
    interim: int
    trailing: bytes
    close_delimited: bool


class Case(NamedTuple):
    id: str
    raw: bytes
    head_request: bool
    limits: Optional[Limits]
    expected: Union[Result, str]


CASES: list[Case] = []


def ok(id, raw, *, status=200, version="HTTP/1.1", reason=b"OK", headers=(), body=b"",
       keep_alive=True, interim=0, trailing=b"", close_delimited=False, head_request=False,
       limits=None):
    CASES.append(Case(id, raw, head_request, limits, Result(
        status, version, reason, list(headers), body, keep_alive, interim, trailing,
        close_delimited)))


def err(id, raw, code, *, head_request=False, limits=None):
    assert code in PARSE_CODES, code
    CASES.append(Case(id, raw, head_request, limits, code))


def sized(prefix: bytes, total: int, suffix: bytes = b"\r\n", fill: bytes = b"a") -> bytes:
    """prefix + fill bytes + suffix, exactly total bytes long (boundary cases)."""
    n = total - len(prefix) - len(suffix)
    assert n >= 0, (prefix, total)
    out = prefix + fill * n + suffix
    assert len(out) == total
    return out


S = b"HTTP/1.1 200 OK\r\n"
S10 = b"HTTP/1.0 200 OK\r\n"
CL0 = b"Content-Length: 0\r\n"
H_CL0 = (b"Content-Length", b"0")
TE = b"Transfer-Encoding: chunked\r\n"
H_TE = (b"Transfer-Encoding", b"chunked")

# ---- status line --------------------------------------------------------------------------

ok("status-http11", S + CL0 + b"\r\n", headers=[H_CL0])
ok("status-http10", S10 + b"Content-Length: 2\r\n\r\nhi", version="HTTP/1.0",
   headers=[(b"Content-Length", b"2")], body=b"hi", keep_alive=False)
ok("status-999", b"HTTP/1.1 999 Odd\r\n" + CL0 + b"\r\n", status=999, reason=b"Odd",
   headers=[H_CL0])
ok("status-200-no-reason", b"HTTP/1.1 200\r\n" + CL0 + b"\r\n", reason=b"", headers=[H_CL0])
ok("status-empty-reason", b"HTTP/1.1 200 \r\n" + CL0 + b"\r\n", reason=b"", headers=[H_CL0])
# reason = content[13..): nothing is trimmed from it.
ok("reason-spaces-kept", b"HTTP/1.1 404  Not  Found \r\n" + CL0 + b"\r\n", status=404,
   reason=b" Not  Found ", headers=[H_CL0])
ok("reason-htab", b"HTTP/1.1 200 O\tK\r\n" + CL0 + b"\r\n", reason=b"O\tK", headers=[H_CL0])
ok("reason-obs-text", b"HTTP/1.1 200 \xc3\x9cbersicht \xff\x80\r\n" + CL0 + b"\r\n",
   reason=b"\xc3\x9cbersicht \xff\x80", headers=[H_CL0])
ok("reason-punctuation", b"HTTP/1.1 200 OK (really): ~!@#$%^&*\r\n" + CL0 + b"\r\n",
   reason=b"OK (really): ~!@#$%^&*", headers=[H_CL0])
ok("status-line-bare-lf", b"HTTP/1.1 200 OK\n" + CL0 + b"\r\n", headers=[H_CL0])
err("version-lowercase", b"http/1.1 200 OK\r\n\r\n", "version")
err("version-1.2", b"HTTP/1.2 200 OK\r\n\r\n", "version")
err("version-2.0", b"HTTP/2.0 200 OK\r\n\r\n", "version")
err("version-2", b"HTTP/2 200 OK\r\n\r\n", "version")
err("version-0.9", b"HTTP/0.9 200 OK\r\n\r\n", "version")
err("version-no-space", b"HTTP/1.1200 OK\r\n\r\n", "version")
err("version-tab", b"HTTP/1.1\t200 OK\r\n\r\n", "version")
err("version-only", b"HTTP/1.1\r\n\r\n", "version")
err("version-leading-space", b" HTTP/1.1 200 OK\r\n\r\n", "version")
err("version-not-http", b"SSH-2.0-OpenSSH_9.6\r\n", "version")
err("version-checked-before-status", b"HTTP/1.3 abc\r\n\r\n", "version")
# "A response whose head starts with an empty line is FP_E_VERSION" (no skipping of CRLFs).
err("head-starts-with-crlf", b"\r\n" + S + CL0 + b"\r\n", "version")
err("head-starts-with-lf", b"\n" + S + CL0 + b"\r\n", "version")
err("status-two-digits", b"HTTP/1.1 20 OK\r\n\r\n", "status")
err("status-four-digits", b"HTTP/1.1 2000 OK\r\n\r\n", "status")
err("status-099", b"HTTP/1.1 099 Low\r\n\r\n", "status")
err("status-000", b"HTTP/1.1 000 Zero\r\n\r\n", "status")
err("status-letter", b"HTTP/1.1 2x0 OK\r\n\r\n", "status")
err("status-sign", b"HTTP/1.1 +20 OK\r\n\r\n", "status")
err("status-one-digit-line", b"HTTP/1.1 2\r\n\r\n", "status")
err("status-missing", b"HTTP/1.1 \r\n\r\n", "status")
err("status-tab-after-code", b"HTTP/1.1 200\tOK\r\n\r\n", "status")
err("status-non-ascii-digits", b"HTTP/1.1 \xd9\xa2\xd9\xa0 OK\r\n\r\n", "status")
err("reason-soh", b"HTTP/1.1 200 O\x01K\r\n\r\n", "reason")
err("reason-nul", b"HTTP/1.1 200 O\x00K\r\n\r\n", "reason")
err("reason-del", b"HTTP/1.1 200 O\x7fK\r\n\r\n", "reason")
err("reason-esc", b"HTTP/1.1 200 \x1b[31mOK\r\n\r\n", "reason")
err("reason-cr-inside", b"HTTP/1.1 200 O\rK\r\n\r\n", "reason")
# Only one CR before the LF belongs to the line ending; the other is content.
err("reason-cr-cr-lf", b"HTTP/1.1 200 OK\r\r\n\r\n", "reason")

# ---- field lines ----------------------------------------------------------------------------

err("obs-fold-sp", S + b"A: b\r\n c\r\n" + CL0 + b"\r\n", "obs_fold")
err("obs-fold-htab", S + b"A: b\r\n\tc\r\n\r\n", "obs_fold")
err("obs-fold-first-field", S + b" A: b\r\n\r\n", "obs_fold")
err("whitespace-only-line", S + b"   \r\n\r\n", "obs_fold")
err("name-empty", S + b": v\r\n\r\n", "header_name")
err("name-space-before-colon", S + b"A : b\r\n\r\n", "header_whitespace")
err("name-tab-before-colon", S + b"A\t: b\r\n\r\n", "header_whitespace")
err("name-inner-space", S + b"Content Length: 5\r\n\r\n", "header_whitespace")
err("no-colon", S + b"Abc\r\n\r\n", "header_no_colon")
err("no-colon-bare-lf", S + b"Abc\n\n", "header_no_colon")
err("cr-in-name", S + b"Ab\rc: d\r\n\r\n", "header_name")
# "\r\r\n": content "\r" is not empty, so it is a field line whose name stops at a CR.
err("lone-cr-line", S + b"\r\r\n\r\n", "header_name")
err("name-paren", S + b"A(b: c\r\n\r\n", "header_name")
err("name-at", S + b"A@b: c\r\n\r\n", "header_name")
err("name-slash", S + b"A/b: c\r\n\r\n", "header_name")
err("name-quote", S + b'A"b: c\r\n\r\n', "header_name")
err("name-brace", S + b"A{b: c\r\n\r\n", "header_name")
err("name-utf8", S + b"\xc3\xa9t\xc3\xa9: v\r\n\r\n", "header_name")
err("name-nul", S + b"A\x00b: c\r\n\r\n", "header_name")
err("name-del", S + b"A\x7f: c\r\n\r\n", "header_name")
err("value-soh", S + b"A: b\x01c\r\n\r\n", "header_value")
err("value-nul", S + b"A: b\x00c\r\n\r\n", "header_value")
err("value-del", S + b"A: b\x7f\r\n\r\n", "header_value")
err("value-vt", S + b"A: b\x0bc\r\n\r\n", "header_value")
err("value-cr-inside", S + b"A: b\rc\r\n\r\n", "header_value")
err("value-cr-cr-lf", S + b"A: b\r\r\n" + CL0 + b"\r\n", "header_value")
err("value-cr-separating-fields", S + b"A: b\rB: c\r\n\r\n", "header_value")
err("value-cr-then-space", S + b"A: b\r \r\n\r\n", "header_value")
ok("name-every-tchar", S + b"!#$%&'*+-.^_`|~0123456789ABCXYZabcxyz: v\r\n" + CL0 + b"\r\n",
   headers=[(b"!#$%&'*+-.^_`|~0123456789ABCXYZabcxyz", b"v"), H_CL0])
ok("name-case-kept", S + b"cOnTeNt-TyPe: text/plain\r\nCONTENT-LENGTH: 0\r\n\r\n",
   headers=[(b"cOnTeNt-TyPe", b"text/plain"), (b"CONTENT-LENGTH", b"0")])
ok("value-obs-text", S + b"A: \x80caf\xc3\xa9\xff\r\n" + CL0 + b"\r\n",
   headers=[(b"A", b"\x80caf\xc3\xa9\xff"), H_CL0])
ok("value-inner-htab", S + b"A: b\tc\r\n" + CL0 + b"\r\n", headers=[(b"A", b"b\tc"), H_CL0])
ok("value-ows-trimmed", S + b"A: \t b  c \t \r\n" + CL0 + b"\r\n",
   headers=[(b"A", b"b  c"), H_CL0])
ok("value-no-ows", S + b"A:b\r\n" + CL0 + b"\r\n", headers=[(b"A", b"b"), H_CL0])
ok("value-empty", S + b"A:\r\n" + CL0 + b"\r\n", headers=[(b"A", b""), H_CL0])
ok("value-only-ows", S + b"A: \t \r\n" + CL0 + b"\r\n", headers=[(b"A", b""), H_CL0])
ok("value-colons", S + b"Location: http://x:80/a?b=c:d\r\n" + CL0 + b"\r\n",
   headers=[(b"Location", b"http://x:80/a?b=c:d"), H_CL0])
ok("value-quotes-commas", S + b'ETag: W/"a,b", "c"\r\n' + CL0 + b"\r\n",
   headers=[(b"ETag", b'W/"a,b", "c"'), H_CL0])
ok("repeated-names-kept", S + b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n" + CL0 + b"\r\n",
   headers=[(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2"), H_CL0])
ok("bare-lf-everywhere", b"HTTP/1.1 200 OK\nA: b\nContent-Length: 2\n\nhi",
   headers=[(b"A", b"b"), (b"Content-Length", b"2")], body=b"hi")
ok("mixed-line-endings", b"HTTP/1.1 200 OK\r\nA: b\nContent-Length: 2\r\n\nhi",
   headers=[(b"A", b"b"), (b"Content-Length", b"2")], body=b"hi")
ok("bare-lf-value-trailing-ows", S + b"A: b \t\n" + CL0 + b"\r\n",
   headers=[(b"A", b"b"), H_CL0])
ok("crlf-blank-after-bare-lf-field", S + b"Content-Length: 0\n\r\n", headers=[H_CL0])
ok("no-fields", b"HTTP/1.1 204 No Content\r\n\r\n", status=204, reason=b"No Content")
_MANY = [(b"X-Field-%d" % i, b"value %d" % i) for i in range(60)]
ok("sixty-fields", S + b"".join(n + b": " + v + b"\r\n" for n, v in _MANY) + CL0 + b"\r\n",
   headers=_MANY + [H_CL0])

# ---- limits ---------------------------------------------------------------------------------

LINE32 = Limits(max_line_size=32)
# Status line content exactly max_line, then one over.
ok("line-status-at-limit", sized(b"HTTP/1.1 200 ", 34) + CL0 + b"\r\n", reason=b"a" * 19,
   headers=[H_CL0], limits=LINE32)
err("line-status-over-limit", sized(b"HTTP/1.1 200 ", 35) + CL0 + b"\r\n", "line_too_long",
    limits=LINE32)
# A bare LF: the same content bytes, one less line-ending byte.
err("line-status-over-limit-bare-lf", sized(b"HTTP/1.1 200 ", 34, b"\n") + CL0 + b"\r\n",
    "line_too_long", limits=LINE32)
ok("line-field-at-limit", S + sized(b"X: ", 34) + CL0 + b"\r\n",
   headers=[(b"X", b"a" * 29), H_CL0], limits=LINE32)
err("line-field-over-limit", S + sized(b"X: ", 35) + CL0 + b"\r\n", "line_too_long",
    limits=LINE32)
# An incomplete line may hold max_line + 1 bytes (the last may be the CR of CR LF).
err("line-incomplete-max-plus-one", S + sized(b"X: ", 33, b""), "truncated", limits=LINE32)
err("line-incomplete-max-plus-one-cr", S + sized(b"X: ", 33, b"\r"), "truncated",
    limits=LINE32)
err("line-incomplete-max-plus-two", S + sized(b"X: ", 34, b""), "line_too_long",
    limits=LINE32)
err("line-status-incomplete-max-plus-two", sized(b"HTTP/1.1 200 ", 34, b""), "line_too_long",
    limits=LINE32)
# Check 1 (length) before check 3 (syntax).
err("line-too-long-beats-syntax", S + sized(b"X", 35, fill=b"y") + b"\r\n", "line_too_long",
    limits=LINE32)
ok("line-status-at-default-limit", sized(b"HTTP/1.1 200 ", 8194) + CL0 + b"\r\n",
   reason=b"a" * 8179, headers=[H_CL0])
err("line-status-over-default-limit", sized(b"HTTP/1.1 200 ", 8195) + CL0 + b"\r\n",
    "line_too_long")

HEAD64 = Limits(max_head_size=64, max_line_size=32)
_H64 = S + CL0 + sized(b"X-Pad: ", 26)  # 62 bytes; the blank line makes 64
assert len(_H64) == 62
ok("head-at-limit", _H64 + b"\r\n", headers=[H_CL0, (b"X-Pad", b"a" * 17)], limits=HEAD64)
# The blank line's own bytes count: 63 bytes of fields + CR LF = 65.
err("head-over-limit-by-blank-line", S + CL0 + sized(b"X-Pad: ", 27) + b"\r\n",
    "head_too_large", limits=HEAD64)
ok("head-at-limit-with-bare-lf-blank", S + CL0 + sized(b"X-Pad: ", 27) + b"\n",
   headers=[H_CL0, (b"X-Pad", b"a" * 18)], limits=HEAD64)
err("head-over-limit-mid-field", S + CL0 + sized(b"X-Pad: ", 30) + sized(b"Y: ", 20) + b"\r\n",
    "head_too_large", limits=HEAD64)
# Check 2 (head size) before check 3 (syntax) on the line that crosses the limit.
err("head-too-large-beats-syntax", S + CL0 + sized(b"Y ", 30) + b"\r\n", "head_too_large",
    limits=HEAD64)
# Check 1 before check 2 when one line breaks both.
err("line-too-long-beats-head-too-large", S + CL0 + sized(b"X-Pad: ", 27) + sized(b"Y: ", 35)
    + b"\r\n", "line_too_long", limits=HEAD64)
# The same with a bare LF right after max_line + 1 content bytes: the only shape where the
# LF is within max_line + 2 bytes of the line start and the line is still too long.
err("line-too-long-beats-head-too-large-bare-lf", S + CL0 + sized(b"X-Pad: ", 27)
    + sized(b"Y: ", 34, b"\n") + b"\r\n", "line_too_long", limits=HEAD64)
# Each head is measured on its own: two heads of 40-odd bytes under a 64-byte limit.
ok("head-limit-per-head", b"HTTP/1.1 100 Continue\r\nX-A: 1234567890\r\n\r\n"
   + S + CL0 + b"X-B: 1234567890\r\n\r\n",
   headers=[H_CL0, (b"X-B", b"1234567890")], interim=1, limits=HEAD64)

FIELDS3 = Limits(max_headers=3)
ok("fields-at-limit", S + b"A: 1\r\nB: 2\r\n" + CL0 + b"\r\n",
   headers=[(b"A", b"1"), (b"B", b"2"), H_CL0], limits=FIELDS3)
err("fields-over-limit", S + b"A: 1\r\nB: 2\r\nC: 3\r\n" + CL0 + b"\r\n", "too_many_headers",
    limits=FIELDS3)
# Check 3 (syntax) before check 4 (count); check 4 before check 5 (semantics).
err("fields-over-limit-syntax-first", S + b"A: 1\r\nB: 2\r\nC: 3\r\nD 4\r\n\r\n",
    "header_whitespace", limits=FIELDS3)
err("fields-over-limit-before-semantics", S + b"A: 1\r\nB: 2\r\nC: 3\r\nContent-Length: x\r\n\r\n",
    "too_many_headers", limits=FIELDS3)
ok("fields-limit-per-head", b"HTTP/1.1 103 Early Hints\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"
   + S + b"A: 1\r\nB: 2\r\n" + CL0 + b"\r\n",
   headers=[(b"A", b"1"), (b"B", b"2"), H_CL0], interim=1, limits=FIELDS3)
_F100 = [(b"F%d" % i, b"v") for i in range(99)]
ok("fields-at-default-limit", S + b"".join(n + b": v\r\n" for n, _ in _F100) + CL0 + b"\r\n",
   headers=_F100 + [H_CL0])
err("fields-over-default-limit",
    S + b"".join(n + b": v\r\n" for n, _ in _F100) + b"F99: v\r\n" + CL0 + b"\r\n",
    "too_many_headers")

CONT = b"HTTP/1.1 100 Continue\r\n\r\n"
INTERIM2 = Limits(max_interim=2)
ok("interim-at-limit", CONT * 2 + S + CL0 + b"\r\n", headers=[H_CL0], interim=2,
   limits=INTERIM2)
err("interim-over-limit", CONT * 3 + S + CL0 + b"\r\n", "too_many_interim", limits=INTERIM2)
err("interim-limit-zero", CONT + S + CL0 + b"\r\n", "too_many_interim",
    limits=Limits(max_interim=0))
ok("interim-at-default-limit", CONT * 8 + S + CL0 + b"\r\n", headers=[H_CL0], interim=8)
err("interim-over-default-limit", CONT * 9 + S + CL0 + b"\r\n", "too_many_interim")

BODY16 = Limits(max_body_size=16)
ok("body-cl-at-limit", S + b"Content-Length: 16\r\n\r\n" + b"b" * 16,
   headers=[(b"Content-Length", b"16")], body=b"b" * 16, limits=BODY16)
# The declared length is enough: the error comes at the end of the head.
err("body-cl-over-limit", S + b"Content-Length: 17\r\n\r\n", "body_too_large", limits=BODY16)
ok("body-chunked-at-limit", S + TE + b"\r\na\r\n" + b"c" * 10 + b"\r\n6\r\n" + b"d" * 6
   + b"\r\n0\r\n\r\n", headers=[H_TE], body=b"c" * 10 + b"d" * 6, limits=BODY16)
err("body-chunked-over-limit", S + TE + b"\r\na\r\n" + b"c" * 10 + b"\r\n7\r\n", "body_too_large",
    limits=BODY16)
err("body-chunked-single-over-limit", S + TE + b"\r\n11\r\n", "body_too_large", limits=BODY16)
ok("body-close-delimited-at-limit", S + b"\r\n" + b"e" * 16, body=b"e" * 16, keep_alive=False,
   close_delimited=True, limits=BODY16)
err("body-close-delimited-over-limit", S + b"\r\n" + b"e" * 17, "body_too_large",
    limits=BODY16)
ok("body-limit-zero-empty-chunked", S + TE + b"\r\n0\r\n\r\n", headers=[H_TE],
   limits=Limits(max_body_size=0))
err("body-limit-zero-cl-one", S + b"Content-Length: 1\r\n\r\nx", "body_too_large",
    limits=Limits(max_body_size=0))
err("body-cl-over-default-limit", S + b"Content-Length: 268435457\r\n\r\n", "body_too_large")
# No body is read for HEAD, 204 and 304, so their Content-Length is not held to max_body.
ok("body-limit-head-request", S + b"Content-Length: 1000\r\n\r\n",
   headers=[(b"Content-Length", b"1000")], head_request=True, limits=BODY16)
ok("body-limit-204", b"HTTP/1.1 204 No Content\r\nContent-Length: 1000\r\n\r\n", status=204,
   reason=b"No Content", headers=[(b"Content-Length", b"1000")], limits=BODY16)

# ---- Content-Length -------------------------------------------------------------------------

ok("cl-basic", S + b"Content-Length: 5\r\n\r\nhello", headers=[(b"Content-Length", b"5")],
   body=b"hello")
ok("cl-leading-zeros", S + b"Content-Length: 007\r\n\r\nseven!!",
   headers=[(b"Content-Length", b"007")], body=b"seven!!")
ok("cl-many-leading-zeros", S + b"Content-Length: " + b"0" * 30 + b"3\r\n\r\nabc",
   headers=[(b"Content-Length", b"0" * 30 + b"3")], body=b"abc")
ok("cl-ows", S + b"Content-Length: \t 3 \t\r\n\r\nabc", headers=[(b"Content-Length", b"3")],
   body=b"abc")
ok("cl-name-case", S + b"content-LENGTH: 3\r\n\r\nabc", headers=[(b"content-LENGTH", b"3")],
   body=b"abc")
ok("cl-body-with-crlf", S + b"Content-Length: 6\r\n\r\n\r\n\r\nab",
   headers=[(b"Content-Length", b"6")], body=b"\r\n\r\nab")
HUGE_BODY = Limits(max_body_size=2**63 - 1)
# 2**63-1 is a valid length (then the body is missing); 2**63 is not.
err("cl-2^63-1", S + b"Content-Length: 9223372036854775807\r\n\r\n", "truncated",
    limits=HUGE_BODY)
err("cl-2^63-1-leading-zeros", S + b"Content-Length: 0009223372036854775807\r\n\r\n",
    "truncated", limits=HUGE_BODY)
err("cl-2^63", S + b"Content-Length: 9223372036854775808\r\n\r\n", "content_length_invalid",
    limits=HUGE_BODY)
err("cl-20-digits", S + b"Content-Length: 10000000000000000000\r\n\r\n",
    "content_length_invalid", limits=HUGE_BODY)
err("cl-2^63-1-default-limits", S + b"Content-Length: 9223372036854775807\r\n\r\n",
    "body_too_large")
err("cl-plus", S + b"Content-Length: +5\r\n\r\nhello", "content_length_invalid")
err("cl-minus", S + b"Content-Length: -1\r\n\r\n", "content_length_invalid")
err("cl-hex", S + b"Content-Length: 0x5\r\n\r\nhello", "content_length_invalid")
err("cl-list", S + b"Content-Length: 5, 5\r\n\r\nhello", "content_length_invalid")
err("cl-inner-space", S + b"Content-Length: 5 5\r\n\r\nhello", "content_length_invalid")
err("cl-empty", S + b"Content-Length:\r\n\r\n", "content_length_invalid")
err("cl-underscore", S + b"Content-Length: 1_0\r\n\r\n", "content_length_invalid")
err("cl-decimal-point", S + b"Content-Length: 5.0\r\n\r\n", "content_length_invalid")
err("cl-non-ascii-digit", S + b"Content-Length: \xd9\xa3\r\n\r\n", "content_length_invalid")
err("cl-repeated-equal", S + b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "content_length_multiple")
err("cl-conflicting", S + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "content_length_multiple")
# CL_INVALID is checked before CL_MULTIPLE on the second line.
err("cl-second-invalid", S + b"Content-Length: 5\r\nContent-Length: x\r\n\r\n",
    "content_length_invalid")
# Field lines are judged in order: a semantic error on line 1 wins over a syntax error on 2.
err("cl-invalid-before-later-syntax", S + b"Content-Length: x\r\nBad Name: y\r\n\r\n",
    "content_length_invalid")
err("syntax-before-later-cl-invalid", S + b"Bad Name: y\r\nContent-Length: x\r\n\r\n",
    "header_whitespace")

# ---- Transfer-Encoding ----------------------------------------------------------------------

CHUNKS = b"5\r\nhello\r\n0\r\n\r\n"
ok("te-chunked", S + TE + b"\r\n" + CHUNKS, headers=[H_TE], body=b"hello")
ok("te-chunked-upper", S + b"Transfer-Encoding: CHUNKED\r\n\r\n" + CHUNKS,
   headers=[(b"Transfer-Encoding", b"CHUNKED")], body=b"hello")
ok("te-name-mixed-case", S + b"transfer-ENCODING: Chunked\r\n\r\n" + CHUNKS,
   headers=[(b"transfer-ENCODING", b"Chunked")], body=b"hello")
ok("te-ows", S + b"Transfer-Encoding: \t chunked \t\r\n\r\n" + CHUNKS, headers=[H_TE],
   body=b"hello")
err("te-gzip", S + b"Transfer-Encoding: gzip\r\n\r\n", "transfer_encoding")
err("te-identity", S + b"Transfer-Encoding: identity\r\n\r\n", "transfer_encoding")
err("te-gzip-chunked", S + b"Transfer-Encoding: gzip, chunked\r\n\r\n" + CHUNKS,
    "transfer_encoding")
err("te-chunked-chunked", S + b"Transfer-Encoding: chunked, chunked\r\n\r\n" + CHUNKS,
    "transfer_encoding")
err("te-chunked-param", S + b"Transfer-Encoding: chunked;q=1\r\n\r\n" + CHUNKS,
    "transfer_encoding")
err("te-quoted", S + b'Transfer-Encoding: "chunked"\r\n\r\n' + CHUNKS, "transfer_encoding")
err("te-empty", S + b"Transfer-Encoding:\r\n\r\n", "transfer_encoding")
err("te-repeated", S + TE + TE + b"\r\n" + CHUNKS, "transfer_encoding")
err("te-http10", S10 + TE + b"\r\n" + CHUNKS, "transfer_encoding")
err("te-and-cl", S + b"Content-Length: 5\r\n" + TE + b"\r\n" + CHUNKS, "content_length_and_chunked")
err("te-then-cl", S + TE + b"Content-Length: 5\r\n\r\n" + CHUNKS, "content_length_and_chunked")
# CL_AND_TE is only decided at the blank line; a bad CL line is an error on its own line.
err("te-and-cl-invalid", S + TE + b"Content-Length: x\r\n\r\n", "content_length_invalid")
err("te-cl-cl", S + b"Content-Length: 5\r\n" + TE + b"Content-Length: 5\r\n\r\n",
    "content_length_multiple")
# The head rules apply to every head, whatever its framing.
err("te-and-cl-204", b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n" + TE + b"\r\n",
    "content_length_and_chunked")
err("te-and-cl-head-request", S + b"Content-Length: 5\r\n" + TE + b"\r\n",
    "content_length_and_chunked", head_request=True)
err("te-gzip-head-request", S + b"Transfer-Encoding: gzip\r\n\r\n", "transfer_encoding",
    head_request=True)
err("te-and-cl-too-large", S + b"Content-Length: 268435457\r\n" + TE + b"\r\n",
    "content_length_and_chunked")

# ---- chunked body ----------------------------------------------------------------------------

CH = S + TE + b"\r\n"
ok("chunked-several", CH + b"3\r\nabc\r\n1\r\nd\r\n4\r\nefgh\r\n0\r\n\r\n", headers=[H_TE],
   body=b"abcdefgh")
ok("chunked-hex-upper", CH + b"A\r\n0123456789\r\n0\r\n\r\n", headers=[H_TE],
   body=b"0123456789")
ok("chunked-hex-lower", CH + b"a\r\n0123456789\r\n0\r\n\r\n", headers=[H_TE],
   body=b"0123456789")
ok("chunked-leading-zeros", CH + b"0005\r\nhello\r\n000\r\n\r\n", headers=[H_TE],
   body=b"hello")
ok("chunked-16-digits", CH + b"0000000000000005\r\nhello\r\n0000000000000000\r\n\r\n",
   headers=[H_TE], body=b"hello")
err("chunked-17-digits", CH + b"00000000000000005\r\nhello\r\n0\r\n\r\n", "chunk_size")
err("chunked-2^63", CH + b"8000000000000000\r\n", "chunk_size", limits=HUGE_BODY)
err("chunked-2^64-1", CH + b"ffffffffffffffff\r\n", "chunk_size", limits=HUGE_BODY)
err("chunked-2^63-1", CH + b"7fffffffffffffff\r\nabc", "truncated", limits=HUGE_BODY)
err("chunked-2^63-1-default-limits", CH + b"7fffffffffffffff\r\n", "body_too_large")
ok("chunked-data-with-crlf", CH + b"4\r\n\r\n\r\n\r\n0\r\n\r\n", headers=[H_TE],
   body=b"\r\n\r\n")
ok("chunked-empty-body", CH + b"0\r\n\r\n", headers=[H_TE])
ok("chunked-size-trailing-ws", CH + b"5 \t \r\nhello\r\n0\t\r\n\r\n", headers=[H_TE],
   body=b"hello")
ok("chunked-ext", CH + b"5;name=value\r\nhello\r\n0;last\r\n\r\n", headers=[H_TE],
   body=b"hello")
ok("chunked-ext-ws-and-quotes", CH + b'5 \t; a = "b c" ;d\r\nhello\r\n0\r\n\r\n',
   headers=[H_TE], body=b"hello")
ok("chunked-ext-empty", CH + b"5;\r\nhello\r\n0\r\n\r\n", headers=[H_TE], body=b"hello")
ok("chunked-ext-obs-text", CH + b"5;n=\x80\xff\r\nhello\r\n0\r\n\r\n", headers=[H_TE],
   body=b"hello")
err("chunked-ext-soh", CH + b"5;a\x01\r\nhello\r\n0\r\n\r\n", "chunk_extension")
err("chunked-ext-del", CH + b"5;a=\x7f\r\nhello\r\n0\r\n\r\n", "chunk_extension")
err("chunked-ext-cr", CH + b"5;a\rb\r\nhello\r\n0\r\n\r\n", "chunk_extension")
err("chunked-ext-nul-last-chunk", CH + b"5\r\nhello\r\n0;\x00\r\n\r\n", "chunk_extension")
err("chunked-size-empty", CH + b"\r\nhello\r\n", "chunk_size")
err("chunked-size-leading-space", CH + b" 5\r\nhello\r\n0\r\n\r\n", "chunk_size")
err("chunked-size-plus", CH + b"+5\r\nhello\r\n0\r\n\r\n", "chunk_size")
err("chunked-size-minus", CH + b"-5\r\nhello\r\n0\r\n\r\n", "chunk_size")
err("chunked-size-0x", CH + b"0x5\r\nhello\r\n0\r\n\r\n", "chunk_size")
err("chunked-size-garbage", CH + b"5g\r\nhello\r\n0\r\n\r\n", "chunk_size")
err("chunked-size-ws-then-garbage", CH + b"5 g\r\nhello\r\n0\r\n\r\n", "chunk_size")
err("chunked-size-cr-before-ext", CH + b"5\r;a\r\nhello\r\n0\r\n\r\n", "chunk_size")
# The digit rule comes first: 17 digits with a bad extension is a size error.
err("chunked-17-digits-bad-ext", CH + b"00000000000000005;\x01\r\nhello\r\n", "chunk_size")
# After the data exactly CR LF; the first byte that differs is the error.
err("chunked-data-lf-only", CH + b"5\r\nhello\n0\r\n\r\n", "chunk_crlf")
err("chunked-data-cr-only", CH + b"5\r\nhello\r0\r\n\r\n", "chunk_crlf")
err("chunked-data-no-crlf", CH + b"5\r\nhello0\r\n\r\n", "chunk_crlf")
err("chunked-data-longer-than-size", CH + b"5\r\nhello!\r\n0\r\n\r\n", "chunk_crlf")
err("chunked-data-cr-cr", CH + b"5\r\nhello\r\r\n0\r\n\r\n", "chunk_crlf")
# Chunk-size and trailer lines are lines: a bare LF ends them.
ok("chunked-bare-lf-lines", CH + b"5\nhello\r\n0\n\n", headers=[H_TE], body=b"hello")
ok("chunked-trailers", CH + b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:\r\n\r\n",
   headers=[H_TE], body=b"hello")
# Only the syntax rules (and max_headers) apply to trailers, not the framing semantics.
ok("chunked-trailer-framing-names", CH + b"0\r\nContent-Length: x\r\nTransfer-Encoding: gzip\r\n"
   b"Connection: close\r\n\r\n", headers=[H_TE])
err("chunked-trailer-ws-before-colon", CH + b"0\r\nX y: z\r\n\r\n", "header_whitespace")
err("chunked-trailer-obs-fold", CH + b"0\r\nX: y\r\n z\r\n\r\n", "obs_fold")
err("chunked-trailer-no-colon", CH + b"0\r\nXyz\r\n\r\n", "header_no_colon")
err("chunked-trailer-bad-value", CH + b"0\r\nX: \x01\r\n\r\n", "header_value")
# The head (47 bytes, a 26-byte Transfer-Encoding line) fits; the trailers meet the limits.
TRAIL = Limits(max_headers=2, max_head_size=48, max_line_size=26)
ok("chunked-trailers-at-limit", CH + b"0\r\nA: 1\r\nB: 2\r\n\r\n", headers=[H_TE],
   limits=TRAIL)
err("chunked-trailers-over-limit", CH + b"0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
    "too_many_headers", limits=TRAIL)
# The trailer section is measured from its first line: 46 bytes + CR LF = 48, then 49.
ok("chunked-trailer-section-at-limit", CH + b"0\r\n" + sized(b"A: ", 23) + sized(b"B: ", 23)
   + b"\r\n", headers=[H_TE], limits=TRAIL)
err("chunked-trailer-section-over-limit", CH + b"0\r\n" + sized(b"A: ", 23)
    + sized(b"B: ", 24) + b"\r\n", "head_too_large", limits=TRAIL)
ok("chunked-size-line-at-limit", CH + sized(b"5;", 28) + b"hello\r\n0\r\n\r\n", headers=[H_TE],
   body=b"hello", limits=TRAIL)
err("chunked-size-line-over-limit", CH + sized(b"5;", 29) + b"hello\r\n0\r\n\r\n",
    "line_too_long", limits=TRAIL)
err("chunked-size-line-incomplete-over-limit", CH + sized(b"5;", 28, b""), "line_too_long",
    limits=TRAIL)
err("chunked-trailer-line-over-limit", CH + b"0\r\n" + sized(b"A: ", 29) + b"\r\n",
    "line_too_long", limits=TRAIL)
# The chunk-size line does not count against max_head (check 2 is for heads and trailers).
ok("chunked-size-lines-not-head", CH + (sized(b"1;", 28) + b"x\r\n") * 4 + b"0\r\n\r\n",
   headers=[H_TE], body=b"xxxx", limits=TRAIL)

# ---- close-delimited, HEAD, 204, 304 ---------------------------------------------------------

ok("close-delimited-11", S + b"Content-Type: text/plain\r\n\r\nall of\r\nit",
   headers=[(b"Content-Type", b"text/plain")], body=b"all of\r\nit", keep_alive=False,
   close_delimited=True)
ok("close-delimited-10", S10 + b"\r\nbody", version="HTTP/1.0", body=b"body",
   keep_alive=False, close_delimited=True)
ok("close-delimited-empty", S + b"\r\n", keep_alive=False, close_delimited=True)
ok("close-delimited-looks-like-response", S + b"\r\n" + S + CL0 + b"\r\n",
   body=S + CL0 + b"\r\n", keep_alive=False, close_delimited=True)
# A keep-alive token does not rescue a body that only the close can end.
ok("close-delimited-10-keep-alive", S10 + b"Connection: keep-alive\r\n\r\nx", version="HTTP/1.0",
   headers=[(b"Connection", b"keep-alive")], body=b"x", keep_alive=False, close_delimited=True)
ok("close-delimited-205", b"HTTP/1.1 205 Reset Content\r\n\r\n", status=205,
   reason=b"Reset Content", keep_alive=False, close_delimited=True)
ok("head-request-cl", S + b"Content-Length: 5\r\n\r\n", headers=[(b"Content-Length", b"5")],
   head_request=True)
ok("head-request-next-response-trailing", S + b"Content-Length: 5\r\n\r\n" + S,
   headers=[(b"Content-Length", b"5")], trailing=S, head_request=True)
ok("head-request-no-framing", S + b"\r\n", head_request=True)
ok("head-request-chunked", S + TE + b"\r\n", headers=[H_TE], head_request=True)
err("head-request-cl-invalid", S + b"Content-Length: x\r\n\r\n", "content_length_invalid",
    head_request=True)
ok("204-with-cl", b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello", status=204,
   reason=b"No Content", headers=[(b"Content-Length", b"5")], trailing=b"hello")
ok("204-no-framing", b"HTTP/1.1 204 No Content\r\n\r\n", status=204, reason=b"No Content")
ok("304-chunked", b"HTTP/1.1 304 Not Modified\r\n" + TE + b"\r\n", status=304,
   reason=b"Not Modified", headers=[H_TE])
ok("304-http10", b"HTTP/1.0 304 Not Modified\r\n\r\n", status=304, version="HTTP/1.0",
   reason=b"Not Modified", keep_alive=False)

# ---- interim responses -------------------------------------------------------------------------

ok("interim-100", CONT + S + b"Content-Length: 2\r\n\r\nok",
   headers=[(b"Content-Length", b"2")], body=b"ok", interim=1)
ok("interim-103-fields-dropped", b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
   + S + CL0 + b"\r\n", headers=[H_CL0], interim=1)
ok("interim-several", CONT + b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 199 Whatever\r\n\r\n"
   + S + CL0 + b"\r\n", headers=[H_CL0], interim=3)
ok("interim-bare-lf", b"HTTP/1.1 100 Continue\n\n" + S + CL0 + b"\r\n", headers=[H_CL0],
   interim=1)
ok("interim-no-reason", b"HTTP/1.1 100\r\n\r\n" + S + CL0 + b"\r\n", headers=[H_CL0],
   interim=1)
ok("interim-then-head-request", CONT + S + b"Content-Length: 5\r\n\r\n",
   headers=[(b"Content-Length", b"5")], interim=1, head_request=True)
ok("interim-then-chunked", CONT + CH + CHUNKS, headers=[H_TE], body=b"hello", interim=1)
# keep_alive comes from the final head: each head has its own Connection tokens (fp_head).
ok("interim-connection-close-ignored", b"HTTP/1.1 100 Continue\r\nConnection: close\r\n\r\n"
   + S + CL0 + b"\r\n", headers=[H_CL0], interim=1)
# Each head carries its own version: an HTTP/1.0 interim does not make the final one 1.0.
ok("interim-http10-then-http11", b"HTTP/1.0 100 Continue\r\n\r\n" + S + CL0 + b"\r\n",
   headers=[H_CL0], interim=1)
ok("interim-cl-ignored", b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n" + S + CL0
   + b"\r\n", headers=[H_CL0], interim=1)
err("interim-101", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
    "unsolicited_101")
err("interim-101-after-100", CONT + b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "unsolicited_101")
# At the blank line: CL_AND_TE, then 101, then the interim count.
err("interim-101-beats-limit", b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "unsolicited_101",
    limits=Limits(max_interim=0))
err("interim-101-cl-and-te", b"HTTP/1.1 101 Switching Protocols\r\nContent-Length: 0\r\n"
    + TE + b"\r\n", "content_length_and_chunked")
err("interim-cl-and-te", b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n" + TE + b"\r\n",
    "content_length_and_chunked")
err("interim-cl-invalid", b"HTTP/1.1 100 Continue\r\nContent-Length: x\r\n\r\n",
    "content_length_invalid")
err("interim-te-http10", b"HTTP/1.0 100 Continue\r\n" + TE + b"\r\n", "transfer_encoding")
err("interim-bad-final-status", CONT + b"HTTP/1.1 20 OK\r\n\r\n", "status")
err("interim-only", CONT, "truncated")
# The 101 is judged when its head ends, before anything after it is looked at.
err("interim-101-then-garbage", b"HTTP/1.1 101 Switching Protocols\r\n\r\n\x00\x01garbage",
    "unsolicited_101")

# ---- keep-alive ----------------------------------------------------------------------------------

ok("ka-11-default", S + CL0 + b"\r\n", headers=[H_CL0])
ok("ka-11-close", S + b"Connection: close\r\n" + CL0 + b"\r\n",
   headers=[(b"Connection", b"close"), H_CL0], keep_alive=False)
ok("ka-11-close-case", S + b"connection: CLOSE\r\n" + CL0 + b"\r\n",
   headers=[(b"connection", b"CLOSE"), H_CL0], keep_alive=False)
ok("ka-11-close-in-list", S + b"Connection: upgrade, \t close \t, x\r\n" + CL0 + b"\r\n",
   headers=[(b"Connection", b"upgrade, \t close \t, x"), H_CL0], keep_alive=False)
ok("ka-11-keep-alive-and-close", S + b"Connection: keep-alive, close\r\n" + CL0 + b"\r\n",
   headers=[(b"Connection", b"keep-alive, close"), H_CL0], keep_alive=False)
ok("ka-11-close-second-line", S + b"Connection: keep-alive\r\nConnection: close\r\n" + CL0
   + b"\r\n", headers=[(b"Connection", b"keep-alive"), (b"Connection", b"close"), H_CL0],
   keep_alive=False)
ok("ka-11-empty-elements", S + b"Connection: ,, close ,,\r\n" + CL0 + b"\r\n",
   headers=[(b"Connection", b",, close ,,"), H_CL0], keep_alive=False)
ok("ka-11-closed-is-not-close", S + b"Connection: closed\r\n" + CL0 + b"\r\n",
   headers=[(b"Connection", b"closed"), H_CL0])
ok("ka-11-close-in-other-field", S + b"X-Connection: close\r\n" + CL0 + b"\r\n",
   headers=[(b"X-Connection", b"close"), H_CL0])
ok("ka-10-default", S10 + CL0 + b"\r\n", version="HTTP/1.0", headers=[H_CL0], keep_alive=False)
ok("ka-10-keep-alive", S10 + b"Connection: keep-alive\r\n" + CL0 + b"\r\n", version="HTTP/1.0",
   headers=[(b"Connection", b"keep-alive"), H_CL0])
ok("ka-10-keep-alive-case", S10 + b"Connection: Keep-Alive\r\n" + CL0 + b"\r\n",
   version="HTTP/1.0", headers=[(b"Connection", b"Keep-Alive"), H_CL0])
ok("ka-10-keep-alive-and-close", S10 + b"Connection: close, keep-alive\r\n" + CL0 + b"\r\n",
   version="HTTP/1.0", headers=[(b"Connection", b"close, keep-alive"), H_CL0],
   keep_alive=False)
# Tokens are comma-separated: "keep-alive close" is one token, neither of the two.
ok("ka-10-no-comma", S10 + b"Connection: keep-alive close\r\n" + CL0 + b"\r\n",
   version="HTTP/1.0", headers=[(b"Connection", b"keep-alive close"), H_CL0], keep_alive=False)
ok("ka-10-keep-alive-field-only", S10 + b"Keep-Alive: timeout=5\r\n" + CL0 + b"\r\n",
   version="HTTP/1.0", headers=[(b"Keep-Alive", b"timeout=5"), H_CL0], keep_alive=False)
ok("ka-10-keep-alive-cl-body", S10 + b"Connection: keep-alive\r\nContent-Length: 1\r\n"
   b"\r\nz", version="HTTP/1.0", headers=[(b"Connection", b"keep-alive"),
                                          (b"Content-Length", b"1")], body=b"z")
ok("ka-11-chunked-close", S + b"Connection: close\r\n" + TE + b"\r\n" + CHUNKS,
   headers=[(b"Connection", b"close"), H_TE], body=b"hello", keep_alive=False)
ok("ka-head-request-10", S10 + b"Connection: keep-alive\r\n\r\n", version="HTTP/1.0",
   headers=[(b"Connection", b"keep-alive")], head_request=True)

# ---- bytes after the response --------------------------------------------------------------------

ok("trailing-next-response", S + b"Content-Length: 2\r\n\r\nhi" + S + CL0 + b"\r\n",
   headers=[(b"Content-Length", b"2")], body=b"hi", trailing=S + CL0 + b"\r\n")
ok("trailing-after-chunked", CH + CHUNKS + b"\x00junk\r\n", headers=[H_TE], body=b"hello",
   trailing=b"\x00junk\r\n")
ok("trailing-after-cl-zero", S + CL0 + b"\r\n\r\n\r\n", headers=[H_CL0], trailing=b"\r\n\r\n")
ok("trailing-after-bare-lf-head", b"HTTP/1.1 304 Not Modified\n\nnext", status=304,
   reason=b"Not Modified", trailing=b"next")

# ---- end of input --------------------------------------------------------------------------------

err("eof-no-bytes", b"", "no_response")
err("eof-in-version", b"HTTP/1.", "truncated")
err("eof-after-status-line", S, "truncated")
err("eof-in-field", S + b"Content-Len", "truncated")
err("eof-before-blank-line", S + CL0, "truncated")
err("eof-in-blank-line", S + CL0 + b"\r", "truncated")
err("eof-in-cl-body", S + b"Content-Length: 5\r\n\r\nhell", "truncated")
err("eof-cl-body-missing", S + b"Content-Length: 5\r\n\r\n", "truncated")
err("eof-in-chunk-size", CH + b"5", "truncated")
err("eof-in-chunk-data", CH + b"5\r\nhel", "truncated")
err("eof-after-chunk-data", CH + b"5\r\nhello", "truncated")
err("eof-between-chunk-cr-lf", CH + b"5\r\nhello\r", "truncated")
err("eof-in-trailers", CH + b"0\r\n", "truncated")
err("eof-in-trailer-line", CH + b"0\r\nX: y\r\n", "truncated")
ok("eof-completes-close-delimited", S10 + b"\r\npartial", version="HTTP/1.0", body=b"partial",
   keep_alive=False, close_delimited=True)
ok("eof-after-complete", S + b"Content-Length: 1\r\n\r\nx", headers=[(b"Content-Length", b"1")],
   body=b"x")

# Guard against helper slips: every id names one case.
assert len({c.id for c in CASES}) == len(CASES), "duplicate case id"
