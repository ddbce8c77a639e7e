"""Chooses the engine once, at import: the C engine (fastpool._engine._core) or the pure one.

Both engines export the same names with the same behaviour and raise the same exceptions
(defined once, in fastpool._model.errors, with codes from fastpool._model.codes):

Parsing and writing (csrc/fp_http.h is the specification of both):

    ResponseParser(head_request=False, limits=DEFAULT_LIMITS)
        .feed(data) -> bool        append bytes; True once the response is complete. Bytes
                                   after the response go to .result().trailing.
        .feed_eof() -> bool        the peer closed; True when that completes the response
                                   (close-delimited body), else raises ProtocolError.
        .complete -> bool
        .result() -> RawResponse   once complete.
        A ProtocolError leaves the parser failed: every later call raises it again.

    RawResponse (attributes): status_code: int, http_version: str ("HTTP/1.1" | "HTTP/1.0"),
        reason: bytes, head: bytes (the final head, status line through blank line),
        spans: bytes (native uint32 quadruples name_off, name_len, value_off, value_len,
        relative to head), body: bytes (decoded), keep_alive: bool, interim: int (1xx
        skipped), trailing: bytes (received after the response), headers: list of
        (name, value) bytes pairs decoded from head and spans.

    parse_response(data, head_request=False, limits=DEFAULT_LIMITS, eof=False)
        -> RawResponse | None      one shot; None when incomplete and not eof.

    encode_header_block(fields) -> bytes
        fields: sequence of (name: bytes, value: bytes); validated like fp_check_field.
    build_request(method, target, block, fields, body) -> bytes
        body None: no body and no Content-Length; bytes (b"" included): Content-Length.
    encode_query(params) -> bytes     the query string (rules: _pure/_query.py, _model/params.py).
    decode_headers(head, spans) -> [(name, value)] latin-1 str pairs.
    header_values(head, spans, lower_name) -> [value] of the fields named lower_name (ASCII
        case-insensitive), without decoding the others.

Connections (csrc/fp_tls.h and fp_conn.h are the specification of both):

    TLSContext(*, verify, ca_file, ca_pem, cert_file, key_file, min_version, max_version)
        one TLS configuration and its resumable session; .forget_session().
    Connection(limits=None, bufsize=4096)
        .open(family, ip, port, tls, host, blocking, deadline_ns)   raises Connect/TLS errors
        .exchange(request, head, write_timeout_ns, read_timeout_ns, deadline_ns,
                  stale_after_ns=-1) -> raw tuple      blocking mode (sync pools); write =
                                   longest stall of the write, read = longest silence of the
                                   response, deadline = hard end; stale_after_ns is ignored
        .begin(request, head); .step() -> STEP_*; .take() -> raw tuple    step mode (async)
        Before writing (exchange, first step) the peer must have sent nothing and not closed,
        on any connection: else StaleConnection (NotSent), nothing written. A response
        followed by more bytes (ours or TLS-buffered) leaves .reusable False. An exception
        from outside the model (a signal handler's) escaping an exchange closes the
        connection and is marked by fastpool._model.failures.interrupted.
        Pipelining (fp_conn_next): several requests concatenated, written as one exchange,
        their responses read in order, the bytes after one the start of the next:
        .pipeline(burst, heads, write_timeout_ns, read_timeout_ns, deadline_ns)
            -> (raws, error)           blocking mode: the responses that came, and the
                                   failure that ended it early (None: all came)
        .begin(burst, heads[0]); .step() ...; .take_next(heads[i + 1]) -> raw tuple; ...
            .step(); .take()           step mode: take_next takes a response and goes on to
                                   the next; a doubt about the framing (the response ends
                                   keep-alive, the next is malformed) is the next step()'s
                                   failure. Either way the connection is then not reusable.
        .stale() -> bool, .reusable, .resumed, .sent, .written, .tls_version, .fileno(),
        .close(), .idle_since
        raw tuple: (status, http_minor, head, spans, body, reason_off, reason_len,
                    t_start, t_written, t_first_byte, t_complete)   (fastpool._model.response)
    STEP_DONE, STEP_WANT_READ, STEP_WANT_WRITE
    Histogram()  .record(ns), .quantile(q), .count, .min, .max, .mean, .merge(h)
    Failures are raised through fastpool._model.failures.failure(kind, ...), in both engines.

The C engine alone also has floor_latencies
(the raw C client loop the benchmarks compare against).
"""

