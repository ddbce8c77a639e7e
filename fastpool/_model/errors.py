"""The error model, shared by both engines and both pools.

Every failure of a request is exactly one of two things, and a trading engine must always be
able to tell which:

* ``NotSentError``: no byte of the request reached the socket. The server cannot have acted on
  it; retrying is safe.
* ``MaybeSentError``: bytes were written. The server may have acted (placed the order); the
  pool never re-sends it on its own unless the method is idempotent and the caller allowed it.

The concrete classes below carry the phase and cause. Timeouts additionally derive from
``TimeoutException`` (httpx's name) and say which phase ran out in ``.phase``.

One error is neither: ``HTTPStatusError``, raised by ``Response.raise_for_status()``, is the
server's answer (a 4xx or 5xx), not a failure to get one; see its docstring for what it
says about an order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .response import Request, Response


class FastpoolError(Exception):
    """Base class of every error fastpool raises."""

    #: A request's failure: what was sent (method, redacted url, exact target) and what a
    #: strategy needs to reconcile it (client_order_id, expires_ms; see Pool.resolve()).
    request: Optional[Request] = None


class NotSentError(FastpoolError):
    """No byte of the request reached the socket: the server cannot have acted on it."""


class MaybeSentError(FastpoolError):
    """Bytes of the request were written: the server may have acted on it."""


class TimeoutException(FastpoolError):
    """A deadline ran out. ``phase`` is one of "connect", "pool", "write", "read"."""

    phase: str = ""

    def __init__(self, message: str = "", *, phase: str | None = None) -> None:
        super().__init__(message)
        if phase is not None:
            self.phase = phase


# --- never sent ----------------------------------------------------------------------------


class ConnectError(NotSentError):
    """A connection could not be opened: name resolution, refused, unreachable, reset."""


class ConnectTimeout(ConnectError, TimeoutException):
    """Opening a connection (TCP connect plus TLS handshake) ran out of time."""

    phase = "connect"


class OutageError(ConnectError):
    """The gateway is unreachable: background opens keep failing and no connection is open.
    Raised at once (nothing is sent) instead of letting every request wait out its own
    connect timeout; the pool keeps probing with back-off and recovers by itself."""


class TLSError(ConnectError):
    """The TLS handshake failed: untrusted, expired or mismatched certificate, protocol."""

    def __init__(self, message: str = "", *, verify_code: int = 0) -> None:
        super().__init__(message)
        #: OpenSSL's X509_V_ERR_* code when certificate verification failed, else 0.
        self.verify_code = verify_code


class PoolTimeout(NotSentError, TimeoutException):
    """No connection became free within the pool timeout."""

    phase = "pool"


class PoolClosed(NotSentError):
    """The pool was closed before the request could be sent."""


class InvalidRequestError(NotSentError, ValueError):
    """The request itself is malformed (method, target, header, body); nothing was written.

    ``code`` names the rule that was broken (see ``fastpool._model.codes``).
    """

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class StaleConnection(NotSentError):
    """A connection failed before any byte of the request was written to it (the server
    closed or reset it while it was idle). The pool replaces it and sends on a fresh one;
    this surfaces only when no connection could be had."""


class WriteTimeoutNotSent(NotSentError, TimeoutException):
    """The socket accepted no byte of the request before the write deadline."""

    phase = "write"


class PipelineNotSent(NotSentError):
    """A request of ``pool.pipeline()`` that was never written: the pipeline failed (its
    ``__cause__`` says how) before any byte of this request reached the socket."""


class EventLoopError(NotSentError, RuntimeError):
    """An AsyncPool was used from an event loop other than the one it is bound to while that
    one is still alive (running in another thread, or holding requests in flight). Nothing
    was written. An AsyncPool rebinds by itself when its loop was closed (a second
    ``asyncio.run()``) and nothing is in flight; otherwise make one pool per loop."""


class Interrupted(FastpoolError):
    """A signal handler's exception (KeyboardInterrupt, SystemExit, ...) interrupted the
    request. Never raised itself: the interrupt propagates unchanged (Ctrl-C must stop the
    program, not be caught by ``except Exception``), carrying one of the two subclasses below
    as its ``fastpool_error`` attribute, so a shutdown handler can tell whether an order may
    be live: ``getattr(exc, "fastpool_error", None)``."""


class InterruptedNotSent(Interrupted, NotSentError):
    """The interrupt came before any byte of the request reached the socket."""


class RateLimitedError(NotSentError):
    """The request was not carried out because of a rate limit; ``retry_after`` is the
    seconds until it may be tried again.

    Three ways, all certainly not executed (NotSent, safe to send again after retry_after):
    the pool's own budget would be exceeded (``rate_limits=`` with ``on_limit="raise"``, or a
    wait past the request's deadline); the pool is cooling down after a 429 or 418, and the
    request was not written; or this very request was answered 429 (rate limit: the exchange
    rejected it unprocessed, RFC 6585 §4) or 418 (Binance: the IP is banned), which starts
    that cooldown — then ``response`` is that response and ``status_code`` its status.
    ``scope`` is "pool" (every request waits) or "orders" (only order requests: Binance's
    order-count limit).
    """

    def __init__(self, message: str = "", *, retry_after: float = 0.0,
                 response: Optional[Response] = None, status_code: int = 0,
                 scope: str = "pool") -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.response = response
        self.status_code = status_code
        self.scope = scope


# --- the server answered --------------------------------------------------------------------


class HTTPStatusError(FastpoolError):
    """``raise_for_status()`` on a 4xx or 5xx response: the request arrived and the server
    answered. Neither NotSentError nor MaybeSentError: nothing failed in transport, so an
    ``except MaybeSentError`` handler that reconciles orders does not fire on a clean
    rejection. ``response`` is the Response, ``status_code`` its status.

    What the status says about an order (Binance's REST conventions; most exchanges follow
    them):

    * 4xx: the server refused the request; the order was not placed (a malformed or
      unsigned request, a rule broken, an unknown order to cancel). 429 and 418 are rate
      limits (``Retry-After`` says how long). One exception: Binance answers 409 when a
      cancel-replace half succeeded (read the body).
    * 5xx: the gateway or the matching engine failed to answer. For an order the outcome is
      UNKNOWN: it may have been placed. Treat a 5xx on an order like a MaybeSentError:
      query the order (by its client order id) before acting again.
    """

    def __init__(self, message: str, *, response: Response) -> None:
        super().__init__(message)
        self.response = response

    @property
    def status_code(self) -> int:
        return self.response.status_code


# --- maybe sent ----------------------------------------------------------------------------


class WriteError(MaybeSentError):
    """The connection failed after part of the request was written."""


class WriteTimeout(MaybeSentError, TimeoutException):
    """The write deadline ran out after part of the request was written."""

    phase = "write"


class InterruptedMaybeSent(Interrupted, MaybeSentError):
    """The interrupt came after bytes of the request were written: the server may have acted."""


class ReadError(MaybeSentError):
    """The connection failed (reset, closed, TLS failure) while waiting for the response."""


class ServerDisconnected(ReadError):
    """The server closed the connection after the request was written, before the response
    was complete. ``code`` is "no_response" (not a byte came back) or "truncated"."""

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class PipelineAborted(MaybeSentError):
    """A request of ``pool.pipeline()`` that was written but never answered: an earlier
    response of the same pipeline failed (its ``__cause__`` says how) and the connection was
    discarded. The server may have processed it — or none of the requests after the failure."""


class ReadTimeout(MaybeSentError, TimeoutException):
    """The response did not arrive (completely) within the read or total deadline."""

    phase = "read"


class ProtocolError(MaybeSentError):
    """The response is malformed; the connection it came on is discarded.

    ``code`` names the violated rule (see ``fastpool._model.codes``), identical on both engines.
    """

    def __init__(self, message: str = "", *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


__all__ = [
    "FastpoolError",
    "NotSentError",
    "MaybeSentError",
    "TimeoutException",
    "ConnectError",
    "ConnectTimeout",
    "OutageError",
    "TLSError",
    "PoolTimeout",
    "PoolClosed",
    "InvalidRequestError",
    "StaleConnection",
    "WriteTimeoutNotSent",
    "PipelineNotSent",
    "EventLoopError",
    "Interrupted",
    "InterruptedNotSent",
    "InterruptedMaybeSent",
    "RateLimitedError",
    "HTTPStatusError",
    "WriteError",
    "WriteTimeout",
    "ReadError",
    "ServerDisconnected",
    "ReadTimeout",
    "ProtocolError",
    "PipelineAborted",
]
