"""How a failed connection phase becomes an exception: one mapping, used by both engines.

The C engine reports (kind, bytes sent, code, ...) from csrc/fp_conn.h; the pure engine
catches OSError / ssl errors and reports the same kinds. Whether anything reached the socket
decides NotSent versus MaybeSent, here and nowhere else.
"""

from __future__ import annotations

from .codes import PARSE_ERRORS
from .errors import (
    ConnectError,
    ConnectTimeout,
    FastpoolError,
    InterruptedMaybeSent,
    InterruptedNotSent,
    ProtocolError,
    ReadError,
    ReadTimeout,
    ServerDisconnected,
    StaleConnection,
    TLSError,
    WriteError,
    WriteTimeout,
    WriteTimeoutNotSent,
)

# The FP_CE_* kinds of csrc/fp_conn.h (the C engine checks the values at import).
CONNECT = 1
CONNECT_TIMEOUT = 2
TLS = 3
WRITE = 4
WRITE_TIMEOUT = 5
READ = 6
READ_TIMEOUT = 7
CLOSED = 8
PROTOCOL = 9
NOMEM = 10


def failure(kind: int, message: str, *, sent: int = 0, code: int = 0,
            verify: int = 0) -> FastpoolError:
    """The exception for a failed phase; `sent` is how many request bytes reached the socket."""
    if kind == CONNECT:
        return ConnectError(message)
    if kind == CONNECT_TIMEOUT:
        return ConnectTimeout(message)
    if kind == TLS:
        return TLSError(message, verify_code=verify)
    if kind == WRITE:
        return WriteError(message) if sent else StaleConnection(message)
    if kind == WRITE_TIMEOUT:
        return WriteTimeout(message) if sent else WriteTimeoutNotSent(message)
    if kind == READ_TIMEOUT:
        return ReadTimeout(message)
    if kind == CLOSED:
        return ServerDisconnected(message, code=PARSE_ERRORS[code][0])
    if kind == PROTOCOL:
        name, text = PARSE_ERRORS[code]
        return ProtocolError(f"{text} ({message})" if message else text, code=name)
    return ReadError(message)  # READ, NOMEM: the request was written, the reply is lost


def interrupted(exc: BaseException, sent: int) -> BaseException:
    """Marks an exception that interrupted an exchange — raised by a signal handler (a
    KeyboardInterrupt, SystemExit, or whatever the handler raises) — with the request's fate,
    and returns it to be re-raised unchanged: ``exc.fastpool_error`` is InterruptedNotSent
    when no byte of the request reached the socket, else InterruptedMaybeSent. On Python
    3.11+ a note says so in the traceback. An exception already marked keeps its mark."""
    if getattr(exc, "fastpool_error", None) is not None:
        return exc
    if sent:
        error: FastpoolError = InterruptedMaybeSent(
            f"interrupted by {type(exc).__name__} after {sent} bytes of the request were "
            "written: the server may have acted on it")
    else:
        error = InterruptedNotSent(
            f"interrupted by {type(exc).__name__} before any byte of the request was written")
    try:
        exc.fastpool_error = error  # type: ignore[attr-defined]
        add_note = getattr(exc, "add_note", None)
        if add_note is not None:
            add_note(f"fastpool: {error}")
    except (AttributeError, TypeError):  # pragma: no cover - an exception type without __dict__
        pass
    return exc


def timed_out(*, written: bool, sent: int, total: bool) -> FastpoolError:
    """The exception for a wait that ran out in step mode (the async driver's timers): the
    read phase once the request was written, else the write phase, NotSent when no byte of
    it reached the socket. `total`: the request's total deadline is what expired."""
    what = "total deadline ran out" if total else "timed out"
    if written:
        return failure(READ_TIMEOUT, f"{what} waiting for the response", sent=sent)
    return failure(WRITE_TIMEOUT, f"{what} sending the request", sent=sent)
