"""The engine interface as code: what both engines (fastpool._engine._core in C, and
fastpool._engine._pure) provide, as typing Protocols. tests/test_engine_protocol.py checks
both engines against it, member by member and signature by signature; mypy checks the
drivers' use of it (fastpool/_engine/_core.pyi describes the compiled module).

csrc/fp_http.h, fp_conn.h and fp_tls.h are the specification of the behaviour: both engines
make the same decisions and raise the same exceptions (through fastpool._model.failures).
"""

from __future__ import annotations

from typing import Any, Callable, Generator, Optional, Protocol, Sequence, Tuple

from .._model.errors import FastpoolError
from .._model.limits import Limits
from .._model.response import RawExchange, Response


class RawResponse(Protocol):
    """A parsed response (ResponseParser.result(), parse_response()); read-only."""

    @property
    def status_code(self) -> int: ...
    @property
    def http_version(self) -> str: ...          # "HTTP/1.1" | "HTTP/1.0"
    @property
    def reason(self) -> bytes: ...
    @property
    def head(self) -> bytes: ...                # the final head, status line through blank line
    @property
    def spans(self) -> bytes: ...               # native uint32 quadruples, relative to head
    @property
    def body(self) -> bytes: ...                # decoded
    @property
    def keep_alive(self) -> bool: ...
    @property
    def interim(self) -> int: ...               # 1xx responses skipped
    @property
    def trailing(self) -> bytes: ...            # received after the response
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...


class ResponseParser(Protocol):
    """Incremental response parser. A ProtocolError leaves it failed: every later call
    raises it again."""

    def feed(self, data: Any) -> bool: ...          # True once the response is complete
    def feed_eof(self) -> bool: ...                 # the peer closed
    @property
    def complete(self) -> bool: ...
    def result(self) -> RawResponse: ...


class TLSContext(Protocol):
    """One client TLS configuration and its resumable session."""

    verify: bool

    def forget_session(self) -> None: ...


class Histogram(Protocol):
    """Latency histogram (ns), fixed memory, ~1.6 % precision (csrc/fp_hist.h)."""

    def record(self, value: int) -> None: ...
    def quantile(self, q: float) -> int: ...
    def merge(self, other: Any) -> None: ...
    def reset(self) -> None: ...
    @property
    def count(self) -> int: ...
    @property
    def min(self) -> int: ...
    @property
    def max(self) -> int: ...
    @property
    def mean(self) -> float: ...


class Connection(Protocol):
    """One keep-alive connection. Blocking mode (sync pools): exchange(). Step mode (async
    pools, and a sync pool's hedged requests): begin(), step() until STEP_DONE, take().
    set_blocking() switches between them, between exchanges. Pipelining: pipeline()
    (blocking), or take_next() between the responses of a burst begun with begin()
    (steps)."""

    # The pool's bookkeeping, read by the lane on the hot path (fastpool._policy.lifecycle).
    lane: int
    state: int
    born_ns: int
    retire_at_ns: int
    uses: int
    retire_uses: int
    tended: bool
    rtt_ns: int
    address: int

    def open(self, family: int, ip: str, port: int, tls: Optional[Any], host: str,
             blocking: bool, deadline_ns: int) -> None: ...
    def exchange(self, request: bytes, head: bool, write_timeout_ns: int,
                 read_timeout_ns: int, deadline_ns: int) -> RawExchange: ...
    def set_blocking(self, blocking: bool) -> None: ...
    def begin(self, request: bytes, head: bool) -> None: ...
    def step(self) -> int: ...
    def take(self) -> RawExchange: ...
    def take_next(self, head: bool) -> RawExchange: ...     # pipelining (fp_conn_next)
    def pipeline(self, burst: bytes, heads: Sequence[bool], write_timeout_ns: int,
                 read_timeout_ns: int, deadline_ns: int
                 ) -> Tuple[list[RawExchange], Optional[FastpoolError]]: ...
    def stale(self) -> bool: ...
    def fileno(self) -> int: ...
    def close(self) -> None: ...
    @property
    def reusable(self) -> bool: ...
    @property
    def resumed(self) -> bool: ...
    @property
    def tls_version(self) -> str: ...
    @property
    def sent(self) -> int: ...              # request bytes that reached the socket
    @property
    def written(self) -> bool: ...          # the whole request was written
    @property
    def received(self) -> int: ...          # response bytes received in this exchange
    @property
    def last_used_ns(self) -> int: ...      # when it last went idle (opened, or answered)


