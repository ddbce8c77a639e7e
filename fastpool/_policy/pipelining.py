"""Pipelining (RFC 9112 §9.3.2): which requests may share a pipeline, and what becomes of each
request of a burst when the pipeline ends early — decided once, for both drivers.

A pipeline writes a burst of requests on one connection at once and reads the responses in
order. Only the framing tells the responses apart, so the first doubt about it ends the
pipeline (the engines see to that: csrc/fp_conn.h, fp_conn_next) and every request after
that point is unanswered. For each one the caller must learn whether the server may have
processed it: that is whether any byte of it reached the socket, decided here from how far
the burst's write got. Then each unanswered request goes through its own Attempts (the one
NotSent/MaybeSent retry rule, fastpool._policy.attempts), exactly as a single request would:
sent again (on another connection, in a smaller pipeline) or given up.

Sans-IO: no sockets, no clocks; the drivers pass what the engine reported and `now`.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

from .._model.errors import FastpoolError, PipelineAborted, PipelineNotSent
from .attempts import Attempts
from .stats import Stats

#: What may be pipelined: safe and idempotent methods whose responses a client can always
#: tell apart (RFC 9112 §9.3.2: a client SHOULD NOT pipeline after a non-idempotent method).
#: OPTIONS, PUT and DELETE are idempotent too, but a trading gateway's PUT/DELETE act on
#: orders: a burst is for reading quotes, and a cancel goes on its own.
PIPELINE_METHODS = frozenset({"GET", "HEAD"})


def reached(offset: int, *, sent: int, written: bool, tls: bool) -> bool:
    """Whether any byte of the request that starts `offset` bytes into the burst may have
    reached the socket, given the burst's write progress (the engine's ``sent`` and
    ``written``). Under TLS ``sent`` counts wire bytes (records, with their overhead, and a
    record can carry several requests), so any byte sent counts for every request: MaybeSent
    is the safe side of the doubt."""
    if written:
        return True
    if not sent:
        return False
    return tls or sent > offset


def unanswered(error: FastpoolError, offsets: Sequence[int], first: int, *, sent: int,
               written: bool, tls: bool) -> List[FastpoolError]:
    """The failure of each request from index `first` on (offsets: where each request of the
    burst starts in it), after the pipeline ended at response `first` with `error`. Request
    `first` gets `error` itself (the engine's verdict for it); each later one a
    PipelineAborted (MaybeSent) if its bytes may have reached the socket, else a
    PipelineNotSent, with `error` as its cause."""
    out: List[FastpoolError] = [error]
    why = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    for offset in offsets[first + 1:]:
        later: FastpoolError
        if reached(offset, sent=sent, written=written, tls=tls):
            later = PipelineAborted(f"not answered: the pipeline ended at an earlier request "
                                    f"({why}); the server may have processed it")
        else:
            later = PipelineNotSent(f"not written: the pipeline failed before this request "
                                    f"({why})")
        later.__cause__ = error
        out.append(later)
    return out


class Burst:
    """The requests of one pipeline() call: each one's result (a Response or the exception
    that ends it) and which are still to be sent, in their order."""

    __slots__ = ("methods", "allowed", "deadline", "results", "attempts", "todo")

    def __init__(self, methods: Sequence[str], allowed: int, deadline: int) -> None:
        self.methods = methods
        self.allowed = allowed          # MaybeSent retries each request may use
        self.deadline = deadline        # ns, 0 = none
        self.results: List[Any] = [None] * len(methods)
        self.attempts: List[Optional[Attempts]] = [None] * len(methods)
        self.todo: List[int] = list(range(len(methods)))

    def _attempts(self, index: int) -> Attempts:
        a = self.attempts[index]
        if a is None:
            a = self.attempts[index] = Attempts(self.methods[index], self.allowed,
                                                self.deadline)
        return a

    def refuse(self, index: int, error: BaseException) -> None:
        """A request that will not be sent at all (a rate limit refused it): its result."""
        self.results[index] = error
        self.todo.remove(index)

    def attempted(self, sent: Sequence[int], responses: Sequence[Any],
                  errors: Sequence[BaseException], *, fresh: bool, stats: Stats,
                  closed: bool, now: int) -> None:
        """One attempt carried the requests `sent` (indices, in burst order): the first
        len(responses) were answered; errors (from unanswered()) are the rest's. Each
        unanswered request is sent again (it stays in todo) or given up, by its Attempts."""
        for index, response in zip(sent, responses):
            self.results[index] = response
        again: List[int] = []
        for index, exc in zip(sent[len(responses):], errors):
            verdict = self._attempts(index).after(exc, fresh=fresh, stats=stats,
                                                  closed=closed, now=now)
            if verdict is None:
                again.append(index)
            else:
                self.results[index] = verdict
        self.todo = again

    def give_up(self, error: BaseException, stats: Stats, copy: Any) -> None:
        """No attempt can be made (no connection within the pool timeout, the pool closed,
        the open failed): every request still to send ends, each with its own instance
        (copy(error)) or, if an earlier attempt may have reached the server, that MaybeSent
        error (Attempts.give_up)."""
        for n, index in enumerate(self.todo):
            exc = error if n == 0 else copy(error)
            self.results[index] = self._attempts(index).give_up(exc, stats)
        self.todo = []
