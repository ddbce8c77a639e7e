"""Response: built from an engine's raw exchange in a few assignments; the rest is lazy."""

from __future__ import annotations

import datetime
import json as _json
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

from . import jsoncodec
from .errors import HTTPStatusError as HTTPStatusError  # its home before; still importable
from .headers import Headers
from .redact import DEFAULT_REDACT

if TYPE_CHECKING:
    from .url import Origin


class RawExchange(NamedTuple):
    """What both engines return from an exchange (built by the C engine directly as this
    tuple type, without a Python call). Times are CLOCK_MONOTONIC ns."""

    status: int          #: the final status code
    minor: int           #: HTTP/1.<minor>
    head: bytes          #: the final head, status line through the blank line
    spans: bytes         #: native uint32 quadruples (name_off, name_len, value_off, value_len)
    body: bytes          #: the decoded body
    reason_off: int      #: the reason phrase's offset in head
    reason_len: int
    t_start: int         #: the connection was in hand and the exchange began ("acquired")
    t_written: int       #: the last byte of the request was written
    t_first_byte: int    #: the first byte of the response arrived
    t_complete: int      #: the response was complete


class RequestInfo(NamedTuple):
    """What a Response knows of its request (built per request on the hot path)."""

    pool: ResponseContext
    method: str
    target: bytes
    start_ns: int        #: request() was called

_REASONS = {
    200: "OK", 201: "Created", 202: "Accepted", 204: "No Content", 301: "Moved Permanently",
    302: "Found", 304: "Not Modified", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 409: "Conflict", 418: "I'm a teapot",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout",
}


class Timings(NamedTuple):
    """CLOCK_MONOTONIC nanosecond stamps of one request (time.monotonic_ns's clock)."""

    start: int       # request() was called
    acquired: int    # a connection was in hand
    written: int     # the last byte of the request was written
    first_byte: int  # the first byte of the response arrived
    complete: int    # the response was complete

    @property
    def total(self) -> int:
        return self.complete - self.start

    @property
    def server(self) -> int:
        """Written to first byte: network round trip plus the server's time."""
        return self.first_byte - self.written


class Request:
    """What was sent, for error messages and logs (as httpx's response.request).

    ``url`` is safe to log: the values of secret query parameters (signature, apiKey, ...:
    fastpool._model.redact.DEFAULT_REDACT, plus a pool's own) read "[redacted]".
    ``target`` is the request target exactly as sent (bytes, query and signature
    included), for the rare caller that needs it: keep it out of logs. A request that
    failed carries one as ``error.request``, with what a strategy needs to find out what
    became of it: the caller's client order id (``newClientOrderId`` and the like, when one
    was given) and, for a signed request, ``expires_ms``: the server time after which the
    exchange refuses it (timestamp + recvWindow) — see Pool.resolve()."""

    __slots__ = ("method", "url", "target", "client_order_id", "expires_ms")
    method: str
    url: str
    target: bytes
    client_order_id: Optional[str]
    expires_ms: Optional[int]

    def __init__(self, method: str, url: str, target: bytes = b"", *,
                 client_order_id: Optional[str] = None,
                 expires_ms: Optional[int] = None) -> None:
        self.method = method
        self.url = url
        self.target = target
        self.client_order_id = client_order_id
        self.expires_ms = expires_ms

    def __repr__(self) -> str:
        return f"<Request [{self.method} {self.url}]>"


