"""Turns a call like pool.post(path, json=...) into one request buffer, for both pools.

The pool's constant header lines (Host, User-Agent, the caller's `headers=`) are validated and
encoded once; a request adds only its target, its own fields and its body, and the engine's
writer assembles everything into one contiguous buffer.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from . import jsoncodec
from .errors import InvalidRequestError
from .forms import FORM_CONTENT_TYPE, encode_form
from .headers import HeaderTypes, encode_fields
from .url import Origin, ParamsTypes, build_target

USER_AGENT = b"fastpool/0.1.0"
#: Methods whose request carries content: without any, they still say Content-Length: 0
#: (RFC 9110 §8.6: a user agent SHOULD send it when the method defines a meaning for content).
_CONTENT_METHODS = frozenset({"POST", "PUT", "PATCH"})
_TARGET_CACHE_SIZE = 1024


class Prepared(NamedTuple):
    """One request, ready for an engine: the bytes to write and what they say."""

    data: bytes      #: the whole request: request line, headers, body
    method: str      #: upper-case
    target: bytes    #: origin-form target, query included
    head: bool       #: a HEAD request (its response has no body whatever it says)
    hist: Any        #: the latency histogram of its endpoint (method + path as called)
    expires_ms: Optional[int]  #: signed: the server time after which it is refused


_tuple_new = tuple.__new__


def _dumps(value: Any) -> bytes:
    """The body for ``json=``: the same bytes with or without orjson (fastpool._model.jsoncodec);
    InvalidRequestError for a value with no JSON form (NaN, a Decimal, ...)."""
    return jsoncodec.dumps(value)


#: Endpoints (method + path as called) with a latency histogram of their own; beyond, the
#: rest share one ("other"): each histogram is ~30 KiB (csrc/fp_hist.h).
MAX_ENDPOINTS = 64
OTHER_ENDPOINT = "other"


class RequestBuilder:
    """Per pool: the origin, the pre-encoded constant header block, the engine's writer, and
    a latency histogram per endpoint (so the engine's hot path records a request's latency
    where it belongs without a lookup: the histogram travels in the Prepared request)."""

    def __init__(self, origin: Origin, engine: Any, headers: HeaderTypes = None) -> None:
        self._origin = origin
        self._engine = engine
        self._encode_query = engine.encode_query
        const = [(b"User-Agent", USER_AGENT)]
        names = {b"user-agent"}
        for name, value in encode_fields(headers):
            if name.lower() == b"user-agent":
                const = [f for f in const if f[0].lower() != b"user-agent"]
            const.append((name, value))
            names.add(name.lower())
        self._const = const
        self._const_names = frozenset(names)
        self._host_line = b"Host: " + origin.host_header + b"\r\n"
        # Validated here, once: a bad pool header fails the constructor, not every request.
        self._block = self._host_line + engine.encode_header_block(const)
        self._overrides: dict[frozenset[bytes], bytes] = {}
        self._targets: dict[str, bytes] = {}
        self._plain: dict[tuple[str, str], Prepared] = {}   # (method, url): bare requests
        #: "METHOD path" -> its histogram (see MAX_ENDPOINTS)
        self.endpoints: dict[str, Any] = {}

    def histogram(self, method: str, url: str) -> Any:
        """The latency histogram of an endpoint, made on first use."""
        key = f"{method} {url.split('?', 1)[0]}"
        hist = self.endpoints.get(key)
        if hist is None:
            if len(self.endpoints) >= MAX_ENDPOINTS:
                key = OTHER_ENDPOINT
                hist = self.endpoints.get(key)
            if hist is None:
                hist = self.endpoints[key] = self._engine.Histogram()
        return hist

    def reset_endpoints(self) -> None:
        for hist in self.endpoints.values():
            hist.reset()

    def _block_without(self, names: frozenset[bytes]) -> bytes:
        """The constant block minus fields a request overrides (cached per set of names)."""
        block = self._overrides.get(names)
        if block is None:
            kept = [f for f in self._const if f[0].lower() not in names]
            block = self._host_line + self._engine.encode_header_block(kept)
            if len(self._overrides) < 64:
                self._overrides[names] = block
        return block

    def path(self, url: str) -> bytes:
        """The target for url without a query of params (cached: a strategy calls a handful
        of paths)."""
        target = self._targets.get(url) if type(url) is str else None
        if target is None:  # (not a str: build_target raises InvalidURL, NotSent)
            target = build_target(self._origin, url)
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = target
        return target

    def query(self, params: ParamsTypes) -> bytes:
        """params encoded as the query (b"" for none)."""
        if not params:
            return b""
        # (Both engines raise InvalidRequestError, naming the parameter, for what cannot be
        # sent — a non-ASCII str query included: fastpool._model.params.)
        encoded: bytes = self._encode_query(params)
        return encoded

    def target(self, url: str, params: ParamsTypes) -> bytes:
        """The target for url plus params."""
        target = self.path(url)
        if params:
            query = self.query(params)
            if query:
                return target + (b"&" if b"?" in target else b"?") + query
        return target

    def prepare(self, method: str, url: str, params: ParamsTypes = None,
                headers: HeaderTypes = None, content: Any = None, json: Any = None,
                data: Any = None) -> Prepared:
        """The Prepared request for one call; InvalidRequestError when invalid.

        A bare request (no params, headers or body: a poll of the same endpoint) is built
        once and reused."""
        if (params is None and headers is None and content is None and json is None
                and data is None and type(method) is str and type(url) is str):
            prepared = self._plain.get((method, url))
            if prepared is None:
                prepared = self._build(method, url, None, None, None, None, None)
                if len(self._plain) >= _TARGET_CACHE_SIZE:
                    self._plain.clear()
                self._plain[(method, url)] = prepared
            return prepared
        return self._build(method, url, params, headers, content, json, data)

    def prepare_signed(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
                       content: Any, json: Any, data: Any, signer: Any,
                       timestamp_ms: int) -> Prepared:
        """As prepare, then signed: the signer sees the final method, path, encoded query and
        body, and returns the query and body to send (its signature included) and headers to
        add — so the signature covers exactly the bytes written."""
        method = _method(method)
        path = self.path(url)
        if b"?" in path:
            path, _, inline = path.partition(b"?")
            query = inline + (b"&" + self.query(params) if params else b"")
        else:
            query = self.query(params)
        fields, body = self._body(method, headers, content, json, data)
        signed = signer.sign(method, path, query, body, timestamp_ms)
        target = path + b"?" + signed.query if signed.query else path
        if signed.headers:
            fields = (fields or []) + list(signed.headers)
        return self._assemble(method, url, target, fields, signed.body, signed.expires_ms)

    def _build(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
               content: Any, json: Any, data: Any) -> Prepared:
        method = _method(method)
        target = self.target(url, params)
        fields, body = self._body(method, headers, content, json, data)
        return self._assemble(method, url, target, fields, body, None)

    def _body(self, method: str, headers: HeaderTypes, content: Any, json: Any,
              data: Any) -> tuple[Optional[list[tuple[bytes, bytes]]], Optional[bytes]]:
        """The request's own header fields and its body."""
        fields = encode_fields(headers) if headers else None
        given = (content is not None) + (json is not None) + (data is not None)
        if given > 1:
            raise InvalidRequestError("pass one of content, json or data", code="body_invalid")
        body: Optional[bytes]
        if json is not None:
            body = _dumps(json)
            fields = _with_type(fields, b"application/json")
        elif data is not None:
            body = encode_form(data, self._encode_query)
            fields = _with_type(fields, FORM_CONTENT_TYPE)
        elif content is not None:
            if isinstance(content, str):
                body = content.encode("utf-8")
            elif isinstance(content, (bytes, bytearray, memoryview)):
                body = bytes(content)
            else:
                raise InvalidRequestError(
                    f"content must be bytes or str, got {type(content).__name__}",
                    code="body_invalid")
        else:
            body = b"" if method in _CONTENT_METHODS else None
        return fields, body

    def _assemble(self, method: str, url: str, target: bytes,
                  fields: Optional[list[tuple[bytes, bytes]]], body: Optional[bytes],
                  expires_ms: Optional[int]) -> Prepared:
        block = self._block
        if fields:
            overridden = self._const_names.intersection(n.lower() for n, _ in fields)
            if overridden:
                block = self._block_without(frozenset(overridden))
        data = self._engine.build_request(method.encode("ascii", "replace"), target, block,
                                          fields, body)
        # tuple.__new__: NamedTuple's own __new__ is a Python function (~0.15 us more)
        return _tuple_new(Prepared, (data, method, target, method == "HEAD",
                                     self.histogram(method, url), expires_ms))


def _method(method: Any) -> str:
    if not isinstance(method, str):
        raise InvalidRequestError(f"method must be a str, got {type(method).__name__}",
                                  code="method_invalid")
    return method.upper()


def _with_type(fields: Optional[list[tuple[bytes, bytes]]],
               ctype: bytes) -> list[tuple[bytes, bytes]]:
    """fields with a Content-Type, unless the caller gave one."""
    if fields is None:
        return [(b"Content-Type", ctype)]
    if not any(n.lower() == b"content-type" for n, _ in fields):
        fields.append((b"Content-Type", ctype))
    return fields