from __future__ import annotations

import importlib.machinery
import os
import select
import warnings
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from .protocol import Engine

#: Written by setup.py next to where the C engine would be when it could not be built (the
#: compiler's or Cython's error, FASTPOOL_NO_EXTENSIONS=1): pip shows a build's output only
#: when the build fails, so the reason is kept for the import-time warning and
#: ``python -m fastpool info``. A successful build removes it.
NOT_BUILT_MARKER = "C_ENGINE_NOT_BUILT.txt"
_HERE = os.path.dirname(os.path.abspath(__file__))


class EngineWarning(UserWarning):
    """The C engine is not available: fastpool runs on the pure-Python engine."""


def _not_built_reason() -> Optional[str]:
    """What setup.py recorded when it could not build the C engine, or None."""
    try:
        with open(os.path.join(_HERE, NOT_BUILT_MARKER), encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _has_compiled_core() -> bool:
    return any(os.path.exists(os.path.join(_HERE, "_core" + suffix))
               for suffix in importlib.machinery.EXTENSION_SUFFIXES)


def _why_not_loaded(exc: ImportError) -> str:
    """Why the C engine did not load, in the terms a user can act on: not built at install
    time (and setup.py's reason), or built but failing to load (the loader's error)."""
    if _has_compiled_core():
        return f"it is installed but failed to load: {type(exc).__name__}: {exc}"
    reason = _not_built_reason()
    if reason is not None:
        return f"it was not built when fastpool was installed: {reason}"
    return ("this installation has no compiled C engine (no fastpool/_engine/_core extension "
            f"in {_HERE}): it was installed or checked out without building it")


#: Why the pure engine cannot run here (it waits in select.poll, as POSIX systems have it:
#: Linux, macOS, the BSDs), or None. Importing fastpool works regardless; opening a pool on
#: the pure engine raises this.
PURE_UNSUPPORTED: Optional[str] = (
    None if hasattr(select, "poll") else
    "fastpool's pure-Python engine needs select.poll(), which this platform lacks "
    "(fastpool runs on POSIX systems: Linux, macOS, the BSDs)")

if os.environ.get("FASTPOOL_NO_EXTENSIONS") == "1":
    from . import _pure as engine

    BACKEND = "python"
    LOAD_ERROR: Optional[str] = "FASTPOOL_NO_EXTENSIONS=1 is set"
else:
    try:
        from . import _core as engine  # type: ignore[no-redef]

        BACKEND = "c"
        LOAD_ERROR = None
    except ImportError as exc:
        from . import _pure as engine

        BACKEND = "python"
        LOAD_ERROR = _why_not_loaded(exc)
        # pip hides the build's own message when the fallback install succeeds: say it here,
        # once per process, since latency is what fastpool is for.
        warnings.warn(
            f"fastpool: the C engine is not available ({LOAD_ERROR}); using the pure-Python "
            "engine (same behaviour, higher latency). Install a C compiler, Python headers and "
            "OpenSSL's headers (libssl-dev), then reinstall; `python -m fastpool info` says "
            "more; FASTPOOL_NO_EXTENSIONS=1 selects the pure engine without this warning.",
            EngineWarning, stacklevel=2)


def get_engine(name: str | None = None) -> Engine:
    """The engine module for "c", "python", or None (the one chosen at import)."""
    if name is None:
        name = BACKEND
        if name == "c":
            return engine
    if name == "python":
        if PURE_UNSUPPORTED is not None:
            raise RuntimeError(PURE_UNSUPPORTED)
        from . import _pure

        return _pure
    if name == "c":
        try:
            from . import _core
        except ImportError as exc:
            raise ImportError(f"the C engine is not available: {_why_not_loaded(exc)}") from None
        return _core
    raise ValueError(f"engine must be 'c', 'python' or None, got {name!r}")
