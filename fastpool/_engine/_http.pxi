# Binding of csrc/fp_http.h: ResponseParser, RawResponse, parse_response, the request writer.
# Included from _core.pyx. The C parser is the specification's implementation; this layer only
# moves bytes in and builds Python objects out (lazily where it can).

from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize, PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE

from fastpool._engine.fp_http cimport *

from fastpool._model.codes import protocol_error as _protocol_error, request_error as _request_error
from fastpool._model.codes import PARSE_ERRORS as _PARSE_ERRORS, WRITE_ERRORS as _WRITE_ERRORS
from fastpool._model.limits import DEFAULT_LIMITS as _DEFAULT_LIMITS


# The C enum and fastpool._model.codes must describe the same codes; checked once at import.
cdef _check_codes():
    cdef int code
    for code in list(_PARSE_ERRORS) + list(_WRITE_ERRORS):
        if not (-70 <= code <= -2):
            raise ImportError(f"fastpool._model.codes has a code outside the C range: {code}")
    if FP_NEED_MORE != -1 or FP_E_BUFFER != -70:
        raise ImportError("csrc/fp_http.h and fastpool/_model/codes.py disagree")

_check_codes()


cdef int _limits_from(object limits, fp_limits *out) except -1:
    if limits is None:
        limits = _DEFAULT_LIMITS
    out.max_headers = limits.max_headers
    out.max_line = limits.max_line_size
    out.max_head = limits.max_head_size
    out.max_interim = limits.max_interim
    out.max_body = limits.max_body_size
    return 0


cdef list _spans_to_pairs(bytes head, const fp_span *spans, uint32_t n):
    cdef const char *h = PyBytes_AS_STRING(head)
    cdef uint32_t i
    cdef list out = []
    for i in range(n):
        out.append((PyBytes_FromStringAndSize(h + spans[i].name_off, spans[i].name_len),
                    PyBytes_FromStringAndSize(h + spans[i].value_off, spans[i].value_len)))
    return out


def decode_headers(bytes head, bytes spans):
    """[(name, value)] as latin-1 str pairs from a head and its spans (see _engine)."""
    cdef const char *h = PyBytes_AS_STRING(head)
    cdef const fp_span *s = <const fp_span *>PyBytes_AS_STRING(spans)
    cdef Py_ssize_t i, n = PyBytes_GET_SIZE(spans) // sizeof(fp_span)
    cdef list out = []
    for i in range(n):
        out.append((PyUnicode_DecodeLatin1(h + s[i].name_off, s[i].name_len, NULL),
                    PyUnicode_DecodeLatin1(h + s[i].value_off, s[i].value_len, NULL)))
    return out


def header_values(bytes head, bytes spans, bytes lower_name):
    """[value, ...] of the fields named lower_name (lower-case ASCII), case-insensitively,
    as latin-1 str, in order; without decoding the other fields (see _engine)."""
    cdef const char *h = PyBytes_AS_STRING(head)
    cdef const fp_span *s = <const fp_span *>PyBytes_AS_STRING(spans)
    cdef const unsigned char *want = <const unsigned char *>PyBytes_AS_STRING(lower_name)
    cdef Py_ssize_t i, j, n = PyBytes_GET_SIZE(spans) // sizeof(fp_span)
    cdef Py_ssize_t wlen = PyBytes_GET_SIZE(lower_name)
    cdef const unsigned char *name
    cdef unsigned char c
    cdef list out = []
    for i in range(n):
        if s[i].name_len != <uint32_t>wlen:
            continue
        name = <const unsigned char *>h + s[i].name_off
        for j in range(wlen):
            c = name[j]
            if c >= 0x41 and c <= 0x5a:  # field names are tokens: ASCII case folding
                c += 0x20
            if c != want[j]:
                break
        else:
            out.append(PyUnicode_DecodeLatin1(h + s[i].value_off, s[i].value_len, NULL))
    return out


