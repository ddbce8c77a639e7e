"""HTTP/1.1 response parser and request writer in pure Python.

csrc/fp_http.h is the specification of this module and of its C twin: the same rules, checked
in the same order, giving the same codes (fastpool._model.codes) for every input, however the input
was split across feed() calls.

Structure of the parser:

* The *line machine* (``_parse_head_lines``, ``_chunked``) is the reference implementation: it
  walks complete lines one at a time, keeps ``pos``/``scan`` like ``fp_head`` so that more bytes
  never rescan a validated line, and applies the header's checks in the header's order.
* ``_fast_head`` is an accelerator for the common case of a whole, well-formed, CRLF-only head
  in the buffer: one regex validates it and one ``findall`` extracts the framing fields.
  It only ever *accepts*; on anything unusual (a limit near, a duplicate or odd framing field,
  a syntax error) it returns 0 and the line machine decides, so every error and its precedence
  come from one place.
* Header spans are derived lazily from the validated head (``RawResponse.spans``): the pool
  rarely needs all of them, and recomputing from a validated head needs no checks.
"""

from __future__ import annotations

import re
from array import array
from typing import TYPE_CHECKING, NoReturn, Union

from ..._model.codes import PARSE_CODES, WRITE_CODES, protocol_error, request_error
from ..._model.limits import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    from ..._model.errors import ProtocolError

__all__ = [
    "RawResponse",
    "ResponseParser",
    "build_request",
    "encode_header_block",
    "parse_response",
]

# Return codes of csrc/fp_http.h, by their names in the one shared table.
NEED_MORE = -1
E_VERSION = PARSE_CODES["version"]
E_STATUS = PARSE_CODES["status"]
E_REASON = PARSE_CODES["reason"]
E_HEADER_NAME = PARSE_CODES["header_name"]
E_HEADER_NO_COLON = PARSE_CODES["header_no_colon"]
E_HEADER_WS = PARSE_CODES["header_whitespace"]
E_HEADER_VALUE = PARSE_CODES["header_value"]
E_OBS_FOLD = PARSE_CODES["obs_fold"]
E_TOO_MANY_HEADERS = PARSE_CODES["too_many_headers"]
E_LINE_TOO_LONG = PARSE_CODES["line_too_long"]
E_HEAD_TOO_LARGE = PARSE_CODES["head_too_large"]
E_CL_INVALID = PARSE_CODES["content_length_invalid"]
E_CL_MULTIPLE = PARSE_CODES["content_length_multiple"]
E_CL_AND_TE = PARSE_CODES["content_length_and_chunked"]
E_TE_UNSUPPORTED = PARSE_CODES["transfer_encoding"]
E_CHUNK_SIZE = PARSE_CODES["chunk_size"]
E_CHUNK_EXT = PARSE_CODES["chunk_extension"]
E_CHUNK_CRLF = PARSE_CODES["chunk_crlf"]
E_BODY_TOO_LARGE = PARSE_CODES["body_too_large"]
E_UNSOLICITED_101 = PARSE_CODES["unsolicited_101"]
E_TOO_MANY_INTERIM = PARSE_CODES["too_many_interim"]
E_TRUNCATED = PARSE_CODES["truncated"]
E_NO_RESPONSE = PARSE_CODES["no_response"]

E_METHOD = WRITE_CODES["method_invalid"]
E_TARGET = WRITE_CODES["target_invalid"]
E_FIELD_NAME = WRITE_CODES["header_name_invalid"]
E_FIELD_VALUE = WRITE_CODES["header_value_invalid"]
E_FIELD_FORBIDDEN = WRITE_CODES["header_forbidden"]
E_CL_MISMATCH = WRITE_CODES["content_length_mismatch"]

_INT63_MAX = 2**63 - 1
_INT63_MAX_DIGITS = b"9223372036854775807"

