"""Turns a call like pool.post(path, json=...) into one request buffer, for both pools.

The pool's constant header lines (Host, User-Agent, the caller's `headers=`) are validated and
encoded once; a request adds only its target, its own fields and its body, and the engine's
writer assembles everything into one contiguous buffer.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from . import jsoncodec
from .errors import InvalidRequestError
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


_tuple_new = tuple.__new__


def _dumps(value: Any) -> bytes:
    """The body for ``json=``: the same bytes with or without orjson (fastpool._model.jsoncodec);
    InvalidRequestError for a value with no JSON form (NaN, a Decimal, ...)."""
    return jsoncodec.dumps(value)


class RequestBuilder:
    """Per pool: the origin, the pre-encoded constant header block, the engine's writer."""

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

    def _block_without(self, names: frozenset[bytes]) -> bytes:
        """The constant block minus fields a request overrides (cached per set of names)."""
        block = self._overrides.get(names)
        if block is None:
            kept = [f for f in self._const if f[0].lower() not in names]
            block = self._host_line + self._engine.encode_header_block(kept)
            if len(self._overrides) < 64:
                self._overrides[names] = block
        return block

    def target(self, url: str, params: ParamsTypes) -> bytes:
        """The target for url (cached: a strategy calls a handful of paths) plus params."""
        target = self._targets.get(url)
        if target is None:
            target = build_target(self._origin, url)
            if len(self._targets) >= _TARGET_CACHE_SIZE:
                self._targets.clear()
            self._targets[url] = target
        if params:
            try:
                query: bytes = self._encode_query(params)
            except UnicodeEncodeError:
                # A str query is sent as given (already encoded), so it must be ASCII; the
                # engines' ascii encode would otherwise escape as a bare UnicodeEncodeError,
                # outside the error model.
                raise InvalidRequestError(
                    "a str query string is sent as given and must be ASCII (percent-encode "
                    "it, or pass a dict or pairs to have it encoded)",
                    code="target_invalid") from None
            if query:
                return target + (b"&" if b"?" in target else b"?") + query
        return target

    def prepare(self, method: str, url: str, params: ParamsTypes = None,
                headers: HeaderTypes = None, content: Any = None, json: Any = None) -> Prepared:
        """The Prepared request for one call; InvalidRequestError when invalid.

        A bare request (no params, headers or body: a poll of the same endpoint) is built
        once and reused."""
        if params is None and headers is None and content is None and json is None:
            prepared = self._plain.get((method, url))
            if prepared is None:
                prepared = self._build(method, url, None, None, None, None)
                if len(self._plain) >= _TARGET_CACHE_SIZE:
                    self._plain.clear()
                self._plain[(method, url)] = prepared
            return prepared
        return self._build(method, url, params, headers, content, json)

    def _build(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
               content: Any, json: Any) -> Prepared:
        if not isinstance(method, str):
            raise InvalidRequestError(f"method must be a str, got {type(method).__name__}",
                                      code="method_invalid")
        method = method.upper()
        target = self.target(url, params)
        fields = encode_fields(headers) if headers else None
        if json is not None:
            if content is not None:
                raise InvalidRequestError("pass content or json, not both", code="body_invalid")
            body: Optional[bytes] = _dumps(json)
            if fields is None:
                fields = [(b"Content-Type", b"application/json")]
            elif not any(n.lower() == b"content-type" for n, _ in fields):
                fields.append((b"Content-Type", b"application/json"))
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
        block = self._block
        if fields:
            overridden = self._const_names.intersection(n.lower() for n, _ in fields)
            if overridden:
                block = self._block_without(frozenset(overridden))
        data = self._engine.build_request(method.encode("ascii", "replace"), target, block,
                                          fields, body)
        # tuple.__new__: NamedTuple's own __new__ is a Python function (~0.15 us more)
        return _tuple_new(Prepared, (data, method, target, method == "HEAD"))
