"""Park: an AsyncPool request parked on its connection, the pure twin of _core's (_park.pxi).

It is what the request's task awaits, and says when the wait gives up (the phase's silence,
or the request's deadline). It is a future to asyncio's Task (the protocol Task.__step and
Task.cancel use: _asyncio_future_blocking, get_loop, add_done_callback, result, cancel)
rather than an asyncio.Future for one reason: the loop callback that moves the exchange on
(the connection's reader, or the writer) resumes the task at once, in the same loop
iteration. An asyncio.Future schedules its task's wake-up with call_soon: a Handle and one
more loop iteration per parked request (on asyncio a select(0) and the selector's
bookkeeping; `bench/instructions.py --only async-c-asyncio,async-c-uvloop` counts it). A
cancel or an expiry resumes the task as a Future would, with call_soon.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
from typing import Any, Callable, Generator, Optional

_running = getattr(asyncio.tasks, "_current_tasks", None)
#: loop -> its running task, or None: current_task(loop) is that dict's get (a Python
#: function on 3.11, C from 3.12).
_current_task: Callable[[Any], Any] = (_running.get if isinstance(_running, dict)
                                       else asyncio.current_task)


class Park:
    """A request parked on its connection: when it gives up, and the future its task awaits.
    wake() and fail() resume the task at once (see the module docstring)."""

    __slots__ = ("silence", "deadline", "at", "_loop", "_asyncio_future_blocking", "_done",
                 "_value", "_error", "_wakeup", "_context")

    def __init__(self, loop: asyncio.AbstractEventLoop, silence: int, deadline: int) -> None:
        self.silence = silence      # ns: the phase's timeout (-1: none)
        self.deadline = deadline    # ns: the request's total deadline (0: none)
        self.at = 0                 # ns: when it expires (0: never)
        self._loop = loop
        self._asyncio_future_blocking = False
        self._done = False
        self._value = 0
        self._error: Optional[BaseException] = None
        self._wakeup: Optional[Callable[..., Any]] = None  # the awaiting task's wake-up
        self._context: Any = None

    def limit(self, now: int) -> None:
        """The wait (re)starts now: it expires after the silence, or at the deadline."""
        at = now + self.silence if self.silence >= 0 else 0
        if self.deadline and (not at or self.deadline < at):
            at = self.deadline
        self.at = at

    def wake(self, why: int) -> None:
        """Resolved by a loop callback (a reader or a writer: outside any task); the task
        resumes now."""
        if not self._done:
            self._value = why
            self._finish(True)

    def fail(self, exc: BaseException) -> None:
        """As wake, with the exception the task raises."""
        if not self._done:
            self._error = exc
            self._finish(True)

    def wake_later(self, why: int) -> None:
        """As wake, but the task resumes in the next loop iteration (as asyncio.Future's)."""
        if not self._done:
            self._value = why
            self._finish(False)

    def _finish(self, now: bool) -> None:
        self._done = True
        wakeup, context = self._wakeup, self._context
        if wakeup is None:
            return  # not awaited yet: add_done_callback schedules the task
        self._wakeup = self._context = None
        # A task may be entered only while no other runs on the loop. Loop callbacks run
        # outside tasks, unless the loop is run re-entrantly (nest_asyncio): then, as when
        # not called from a loop callback, the wake-up is scheduled as asyncio.Future does.
        if now and _current_task(self._loop) is None:
            if context is None:
                wakeup(self)
            else:
                context.run(wakeup, self)
        else:
            self._loop.call_soon(wakeup, self, context=context)

    # ---- asyncio's Future protocol, as far as a Task uses it ---------------------------

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    def done(self) -> bool:
        return self._done

    def cancelled(self) -> bool:
        return self._done and isinstance(self._error, asyncio.CancelledError)

    def add_done_callback(self, fn: Callable[..., Any], *, context: Any = None) -> None:
        if self._done:
            self._loop.call_soon(fn, self, context=context)
        else:
            self._wakeup, self._context = fn, context

    def result(self) -> int:
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self, msg: Any = None) -> bool:
        """Task.cancel() of the awaiting task (called from anywhere: never inline)."""
        if self._done:
            return False
        self._error = asyncio.CancelledError() if msg is None else asyncio.CancelledError(msg)
        self._finish(False)
        return True

    def __await__(self) -> Generator[Any, None, None]:
        """Waits until it is resolved; raises its exception, else gives None (the value is
        result(): as the C twin, whose await would otherwise raise StopIteration(value),
        with its traceback, per request)."""
        if not self._done:
            self._asyncio_future_blocking = True
            yield self
        if not self._done:
            raise RuntimeError("await wasn't used with future")
        if self._error is not None:
            raise self._error