# tchar (RFC 9110 §5.6.2) and the bytes allowed in reason phrases, field values and chunk
# extensions: HTAB, SP, VCHAR, obs-text (everything but the other controls and DEL).
_TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
_TEXT = rb"\t\x20-\x7e\x80-\xff"

_TOKEN_RUN = re.compile(rb"[" + _TCHAR + rb"]*")
_TOKEN = re.compile(rb"[" + _TCHAR + rb"]+")
_NOT_TEXT = re.compile(rb"[^" + _TEXT + rb"]")
_HEX_RUN = re.compile(rb"[0-9A-Fa-f]*")


def _head_pattern(q: bytes) -> bytes:
    """A whole, strictly valid, CRLF-only head; q is appended to every quantifier.

    Value bytes exclude CR and LF, so each line ends at exactly one CRLF and the first
    CRLF CRLF ends the head. Every class is disjoint from the literal after it, so possessive
    quantifiers (q = b"+", Python >= 3.11, ~25% faster here) match exactly what plain ones do.
    """
    return (
        rb"HTTP/1\.[01] [1-9][0-9][0-9](?: [" + _TEXT + rb"]*" + q + rb")?\r\n"
        rb"(?:[" + _TCHAR + rb"]+" + q + rb":[" + _TEXT + rb"]*" + q + rb"\r\n)*" + q + rb"\r\n"
    )


try:
    _HEAD = re.compile(_head_pattern(b"+"))
except re.error:
    _HEAD = re.compile(_head_pattern(b""))
# The framing fields of a head validated by _HEAD, lowercased: every field line follows a CRLF
# and no value holds a CR, so this finds exactly those field lines.
_FRAMING = re.compile(rb"\r\n(content-length|transfer-encoding|connection):([^\r]*)")

# Writer: controls other than HTAB, and DEL, may not appear in a field value.
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_FORBIDDEN_FIELDS = frozenset((b"host", b"connection", b"transfer-encoding"))

# Parser states.
_S_HEAD = 0
_S_LENGTH = 1  # Content-Length body
_S_CLOSE = 2  # close-delimited body
_S_CSIZE = 3  # expecting a chunk-size line
_S_CDATA = 4  # inside chunk data
_S_CCR = 5  # expecting the CR after chunk data
_S_CLF = 6  # expecting the LF after chunk data
_S_TRAILER = 7  # trailer section
_S_DONE = 8
_S_FAILED = 9

# Decoded slices a chunked body keeps before joining them into one block: few enough that a
# body of tiny chunks costs ~1/_FOLD of an object per chunk, enough that a usual body (a few
# chunks) is joined once, at the end, as before.
_FOLD = 64

# The parser's buffer: the caller's bytes, or a bytearray once a second feed() appends to it.
_Buf = Union[bytes, bytearray]


def _spans(head: bytes) -> bytes:
    """RawResponse.spans of a head already validated, without the (name, value) pairs: what
    every response pays (Connection's raw tuple carries spans), so one split() and a few
    bytes methods per line instead of _fields' byte-by-byte OWS loops (bench/pure_costs.py).
    Validated content holds no CR, so the only CR of a line is the one before its LF."""
    out: list[int] = []
    pos = head.find(b"\n") + 1
    for line in head[pos:].split(b"\n")[:-2]:  # (the last two: the empty line and after it)
        colon = line.find(b":")
        rest = line[colon + 1:].lstrip(b" \t")
        out += (pos, colon, pos + len(line) - len(rest), len(rest.rstrip(b" \t\r")))
        pos += len(line) + 1
    return array("I", out).tobytes()


