"""Attempts: whether a failed attempt may be sent again, and what the caller finally gets.

This is where order safety is decided, once, for both drivers: nothing that may have reached
the server is sent again unless the method is idempotent and the caller allowed retries
(RFC 9110 §9.2.2), and once any attempt may have reached it, the request as a whole may have.
"""

from __future__ import annotations

from typing import Optional

from .._model.errors import FastpoolError, MaybeSentError, NotSentError
from .stats import Stats

#: RFC 9110 §9.2.2. POST and PATCH are never re-sent by the pool.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})


def should_retry(exc: BaseException, *, fresh: bool, attempt: int, method: str,
                 retries: int) -> bool:
    """Whether a failed attempt may be sent again, on another connection (as Go's
    net/http shouldRetryRequest: one reason per branch).

    - NotSent on a connection that had been idle in the pool: the server closed or reset it
      while idle, and no byte of the request left. Sending again is always safe. (On a
      connection opened for this very request the failure is real: surface it.)
    - MaybeSent: only for idempotent methods, only `retries` times, only if allowed.
    - Anything else (an interrupt, a cancellation, a bug): never.
    """
    if isinstance(exc, NotSentError):
        return not fresh
    if isinstance(exc, MaybeSentError):
        return method in IDEMPOTENT_METHODS and attempt < retries
    return False


class Attempts:
    """The failed attempts of one request and the verdict after each (created at the first
    failure; the hot path never makes one).

    Once an attempt may have reached the server, whatever ends the request later (a retry
    that fails before sending, a pool timeout, a closed pool) surfaces as that MaybeSent
    error, with the last failure as its __cause__: the caller always learns the worst case.
    """

    __slots__ = ("method", "allowed", "deadline", "retried", "maybe_sent")

    def __init__(self, method: str, allowed: int, deadline: int) -> None:
        self.method = method
        self.allowed = allowed        # MaybeSent retries the caller allows
        self.deadline = deadline      # ns, 0 = none
        self.retried = 0              # MaybeSent retries used
        self.maybe_sent: Optional[MaybeSentError] = None

    def after(self, exc: BaseException, *, fresh: bool, stats: Stats, closed: bool,
              now: int) -> Optional[BaseException]:
        """After a failed attempt (its connection already dropped): None to send again, else
        the exception the caller must get. Counts retries and errors in stats."""
        if not isinstance(exc, FastpoolError):
            return exc  # interrupted or cancelled mid-exchange: nothing is retried
        if isinstance(exc, MaybeSentError) and self.maybe_sent is None:
            self.maybe_sent = exc
        if (should_retry(exc, fresh=fresh, attempt=self.retried, method=self.method,
                         retries=self.allowed)
                and not closed and not (self.deadline and now >= self.deadline)):
            stats.retries += 1
            if isinstance(exc, MaybeSentError):
                self.retried += 1
            return None
        return self.give_up(exc, stats)

    def give_up(self, exc: BaseException, stats: Stats) -> BaseException:
        """The exception that ends the request (counted once in stats)."""
        stats.failed(exc)
        if self.maybe_sent is not None and self.maybe_sent is not exc and not isinstance(
                exc, MaybeSentError):
            self.maybe_sent.__cause__ = exc
            return self.maybe_sent
        return exc
