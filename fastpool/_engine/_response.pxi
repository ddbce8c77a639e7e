# Building fastpool.Response on the hot path without generic attribute calls.
#
# Response is a plain Python class with __slots__ (shared by both engines). Setting its four
# slots through setattr cost ~0.45 us per request here (type lookups, descriptor calls);
# writing them at the member descriptors' offsets, after tp_alloc, costs a fraction. The
# offsets are read once per class from its member descriptors (CPython's public
# descrobject.h), checked to be object slots; any surprise falls back to setattr.

from cpython.ref cimport Py_INCREF, Py_DECREF
from cpython.tuple cimport PyTuple_SET_ITEM

from fastpool._model.response import RawExchange as _RawExchange, RequestInfo as _RequestInfo

cdef extern from "Python.h":
    ctypedef struct PyObject
    ctypedef struct PyTypeObject:
        PyObject *(*tp_alloc)(PyTypeObject *, Py_ssize_t)
    ctypedef struct PyMemberDef:
        const char *name
        int type
        Py_ssize_t offset
        int flags
    ctypedef struct PyMemberDescrObject:
        PyMemberDef *d_member
    int T_OBJECT_EX
    int READONLY

_MemberDescriptor = type(type("_Probe", (), {"__slots__": ("x",)}).__dict__["x"])


cdef class _ResponseLayout:
    """The slot offsets of one Response class (or 0 offsets: use setattr)."""

    cdef object cls
    cdef Py_ssize_t status, content, raw, ctx
    cdef bint direct

    def __cinit__(self, cls):
        self.cls = cls
        self.direct = False
        try:
            self.status = self._offset("status_code")
            self.content = self._offset("content")
            self.raw = self._offset("_raw")
            self.ctx = self._offset("_ctx")
            self.direct = True
        except (KeyError, TypeError):
            pass

    cdef Py_ssize_t _offset(self, str name) except -1:
        descr = self.cls.__dict__[name]
        if type(descr) is not _MemberDescriptor:
            raise TypeError(name)
        cdef PyMemberDef *m = (<PyMemberDescrObject *>descr).d_member
        if m.type != T_OBJECT_EX or m.flags & READONLY or m.offset <= 0:
            raise TypeError(name)
        return m.offset


cdef inline void _put_slot(object obj, Py_ssize_t offset, object value):
    Py_INCREF(value)
    (<PyObject **>((<char *><PyObject *>obj) + offset))[0] = <PyObject *>value


cdef _ResponseLayout _layout = None


cdef object _new_response(object cls, object raw_exchange, object ctx):
    """A cls (fastpool.Response) around a RawExchange and a RequestInfo (both tuple
    subtypes, built by this engine)."""
    cdef tuple raw = <tuple>raw_exchange
    global _layout
    if _layout is None or _layout.cls is not cls:
        _layout = _ResponseLayout(cls)
    if not _layout.direct:
        response = cls.__new__(cls)
        response.status_code = raw[0]      # raw.status
        response.content = raw[4]          # raw.body
        response._raw = raw
        response._ctx = ctx
        return response
    cdef PyObject *o = (<PyTypeObject *>cls).tp_alloc(<PyTypeObject *>cls, 0)
    if o == NULL:
        raise MemoryError()
    response = <object>o
    Py_DECREF(response)  # tp_alloc's reference; the variable holds its own
    _put_slot(response, _layout.status, raw[0])    # raw.status
    _put_slot(response, _layout.content, raw[4])   # raw.body
    _put_slot(response, _layout.raw, raw)
    _put_slot(response, _layout.ctx, ctx)
    return response


def response_layout_direct(cls):
    """Whether responses of cls are built by direct slot writes (tests check fastpool's is)."""
    return _ResponseLayout(cls).direct


def new_response(cls, raw, ctx):
    """_new_response for tests: a cls around raw and ctx."""
    return _new_response(cls, raw, ctx)


# The named values of the hot path (fastpool._model.response): NamedTuple classes, i.e.
# tuple subtypes, allocated here like CPython's structseq does (tp_alloc for n items, then
# PyTuple_SET_ITEM) instead of through NamedTuple's Python-level __new__: as cheap as a tuple.

cdef int _check_named(object cls, Py_ssize_t n) except -1:
    if not (isinstance(cls, type) and issubclass(cls, tuple) and len(cls._fields) == n):
        raise ImportError(f"{cls!r} is not a {n}-field NamedTuple")
    return 0

_check_named(_RawExchange, 11)
_check_named(_RequestInfo, 4)


cdef inline object _alloc_named(object cls, Py_ssize_t n):
    cdef PyObject *o = (<PyTypeObject *>cls).tp_alloc(<PyTypeObject *>cls, n)
    if o == NULL:
        raise MemoryError()
    t = <object>o
    Py_DECREF(t)  # tp_alloc's reference; the variable holds its own
    return t


cdef inline void _set_item(object t, Py_ssize_t i, object value):
    Py_INCREF(value)  # PyTuple_SET_ITEM steals a reference
    PyTuple_SET_ITEM(t, i, value)


cdef object _request_info(object pool, object method, object target, int64_t start):
    """A RequestInfo (pool context, method, target, start_ns)."""
    cdef object t = _alloc_named(_RequestInfo, 4)
    _set_item(t, 0, pool)
    _set_item(t, 1, method)
    _set_item(t, 2, target)
    _set_item(t, 3, start)
    return t