def _fields(head: bytes) -> tuple[list[int], list[tuple[bytes, bytes]]]:
    """(flat [name_off, name_len, value_off, value_len, ...], [(name, value), ...]) of a head
    already validated: one pass serves both RawResponse.spans and RawResponse.headers."""
    spans: list[int] = []
    headers: list[tuple[bytes, bytes]] = []
    pos = head.find(b"\n") + 1
    while True:
        nl = head.find(b"\n", pos)
        end = nl - 1 if nl > pos and head[nl - 1] == 13 else nl
        if end == pos:
            return spans, headers
        colon = head.find(b":", pos, end)
        vs = colon + 1
        while vs < end and head[vs] in b" \t":
            vs += 1
        ve = end
        while ve > vs and head[ve - 1] in b" \t":
            ve -= 1
        spans += (pos, colon - pos, vs, ve - vs)
        headers.append((head[pos:colon], head[vs:ve]))
        pos = nl + 1


class RawResponse:
    """A parsed response: see fastpool._engine for the meaning of each attribute."""

    __slots__ = (
        "status_code",
        "http_version",
        "reason",
        "head",
        "body",
        "keep_alive",
        "interim",
        "trailing",
        "_spans",
        "_headers",
    )

    status_code: int
    http_version: str
    reason: bytes
    head: bytes
    body: bytes
    keep_alive: bool
    interim: int
    trailing: bytes
    _spans: bytes | None
    _headers: list[tuple[bytes, bytes]] | None

    def __init__(self, status_code: int, http_version: str, reason: bytes, head: bytes,
                 body: bytes, keep_alive: bool, interim: int, trailing: bytes) -> None:
        self.status_code = status_code
        self.http_version = http_version
        self.reason = reason
        self.head = head
        self.body = body
        self.keep_alive = keep_alive
        self.interim = interim
        self.trailing = trailing
        # Derived from head on first use (most callers read a few fields, if any).
        self._spans = self._headers = None

    @property
    def spans(self) -> bytes:
        """Native uint32 quadruples (name_off, name_len, value_off, value_len) into head."""
        if self._spans is None:
            self._spans = _spans(self.head)
        return self._spans

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """(name, value) pairs in order, names as received, values without surrounding OWS."""
        headers = self._headers
        if headers is None:
            headers = self._derive_fields()
        return headers

    def _derive_fields(self) -> list[tuple[bytes, bytes]]:
        spans, self._headers = _fields(self.head)
        self._spans = array("I", spans).tobytes()
        return self._headers

    def __repr__(self) -> str:
        return (
            f"<RawResponse {self.http_version} {self.status_code} {self.reason!r} "
            f"body={len(self.body)}B keep_alive={self.keep_alive} interim={self.interim} "
            f"trailing={len(self.trailing)}B>"
        )


def _status_line(c: bytes) -> int:
    """Status-line rules of fp_http.h on the line content c: 0 or an error code."""
    if len(c) < 9 or c[8] != 32 or (c[:8] != b"HTTP/1.1" and c[:8] != b"HTTP/1.0"):
        return E_VERSION
    digits = c[9:12]
    # bytes.isdigit() is ASCII-only; a leading '0' is a value below 100.
    if len(digits) != 3 or not digits.isdigit() or digits[0] == 48:
        return E_STATUS
    if len(c) > 12 and c[12] != 32:
        return E_STATUS
    if _NOT_TEXT.search(c, 13) is not None:
        return E_REASON
    return 0


def _field_syntax(c: bytes) -> int:
    """Field-line syntax of fp_http.h on non-empty content c: the colon's index, or a code."""
    if c[0] == 32 or c[0] == 9:
        return E_OBS_FOLD
    m = _TOKEN_RUN.match(c)
    assert m is not None  # (a * pattern matches every string)
    n = m.end()
    if n == len(c):
        return E_HEADER_NO_COLON
    b = c[n]
    if b == 58:
        if n == 0:
            return E_HEADER_NAME
    elif b == 32 or b == 9:
        return E_HEADER_WS
    else:
        return E_HEADER_NAME
    if _NOT_TEXT.search(c, n + 1) is not None:
        return E_HEADER_VALUE
    return n