class Lane(Protocol):
    """The sync pool's hot path in one engine call, the AsyncPool's in three around its
    waits (see _core.Lane)."""

    closed: bool
    pick: Any

    def send(self, conn: Optional[Any], request: Any, timeout: Any, start: int,
             priority: bool = False) -> Optional[Response]: ...
    def take(self, priority: bool = False) -> Optional[Any]: ...
    def start(self, conn: Any, request: Any, read_at_once_ns: int) -> int: ...
    def finish(self, conn: Any, request: Any, start: int) -> Response: ...


class Park(Protocol):
    """An AsyncPool request parked on its connection: what its task awaits (a future to
    asyncio's Task) and when the wait gives up (see _pure/_park.py)."""

    silence: int    # ns: the phase's timeout (-1: none)
    deadline: int   # ns: the request's total deadline (0: none)
    at: int         # ns: when it expires (0: never)

    def limit(self, now: int) -> None: ...
    def wake(self, why: int) -> None: ...
    def fail(self, exc: BaseException) -> None: ...
    def wake_later(self, why: int) -> None: ...
    def done(self) -> bool: ...
    def result(self) -> int: ...
    def cancel(self, msg: Any = None) -> bool: ...
    def __await__(self) -> Generator[Any, None, None]: ...  # raises its error, else None


# Aliases: inside Engine, the names below are its own members.
_Connection = Connection
_TLSContext = TLSContext
_Lane = Lane
_Park = Park
_Histogram = Histogram
_ResponseParser = ResponseParser


class Engine(Protocol):
    """An engine module: fastpool._engine._core or fastpool._engine._pure."""

    # Read-only members (properties): a module's attributes are matched covariantly.
    @property
    def __name__(self) -> str: ...
    @property
    def STEP_DONE(self) -> int: ...
    @property
    def STEP_WANT_READ(self) -> int: ...
    @property
    def STEP_WANT_WRITE(self) -> int: ...
    @property
    def Connection(self) -> Callable[..., _Connection]: ...
    @property
    def TLSContext(self) -> Callable[..., _TLSContext]: ...
    @property
    def Lane(self) -> Callable[..., _Lane]: ...
    @property
    def Park(self) -> Callable[..., _Park]: ...
    @property
    def Histogram(self) -> Callable[[], _Histogram]: ...
    @property
    def ResponseParser(self) -> Callable[..., _ResponseParser]: ...

    def parse_response(self, data: Any, head_request: bool = False,
                       limits: Optional[Limits] = None,
                       eof: bool = False) -> Optional[RawResponse]: ...
    def encode_header_block(self, fields: Sequence[Tuple[bytes, bytes]]) -> bytes: ...
    def build_request(self, method: bytes, target: bytes, block: bytes,
                      fields: Optional[Sequence[Tuple[bytes, bytes]]],
                      body: Optional[bytes]) -> bytes: ...
    def encode_query(self, params: Any) -> bytes: ...
    def decode_headers(self, head: bytes, spans: bytes) -> list[tuple[str, str]]: ...
    def header_values(self, head: bytes, spans: bytes, lower_name: bytes) -> list[str]: ...


#: The names every engine module exports (the test compares both engines with this list).
ENGINE_NAMES = ("STEP_DONE", "STEP_WANT_READ", "STEP_WANT_WRITE", "Connection", "TLSContext",
                "Lane", "Park", "Histogram", "ResponseParser", "RawResponse", "parse_response",
                "encode_header_block", "build_request", "encode_query", "decode_headers",
                "header_values")
