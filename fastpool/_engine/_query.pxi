# encode_query: the query string of a request, in C (the pure twin is _pure/_query.py).

from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.math cimport isfinite
from collections.abc import Mapping as _Mapping

from fastpool._model.params import (
    bad_item as _bad_item, bad_params as _bad_params, not_ascii as _not_ascii,
    not_utf8 as _not_utf8, param_text as _param_text,
)

cdef extern from "Python.h":
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size) except NULL

cdef const char *_HEX = b"0123456789ABCDEF"


cdef inline bint _unreserved(unsigned char c) nogil:
    # RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~" travel unencoded.
    return ((c >= 0x61 and c <= 0x7a) or (c >= 0x41 and c <= 0x5a) or (c >= 0x30 and c <= 0x39)
            or c == 0x2d or c == 0x2e or c == 0x5f or c == 0x7e)


cdef struct _qbuf:
    char *data
    size_t len, cap
    char *stack


cdef int _qgrow(_qbuf *b, size_t need) except -1:
    cdef size_t cap = b.cap * 2
    cdef char *grown
    while cap < b.len + need:
        cap *= 2
    if b.data == b.stack:
        grown = <char *>malloc(cap)
        if grown != NULL:
            memcpy(grown, b.data, b.len)
    else:
        grown = <char *>realloc(b.data, cap)
    if grown == NULL:
        raise MemoryError()
    b.data = grown
    b.cap = cap
    return 0


cdef int _qput(_qbuf *b, str text) except -1:
    cdef Py_ssize_t n, i
    cdef const unsigned char *s = <const unsigned char *>PyUnicode_AsUTF8AndSize(text, &n)
    cdef unsigned char c
    if b.len + 3 * <size_t>n + 1 > b.cap:
        _qgrow(b, 3 * <size_t>n + 1)
    for i in range(n):
        c = s[i]
        if _unreserved(c):
            b.data[b.len] = <char>c
            b.len += 1
        else:
            b.data[b.len] = b'%'
            b.data[b.len + 1] = _HEX[c >> 4]
            b.data[b.len + 2] = _HEX[c & 15]
            b.len += 3
    return 0


cdef int _qpair(_qbuf *b, str key, str value) except -1:
    if b.len:
        _qput_char(b, b'&')
    _qput(b, key)
    _qput_char(b, b'=')
    _qput(b, value)
    return 0


cdef inline int _qput_char(_qbuf *b, char c) except -1:
    if b.len + 1 > b.cap:
        _qgrow(b, 1)
    b.data[b.len] = c
    b.len += 1
    return 0


cdef str _qtext(object value, str name, bint in_list):
    # The common kinds here; every other (and every error) in the shared rule, so that both
    # engines send and refuse the same (fastpool/_model/params.py).
    cdef double d
    cdef str text
    if type(value) is str:
        return <str>value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if type(value) is int:
        try:
            return str(value)
        except ValueError:  # more digits than sys.get_int_max_str_digits()
            pass
    elif type(value) is float:
        d = value
        if isfinite(d):
            text = repr(value)
            if "e" not in text:
                return text
    return _param_text(value, name, in_list)


cdef int _qvalue(_qbuf *b, str k, object value) except -1:
    if type(value) is str:
        return _qpair(b, k, <str>value)
    if isinstance(value, (list, tuple)):
        for v in value:
            _qpair(b, k, _qtext(v, k, True))
        return 0
    return _qpair(b, k, _qtext(value, k, False))


def encode_query(params):
    """params as a query string (bytes): see fastpool._engine._pure._query.encode_query."""
    cdef char stack[512]
    cdef _qbuf b
    cdef str k = ""
    items = None
    if type(params) is dict:
        pass
    elif params is None:
        return b""
    elif isinstance(params, str):
        if not (<str>params).isascii():
            raise _not_ascii()
        return params.lstrip("?").encode("ascii")
    elif isinstance(params, (bytes, bytearray, memoryview)):
        return bytes(params).lstrip(b"?")
    elif isinstance(params, _Mapping):
        items = params.items()
    else:
        try:
            items = iter(params)
        except TypeError:
            raise _bad_params(params) from None
    b.data = stack
    b.stack = stack
    b.len = 0
    b.cap = sizeof(stack)
    try:
        if type(params) is dict:
            for key, value in (<dict>params).items():
                k = <str>key if type(key) is str else _param_text(key, None, False)
                _qvalue(&b, k, value)
        else:
            for item in items:
                # A pair: a str item of length 2 would unpack too, and mean nothing.
                if (type(item) is not tuple and not isinstance(item, (tuple, list))
                        or len(item) != 2):
                    raise _bad_item(item)
                key, value = item
                k = <str>key if type(key) is str else _param_text(key, None, False)
                _qvalue(&b, k, value)
        return PyBytes_FromStringAndSize(b.data, b.len)
    except UnicodeEncodeError:
        raise _not_utf8(k) from None
    finally:
        if b.data != b.stack:
            free(b.data)