def _decimal(v: bytes) -> int:
    """1*DIGIT with value <= 2**63-1 -> the value, else -1 (no int() digit-count limit hit)."""
    if not v.isdigit():
        return -1
    s = v.lstrip(b"0")
    if len(s) > 19 or (len(s) == 19 and s > _INT63_MAX_DIGITS):
        return -1
    return int(s) if s else 0


def _chunk_size(c: bytes) -> int:
    """Chunk-size line rules of fp_http.h on content c: the size (>= 0) or a code."""
    m = _HEX_RUN.match(c)
    assert m is not None  # (a * pattern matches every string)
    n = m.end()
    if n == 0 or n > 16:
        return E_CHUNK_SIZE
    size = int(c[:n], 16)
    if size > _INT63_MAX:
        return E_CHUNK_SIZE
    end = len(c)
    if n == end:  # the usual line: digits only
        return size
    while n < end and (c[n] == 32 or c[n] == 9):
        n += 1
    if n == end:
        return size
    if c[n] != 59:
        return E_CHUNK_SIZE
    if _NOT_TEXT.search(c, n + 1) is not None:
        return E_CHUNK_EXT
    return size


class ResponseParser:
    """Incremental parser of one response; see fastpool._engine for the interface."""

    __slots__ = (
        "_head_request",
        "_lim",
        # The bytes received and not yet consumed: the caller's bytes until a second feed()
        # (so a response arriving whole is never copied), then a bytearray. Until the body
        # it holds everything since the response began (heads are bounded by the limits); in
        # a chunked body, consumed framing is dropped after each feed() (_compact), as the C
        # decoder's in-place move does, so memory follows what is buffered, not the input's
        # length: max_body bounds decoded bytes, nothing bounds framing.
        "_buf",
        "_base",  # bytes dropped from the front of _buf (for positions in messages)
        "_state",
        # The line machine's resume state, as in fp_head / fp_chunked: the current head start,
        # the start of the first line not yet validated, the bytes already searched for LF.
        "_hs",
        "_pos",
        "_scan",
        # The current head, filled by its status line (or by _fast_head).
        "_nfields",
        "_status",
        "_minor",
        "_cl",
        "_te",
        "_close",
        "_ka",
        "_interim",
        "_he",  # end of the final head, start of the body
        "_head",  # the current head's bytes when _fast_head took it, else None
        # Chunked body: the decoded data as slices of the input, at most _FOLD of them (then
        # joined into one block of _blocks, so that tiny chunks cost no object each), its
        # length, the bytes left in the current chunk, the start of the trailer section.
        "_body",
        "_blocks",
        "_decoded",
        "_left",
        "_ts",
        "_error",
        "_result",
    )

    _head_request: bool
    _lim: Limits
    _buf: _Buf
    _base: int
    _state: int
    _hs: int
    _pos: int
    _scan: int
    _nfields: int
    _status: int
    _minor: int
    _cl: int
    _te: bool
    _close: bool
    _ka: bool
    _interim: int
    _he: int
    _head: bytes | None
    _body: list[_Buf]
    _blocks: list[_Buf]
    _decoded: int
    _left: int
    _ts: int
    _error: ProtocolError | None
    _result: RawResponse | None

    def __init__(self, head_request: bool = False, limits: Limits = DEFAULT_LIMITS) -> None:
        self._head_request = bool(head_request)
        self._lim = limits
        self._buf = b""
        self._base = 0
        self._state = _S_HEAD
        self._hs = self._pos = self._scan = 0
        self._head = None
        self._interim = 0
        self._error = None
        self._result = None

    # ---- public interface --------------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self._state == _S_DONE

    def feed(self, data) -> bool:
        """Appends data; True once the response is complete (later bytes go to trailing)."""
        state = self._state
        if state == _S_DONE:
            if data:
                result = self._result
                assert result is not None  # (_finish set it with _S_DONE)
                result.trailing += bytes(data)
            return True
        if state == _S_FAILED:
            assert self._error is not None  # (_fail set it with _S_FAILED)
            raise self._error
        buf = self._buf
        if not buf:
            buf = bytes(data)
        elif data:
            if type(buf) is bytes:
                buf = bytearray(buf)
            buf += data
        else:
            return False
        self._buf = buf
        r = self._run(buf)
        if r == 0:
            return True
        if r == NEED_MORE:
            return False
        self._fail(r)

    def feed_eof(self) -> bool:
        """The peer closed: True when that completes the response, else ProtocolError."""
        state = self._state
        if state == _S_DONE:
            return True
        if state == _S_FAILED:
            assert self._error is not None  # (_fail set it with _S_FAILED)
            raise self._error
        buf = self._buf
        if state == _S_HEAD and not buf:  # (a chunked body may have consumed all of _buf)
            self._fail(E_NO_RESPONSE)
        if state != _S_CLOSE:
            self._fail(E_TRUNCATED)
        self._finish(buf, bytes(buf[self._he:]), len(buf))
        return True

    def result(self) -> RawResponse:
        """The parsed response, once complete."""
        if self._result is None:
            if self._error is not None:
                raise self._error
            raise RuntimeError("the response is not complete")
        return self._result

    # ---- machinery --------------------------------------------------------------------

    def _fail(self, code: int) -> NoReturn:
        self._state = _S_FAILED
        self._error = protocol_error(
            code, f"in the line or chunk at byte {self._base + self._pos} of the response")
        raise self._error

    def _finish(self, buf: _Buf, body: bytes, end: int) -> None:
        head = self._head or bytes(buf[self._hs:self._he])
        nl = head.find(b"\n")
        # The reason is content[13..) of the status line; empty when the line stops at 12.
        self._result = RawResponse(
            self._status,
            "HTTP/1.1" if self._minor else "HTTP/1.0",
            head[13:nl - 1 if head[nl - 1] == 13 else nl],
            head,
            body,
            self._ka,
            self._interim,
            bytes(buf[end:]),
        )
        self._state = _S_DONE

    def _run(self, buf: _Buf) -> int:
        """Advances as far as buf allows: 0 when complete, NEED_MORE, or an error code."""
        while True:
            state = self._state
            if state == _S_HEAD:
                # The fast path only looks at heads of which no line was validated yet.
                he = self._fast_head(buf) if self._pos == self._hs else 0
                r = self._head_done(he) if he else self._parse_head_lines(buf)
                if r:
                    return r
            elif state == _S_LENGTH:
                end = self._he + self._cl
                if len(buf) < end:
                    return NEED_MORE
                self._finish(buf, bytes(buf[self._he:end]), end)
                return 0
            elif state == _S_CLOSE:
                if len(buf) - self._he > self._lim.max_body_size:
                    return E_BODY_TOO_LARGE
                return NEED_MORE
            elif state == _S_DONE:  # a head without a body
                return 0
            else:
                r = self._chunked(buf)
                if r == NEED_MORE:
                    # (_chunked folds in its loop; the slices taken just before a NEED_MORE,
                    # one per call, are folded here.)
                    if len(self._body) >= _FOLD:
                        self._fold()
                    if self._pos:
                        self._compact(buf)
                return r

    # ---- heads --------------------------------------------------------------------------

    def _fast_head(self, buf: _Buf) -> int:
        """The head's end when buf[hs..) holds a whole, valid, unremarkable head; else 0."""
        hs = self._hs
        lim = self._lim
        e = buf.find(b"\r\n\r\n", hs, hs + lim.max_head_size)
        if e < 0:
            return 0
        he = e + 4
        head = bytes(buf[hs:he])
        # Limits, measured only when a cheap bound does not settle them: no line is longer
        # than the head less its last two CRLFs; a status line takes >= 14 bytes and a field
        # line >= 4, so a short head cannot hold too many fields.
        n = he - hs
        if n - 4 > lim.max_line_size and max(map(len, head.split(b"\r\n"))) > lim.max_line_size:
            return 0
        if n - 16 > 4 * lim.max_headers and head.count(b"\n") - 2 > lim.max_headers:
            return 0
        if _HEAD.fullmatch(head) is None:
            return 0
        minor = head[7] - 48
        cl = -1
        te = close = ka = False
        for name, value in _FRAMING.findall(head.lower()):
            value = value.strip(b" \t")
            if name == b"connection":
                if value == b"keep-alive":
                    ka = True
                elif value == b"close":
                    close = True
                else:
                    for token in value.split(b","):
                        token = token.strip(b" \t")
                        if token == b"close":
                            close = True
                        elif token == b"keep-alive":
                            ka = True
            elif name == b"content-length":
                # Up to 18 digits always fits in 2**63-1; anything else goes the long way.
                if cl >= 0 or len(value) > 18 or not value.isdigit():
                    return 0
                cl = int(value)
            elif te or minor == 0 or value != b"chunked":
                return 0
            else:
                te = True
        self._head = head
        self._status = int(head[9:12])
        self._minor = minor
        self._cl = cl
        self._te = te
        self._close = close
        self._ka = ka
        return he

    def _parse_head_lines(self, buf: _Buf) -> int:
        """The line machine for heads (fp_head_parse): resumes at pos/scan."""
        lim = self._lim
        max_line = lim.max_line_size
        hs = self._hs
        pos = self._pos
        while True:
            # A line whose content would exceed max_line is an error whether or not its LF
            # is here, so the search never needs to look further than max_line + 2 bytes.
            nl = buf.find(b"\n", self._scan, pos + max_line + 2)
            if nl < 0:
                if len(buf) - pos > max_line + 1:
                    return E_LINE_TOO_LONG
                self._scan = len(buf)
                return NEED_MORE
            end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
            if end - pos > max_line:
                return E_LINE_TOO_LONG
            if nl + 1 - hs > lim.max_head_size:
                return E_HEAD_TOO_LARGE
            c = bytes(buf[pos:end])
            if pos == hs:
                r = _status_line(c)
                if r:
                    return r
                self._head = None
                self._status = int(c[9:12])
                self._minor = c[7] - 48
                self._nfields = 0
                self._cl = -1
                self._te = self._close = self._ka = False
            elif not c:
                return self._head_done(nl + 1)
            else:
                n = _field_syntax(c)
                if n < 0:
                    return n
                self._nfields += 1
                if self._nfields > lim.max_headers:
                    return E_TOO_MANY_HEADERS
                r = self._field_semantics(c[:n], c[n + 1:].strip(b" \t"))
                if r:
                    return r
            pos = self._pos = self._scan = nl + 1

    def _field_semantics(self, name: bytes, value: bytes) -> int:
        if len(name) not in (10, 14, 17):
            return 0
        name = name.lower()
        if name == b"content-length":
            n = _decimal(value)
            if n < 0:
                return E_CL_INVALID
            if self._cl >= 0:
                return E_CL_MULTIPLE
            self._cl = n
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked" or self._te or self._minor == 0:
                return E_TE_UNSUPPORTED
            self._te = True
        elif name == b"connection":
            for token in value.split(b","):
                token = token.strip(b" \t").lower()
                if token == b"close":
                    self._close = True
                elif token == b"keep-alive":
                    self._ka = True
        return 0

    def _head_done(self, he: int) -> int:
        """The blank line ending a head was reached at he: interim, framing, or error."""
        if self._cl >= 0 and self._te:
            return E_CL_AND_TE
        status = self._status
        if status < 200:
            if status == 101:
                return E_UNSOLICITED_101
            self._interim += 1
            if self._interim > self._lim.max_interim:
                return E_TOO_MANY_INTERIM
            self._hs = self._pos = self._scan = he
            return 0
        self._he = he
        keep = not self._close and (self._minor == 1 or self._ka)
        if self._head_request or status == 204 or status == 304:
            self._ka = keep
            self._finish(self._buf, b"", he)
        elif self._te:
            self._ka = keep
            if self._head is None:  # kept apart: _compact drops the head from _buf
                self._head = bytes(self._buf[self._hs:he])
            self._body = []
            self._blocks = []
            self._decoded = 0
            self._ts = 0
            self._state = _S_CSIZE
            self._pos = self._scan = he
        elif self._cl >= 0:
            if self._cl > self._lim.max_body_size:
                return E_BODY_TOO_LARGE
            self._ka = keep
            self._state = _S_LENGTH
        else:
            self._ka = False
            self._state = _S_CLOSE
        return 0

    # ---- chunked body ---------------------------------------------------------------------

    def _fold(self) -> None:
        parts = self._body
        self._blocks.append(b"".join(parts))
        parts.clear()

    def _compact(self, buf: _Buf) -> None:
        """Drops the consumed bytes buf[..pos) and rebases the offsets into what is left.

        After NEED_MORE in a chunked body what is left is at most a partial line (check 1
        bounds it by max_line + 1) or the CR LF after chunk data, so this copies little.
        del on a bytearray's front only moves its start, and CPython shrinks the storage
        once less than half of it is used: the buffer stays within twice what it holds."""
        pos = self._pos
        if isinstance(buf, bytearray):  # (buf is exactly bytes or bytearray)
            del buf[:pos]
        else:
            self._buf = buf[pos:]
        self._base += pos
        self._pos = 0
        scan = self._scan - pos  # (stale and below pos in the data states, which ignore it)
        self._scan = scan if scan > 0 else 0
        self._ts -= pos

    def _chunked(self, buf: _Buf) -> int:
        """fp_chunked_decode: 0 when the body and trailers are complete, NEED_MORE, or code."""
        lim = self._lim
        max_line = lim.max_line_size
        parts = self._body
        pos = self._pos
        state = self._state
        try:
            while True:
                if state == _S_CDATA:
                    left = self._left
                    avail = len(buf) - pos
                    if avail >= left + 2 and buf[pos + left:pos + left + 2] == b"\r\n":
                        # The usual case: the whole chunk and its CR LF are here.
                        parts.append(buf[pos:pos + left])
                        if len(parts) >= _FOLD:
                            self._fold()
                        pos = self._scan = pos + left + 2
                        state = _S_CSIZE
                        continue
                    if avail <= 0:
                        return NEED_MORE
                    if avail < left:
                        parts.append(buf[pos:])
                        self._left = left - avail
                        pos = len(buf)
                        return NEED_MORE
                    parts.append(buf[pos:pos + left])
                    pos += left
                    state = _S_CCR
                elif state == _S_CCR:
                    # CR and LF are checked one by one so that the first wrong byte decides,
                    # however the input was split.
                    if pos >= len(buf):
                        return NEED_MORE
                    if buf[pos] != 13:
                        return E_CHUNK_CRLF
                    pos += 1
                    state = _S_CLF
                elif state == _S_CLF:
                    if pos >= len(buf):
                        return NEED_MORE
                    if buf[pos] != 10:
                        return E_CHUNK_CRLF
                    pos = self._scan = pos + 1
                    state = _S_CSIZE
                else:
                    # A chunk-size line or a trailer line: the line rules of fp_http.h.
                    nl = buf.find(b"\n", self._scan, pos + max_line + 2)
                    if nl < 0:
                        if len(buf) - pos > max_line + 1:
                            return E_LINE_TOO_LONG
                        self._scan = len(buf)
                        return NEED_MORE
                    end = nl - 1 if nl > pos and buf[nl - 1] == 13 else nl
                    if end - pos > max_line:
                        return E_LINE_TOO_LONG
                    c = bytes(buf[pos:end])
                    if state == _S_CSIZE:
                        size = _chunk_size(c)
                        if size < 0:
                            return size
                        if self._decoded + size > lim.max_body_size:
                            return E_BODY_TOO_LARGE
                        self._decoded += size
                        if size:
                            self._left = size
                            state = _S_CDATA
                        else:
                            state = _S_TRAILER
                            self._ts = nl + 1
                            self._nfields = 0
                    else:
                        if nl + 1 - self._ts > lim.max_head_size:
                            return E_HEAD_TOO_LARGE
                        if not c:
                            self._pos = nl + 1
                            blocks = self._blocks
                            if blocks:
                                blocks.append(b"".join(parts))
                                parts = blocks
                            self._finish(buf, b"".join(parts), nl + 1)
                            return 0
                        n = _field_syntax(c)
                        if n < 0:
                            return n
                        self._nfields += 1
                        if self._nfields > lim.max_headers:
                            return E_TOO_MANY_HEADERS
                    pos = self._scan = nl + 1
        finally:
            if self._state != _S_DONE:
                self._pos = pos
                self._state = state