cdef class RawResponse:
    """A parsed response: the final head's bytes and field spans, and the decoded body."""

    cdef readonly int status_code
    cdef readonly int http_minor
    cdef readonly bytes head
    cdef readonly bytes spans
    cdef readonly bytes body
    cdef readonly bint keep_alive
    cdef readonly int interim
    cdef readonly bytes trailing
    cdef uint32_t reason_off, reason_len

    @property
    def http_version(self):
        return "HTTP/1.1" if self.http_minor == 1 else "HTTP/1.0"

    @property
    def reason(self):
        return self.head[self.reason_off:self.reason_off + self.reason_len]

    @property
    def headers(self):
        return _spans_to_pairs(self.head, <const fp_span *>PyBytes_AS_STRING(self.spans),
                               <uint32_t>(len(self.spans) // sizeof(fp_span)))

    def __repr__(self):
        return f"<RawResponse {self.status_code} {len(self.body)} bytes>"


cdef RawResponse _raw_response(const fp_resp *r, const char *buf, size_t end, size_t length,
                               const fp_span *spans):
    cdef RawResponse res = RawResponse.__new__(RawResponse)
    res.status_code = r.head.status
    res.http_minor = r.head.minor_version
    res.head = PyBytes_FromStringAndSize(buf + r.head_off, r.head_len)
    res.spans = PyBytes_FromStringAndSize(<const char *>spans, r.head.num_headers * sizeof(fp_span))
    res.body = PyBytes_FromStringAndSize(buf + r.body_off, r.body_len)
    res.keep_alive = r.keep_alive
    res.interim = r.interim
    res.trailing = PyBytes_FromStringAndSize(buf + end, length - end)
    res.reason_off = r.head.reason_off
    res.reason_len = r.head.reason_len
    return res


cdef class ResponseParser:
    """Incremental parser of one response over a growing private buffer (see _engine)."""

    cdef fp_resp r
    cdef char *buf
    cdef size_t length, cap
    cdef fp_span *spans
    cdef int64_t end          # > 0 once complete
    cdef int64_t error        # the failing code, 0 while healthy
    cdef RawResponse _result

    def __cinit__(self, head_request=False, limits=None):
        cdef fp_limits lim
        _limits_from(limits, &lim)
        fp_resp_init(&self.r, &lim, 1 if head_request else 0)
        self.spans = <fp_span *>malloc(lim.max_headers * sizeof(fp_span))
        if self.spans == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.buf)
        free(self.spans)

    @property
    def complete(self):
        return self.end > 0

    cdef int _append(self, const char *data, size_t n) except -1:
        cdef size_t need = self.length + n
        cdef size_t cap
        cdef char *grown
        if n == 0:
            return 0  # (memcpy into a buffer not yet allocated is undefined, even of 0 bytes)
        if need > self.cap:
            cap = self.cap * 2 if self.cap else 4096
            while cap < need:
                cap *= 2
            grown = <char *>realloc(self.buf, cap)
            if grown == NULL:
                raise MemoryError()
            self.buf = grown
            self.cap = cap
        memcpy(self.buf + self.length, data, n)
        self.length = need
        return 0

    cdef bint _settle(self, int64_t rc) except -1:
        if rc > 0:
            self.end = rc
            return True
        if rc == FP_NEED_MORE:
            return False
        self.error = rc
        raise _protocol_error(rc)

    def feed(self, data):
        cdef Py_buffer view
        cdef int64_t rc
        if self.error:
            raise _protocol_error(self.error)
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            self._append(<const char *>view.buf, <size_t>view.len)
        finally:
            PyBuffer_Release(&view)
        if self.end > 0:
            return True  # already complete: the new bytes are trailing
        rc = fp_resp_parse(&self.r, self.buf, &self.length, self.spans)
        return self._settle(rc)

    def feed_eof(self):
        if self.error:
            raise _protocol_error(self.error)
        if self.end > 0:
            return True
        return self._settle(fp_resp_eof(&self.r, self.buf, self.length))

    def result(self):
        if self.error:
            raise _protocol_error(self.error)
        if self.end <= 0:
            raise RuntimeError("the response is not complete")
        if self._result is None:
            self._result = _raw_response(&self.r, self.buf, <size_t>self.end, self.length,
                                         self.spans)
        return self._result


def parse_response(data, head_request=False, limits=None, eof=False):
    """One-shot parse of a complete response; None when incomplete and not eof."""
    cdef ResponseParser p = ResponseParser(head_request, limits)
    if p.feed(data):
        return p.result()
    if eof and p.feed_eof():
        return p.result()
    return None


# ---- request writer ---------------------------------------------------------------------------

cdef size_t _MAX_STACK_FIELDS = 32


cdef bytes _field_bytes(object value):
    if type(value) is bytes:
        return <bytes>value
    return memoryview(value).tobytes()


cdef int _fill_fields(object fields, fp_field *out, Py_ssize_t n) except -1:
    """Points out[i] at the bytes of fields[i]; fields must stay alive while out is used."""
    cdef Py_ssize_t i
    cdef bytes name, value
    for i in range(n):
        name, value = fields[i]
        out[i].name = PyBytes_AS_STRING(name)
        out[i].name_len = PyBytes_GET_SIZE(name)
        out[i].value = PyBytes_AS_STRING(value)
        out[i].value_len = PyBytes_GET_SIZE(value)
    return 0


def encode_header_block(fields):
    """The pool's constant header lines, validated once ("name: value\\r\\n" each)."""
    fields = [(_field_bytes(k), _field_bytes(v)) for k, v in fields]
    cdef Py_ssize_t n = len(fields)
    cdef fp_field *f = <fp_field *>malloc((n or 1) * sizeof(fp_field))
    cdef size_t cap = 0
    cdef int64_t rc
    cdef bytes out
    if f == NULL:
        raise MemoryError()
    try:
        _fill_fields(fields, f, n)
        for name, value in fields:
            cap += len(name) + len(value) + 4
        out = PyBytes_FromStringAndSize(NULL, cap)
        rc = fp_write_fields(PyBytes_AS_STRING(out), cap, f, n)
        if rc < 0:
            raise _request_error(rc)
        return out
    finally:
        free(f)


def build_request(bytes method, bytes target, bytes block, fields, body):
    """One contiguous request buffer; InvalidRequestError before anything is produced."""
    cdef fp_field stack_fields[32]
    cdef fp_field *f = stack_fields
    cdef Py_ssize_t n = 0 if fields is None else len(fields)
    cdef int64_t content_length = -1
    cdef const char *body_ptr = NULL
    cdef size_t size
    cdef int64_t rc
    cdef bytes out
    if body is not None:
        if not isinstance(body, bytes):
            body = bytes(body)
        content_length = PyBytes_GET_SIZE(body)
        body_ptr = PyBytes_AS_STRING(body)
    if n > <Py_ssize_t>_MAX_STACK_FIELDS:
        f = <fp_field *>malloc(n * sizeof(fp_field))
        if f == NULL:
            raise MemoryError()
    try:
        if n:
            _fill_fields(fields, f, n)
        size = fp_request_size(len(method), len(target), len(block), f, n, content_length)
        out = PyBytes_FromStringAndSize(NULL, size)
        rc = fp_write_request(PyBytes_AS_STRING(out), size, method, len(method), target,
                              len(target), block, len(block), f, n, body_ptr, content_length)
        if rc < 0:
            raise _request_error(rc)
        if <size_t>rc != size:
            out = out[:rc]  # caller Content-Length lines were dropped
        return out
    finally:
        if f != stack_fields:
            free(f)