class Response:
    """An HTTP response, httpx-like: status_code, headers, content, text, json(), ...

    Built on the hot path with four assignments; everything else is derived on access from
    the engine's RawExchange and the RequestInfo."""

    __slots__ = ("status_code", "content", "_raw", "_ctx", "_headers", "_text")

    status_code: int
    content: bytes
    _raw: RawExchange
    _ctx: RequestInfo
    _headers: Headers
    _text: str

    def __repr__(self) -> str:
        return f"<Response [{self.status_code} {self.reason_phrase}]>"

    @property
    def http_version(self) -> str:
        return "HTTP/1.1" if self._raw.minor == 1 else "HTTP/1.0"

    @property
    def reason_phrase(self) -> str:
        raw = self._raw
        reason = raw.head[raw.reason_off:raw.reason_off + raw.reason_len].decode("latin-1")
        return reason or _REASONS.get(self.status_code, "")

    @property
    def headers(self) -> Headers:
        try:
            return self._headers
        except AttributeError:
            ctx = self._ctx.pool
            self._headers = Headers._lazy(ctx.decode, ctx.find, self._raw.head, self._raw.spans)
            return self._headers

    @property
    def encoding(self) -> str:
        ctype = self.headers.get("content-type", "")
        for param in ctype.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                return value.strip().strip('"')
        return "utf-8"  # JSON's encoding (RFC 8259), and what exchange gateways send

    @property
    def text(self) -> str:
        try:
            return self._text
        except AttributeError:
            try:
                self._text = self.content.decode(self.encoding, errors="replace")
            except LookupError:
                self._text = self.content.decode("utf-8", errors="replace")
            return self._text

    def json(self, **kwargs: Any) -> Any:
        """The body parsed as JSON: what json.loads returns, with orjson when installed and
        it agrees (fastpool._model.jsoncodec); ``kwargs`` go to json.loads."""
        if kwargs:
            return _json.loads(self.content, **kwargs)
        return jsoncodec.loads(self.content)

    @property
    def head(self) -> bytes:
        """The response head exactly as received (status line through the blank line)."""
        return self._raw.head

    @property
    def timings(self) -> Timings:
        raw = self._raw
        return Timings(self._ctx.start_ns, raw.t_start, raw.t_written, raw.t_first_byte,
                       raw.t_complete)

    @property
    def elapsed(self) -> datetime.timedelta:
        return datetime.timedelta(microseconds=(self._raw.t_complete - self._ctx.start_ns) / 1000)

    @property
    def url(self) -> str:
        """The URL requested, safe to log: secret query values read "[redacted]" (see
        Request; ``response.request.target`` has the target as sent)."""
        ctx = self._ctx
        return ctx.pool.origin.url(ctx.target, ctx.pool.redact)

    @property
    def request(self) -> Request:
        return Request(self._ctx.method, self.url, self._ctx.target)

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    def raise_for_status(self) -> Response:
        """HTTPStatusError for a 4xx or 5xx status (what it means for an order: its
        docstring), else the response itself."""
        if self.status_code >= 400:
            kind = "Client error" if self.status_code < 500 else "Server error"
            raise HTTPStatusError(
                f"{kind} '{self.status_code} {self.reason_phrase}' for {self._ctx.method} "
                f"{self.url}",
                response=self)
        return self


class ResponseContext:
    """What a pool's responses share: the engine's header decoder and finder, the origin
    (for .url) and the names of the query parameters whose values .url and messages hide
    (lower-case; a pool's ``redact=`` through fastpool._model.redact.redact_names)."""

    __slots__ = ("decode", "find", "origin", "redact")

    def __init__(self, decode: Callable[[bytes, bytes], list[tuple[str, str]]],
                 find: Callable[[bytes, bytes, bytes], list[str]], origin: Origin,
                 redact: frozenset[str] = DEFAULT_REDACT) -> None:
        self.decode = decode
        self.find = find
        self.origin = origin
        self.redact = redact


_new = object.__new__
_tuple_new = tuple.__new__


def request_info(pool: ResponseContext, method: str, target: bytes, start_ns: int) -> RequestInfo:
    """RequestInfo without NamedTuple's Python-level __new__ (called per request)."""
    return _tuple_new(RequestInfo, (pool, method, target, start_ns))


def make_response(raw: RawExchange, ctx: RequestInfo) -> Response:
    """A Response around an engine's RawExchange and its RequestInfo (the pools' hot path:
    four assignments)."""
    r = _new(Response)
    r.status_code = raw.status
    r.content = raw.body
    r._raw = raw
    r._ctx = ctx
    return r