def parse_response(data, head_request=False, limits=DEFAULT_LIMITS, eof=False):
    """One-shot parse of data: a RawResponse, or None when incomplete and not eof."""
    p = ResponseParser(head_request, limits)
    if p.feed(data) or (eof and p.feed_eof()):
        return p._result
    return None


# ---- request writer -------------------------------------------------------------------------


def _check_field(name, value) -> int:
    """fp_check_field: 0, or E_FIELD_NAME / E_FIELD_FORBIDDEN / E_FIELD_VALUE (in that order)."""
    if _TOKEN.fullmatch(name) is None:
        return E_FIELD_NAME
    if len(name) in (4, 10, 17) and bytes(name).lower() in _FORBIDDEN_FIELDS:
        return E_FIELD_FORBIDDEN
    if _FIELD_VALUE_BAD.search(value) is not None:
        return E_FIELD_VALUE
    return 0


def encode_header_block(fields) -> bytes:
    """The pool's constant header block: every (name, value) validated, then "name: value\\r\\n"."""
    parts: list[bytes] = []
    for i, (name, value) in enumerate(fields):
        r = _check_field(name, value)
        if not r and len(name) == 14 and bytes(name).lower() == b"content-length":
            # The block goes on every request, bodiless ones included, and the writer adds
            # its own Content-Length: one here would frame requests wrongly (fp_write_fields).
            r = E_FIELD_FORBIDDEN
        if r:
            raise request_error(r, f"field {i}")
        parts += (name, b": ", value, b"\r\n")
    return b"".join(parts)


def build_request(method, target, block, fields, body) -> bytes:
    """fp_write_request: the whole request, validated before anything is produced.

    block is pre-encoded (encode_header_block); body None means no body and no
    Content-Length, bytes (b"" included) a Content-Length body.
    """
    if _TOKEN.fullmatch(method) is None:
        raise request_error(E_METHOD)
    if target != b"*" and _TARGET.fullmatch(target) is None:
        raise request_error(E_TARGET)
    parts = [method, b" ", target, b" HTTP/1.1\r\n", block]
    for i, (name, value) in enumerate(fields or ()):
        r = _check_field(name, value)
        if r:
            raise request_error(r, f"field {i}")
        if len(name) == 14 and bytes(name).lower() == b"content-length":
            # The writer writes its own Content-Length; a caller's one must agree with it.
            if body is None or _decimal(bytes(value).strip(b" \t")) != len(body):
                raise request_error(E_CL_MISMATCH, f"field {i}")
            continue
        parts += (name, b": ", value, b"\r\n")
    if body is None:
        parts.append(b"\r\n")
    else:
        parts.append(b"Content-Length: %d\r\n\r\n" % len(body))
        parts.append(body)
    return b"".join(parts)
