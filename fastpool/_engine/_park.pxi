# Park: an AsyncPool request parked on its connection (the pure twin: _pure/_park.py, which
# says why it exists). Included from _core.pyx. asyncio is looked up at the first Park, so a
# sync-only program never imports it.

from libc.stdint cimport int64_t

cdef object _park_current_task = None   # loop -> its running task, or None
cdef object _park_cancelled = None      # asyncio.CancelledError


cdef _park_asyncio():
    global _park_current_task, _park_cancelled
    import asyncio
    import asyncio.tasks
    running = getattr(asyncio.tasks, "_current_tasks", None)
    # current_task(loop) is that dict's get (a Python function on 3.11, C from 3.12).
    _park_current_task = running.get if isinstance(running, dict) else asyncio.current_task
    _park_cancelled = asyncio.CancelledError


cdef class Park:
    """A request parked on its connection: when it gives up, and the future its task awaits
    (the protocol asyncio's Task uses). wake() and fail() resume the task at once; see
    fastpool/_engine/_pure/_park.py."""

    cdef public int64_t silence     # ns: the phase's timeout (-1: none)
    cdef public int64_t deadline    # ns: the request's total deadline (0: none)
    cdef public int64_t at          # ns: when it expires (0: never)
    cdef public object _asyncio_future_blocking
    cdef object _loop, _error, _wakeup, _context
    cdef long _value
    cdef bint _done, _yielded

    def __cinit__(self, object loop, int64_t silence, int64_t deadline):
        if _park_current_task is None:
            _park_asyncio()
        self._loop = loop
        self.silence = silence
        self.deadline = deadline
        self.at = 0
        self._asyncio_future_blocking = False

    def limit(self, int64_t now):
        """The wait (re)starts now: it expires after the silence, or at the deadline."""
        cdef int64_t at = now + self.silence if self.silence >= 0 else 0
        if self.deadline and (not at or self.deadline < at):
            at = self.deadline
        self.at = at

    def wake(self, long why):
        """Resolved by a loop callback (a reader or a writer: outside any task); the task
        resumes now."""
        if not self._done:
            self._value = why
            self._finish(True)

    def fail(self, exc):
        """As wake, with the exception the task raises."""
        if not self._done:
            self._error = exc
            self._finish(True)

    def wake_later(self, long why):
        """As wake, but the task resumes in the next loop iteration (as asyncio.Future's)."""
        if not self._done:
            self._value = why
            self._finish(False)

    cdef _finish(self, bint now):
        self._done = True
        wakeup = self._wakeup
        if wakeup is None:
            return  # not awaited yet: add_done_callback schedules the task
        context = self._context
        self._wakeup = None
        self._context = None
        if now and _park_current_task(self._loop) is None:
            if context is None:
                wakeup(self)
            else:
                context.run(wakeup, self)
        else:
            self._loop.call_soon(wakeup, self, context=context)

    # asyncio's Future protocol, as far as a Task uses it

    def get_loop(self):
        return self._loop

    def done(self):
        return self._done

    def cancelled(self):
        return self._done and isinstance(self._error, _park_cancelled)

    def add_done_callback(self, fn, *, context=None):
        if self._done:
            self._loop.call_soon(fn, self, context=context)
        else:
            self._wakeup = fn
            self._context = context

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self, msg=None):
        """Task.cancel() of the awaiting task (called from anywhere: never inline)."""
        if self._done:
            return False
        self._error = _park_cancelled() if msg is None else _park_cancelled(msg)
        self._finish(False)
        return True

    def __await__(self):
        return self

    def __iter__(self):
        return self

    def __next__(self):
        if not self._done:
            if self._yielded:
                raise RuntimeError("await wasn't used with future")
            self._yielded = True
            self._asyncio_future_blocking = True
            return self
        if self._error is not None:
            raise self._error
        # Done: `await park` gives None (the value is park.result()). A bare StopIteration
        # in __next__ is a NULL return, not an exception with its traceback per request.
        raise StopIteration
