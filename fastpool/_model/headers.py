"""Headers: case-insensitive, multi-valued, decoded from the response bytes only when used."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, KeysView, Mapping, Sequence, Tuple, Union

from .errors import InvalidRequestError

HeaderTypes = Union["Headers", Mapping[Any, Any], Sequence[Tuple[Any, Any]], None]
_Decode = Callable[[bytes, bytes], "list[tuple[str, str]]"]
_Find = Callable[[bytes, bytes, bytes], "list[str]"]


class Headers(Mapping[str, str]):
    """Response (or request) headers, as in httpx.

    ``headers["Content-Type"]`` is case-insensitive; repeated fields are joined with ", "
    there and kept apart by ``get_list(name)``. Values are stripped of surrounding
    whitespace (the parser's spans exclude it). For a response, nothing is decoded until the
    first access: the engine keeps the head bytes and the field offsets, and looking up one
    name (``headers["x-mbx-used-weight-1m"]`` on every response, say) asks the engine to
    find just those fields, without decoding the rest.
    """

    __slots__ = ("_source", "_items", "_index")

    def __init__(self, headers: HeaderTypes = None) -> None:
        self._source: tuple[_Decode, _Find, bytes, bytes] | None = None
        self._index: dict[str, list[str]] | None = None
        if headers is None:
            self._items: list[tuple[str, str]] | None = []
        elif isinstance(headers, Headers):
            self._items = list(headers.multi_items())
        else:
            pairs = headers.items() if isinstance(headers, Mapping) else headers
            self._items = [(_text(k), _text(v).strip(" \t")) for k, v in pairs]

    @classmethod
    def _lazy(cls, decode: _Decode, find: _Find, head: bytes, spans: bytes) -> Headers:
        h = cls.__new__(cls)
        h._source = (decode, find, head, spans)
        h._items = None
        h._index = None
        return h

    def _pairs(self) -> list[tuple[str, str]]:
        if self._items is None:
            decode, _, head, spans = self._source  # type: ignore[misc]
            self._items = decode(head, spans)
            self._source = None
        return self._items

    def _values(self, name: str) -> list[str]:
        """The values of one field name, without decoding the others when that can wait."""
        source = self._source
        if source is not None:
            try:
                lower = name.lower().encode("latin-1")
            except UnicodeEncodeError:
                return []  # no field name can have it
            return source[1](source[2], source[3], lower)
        return self._lookup().get(name.lower(), [])

    def _lookup(self) -> dict[str, list[str]]:
        if self._index is None:
            index: dict[str, list[str]] = {}
            for name, value in self._pairs():
                index.setdefault(name.lower(), []).append(value)
            self._index = index
        return self._index

    def __getitem__(self, name: str) -> str:
        values = self._values(name)
        if not values:
            raise KeyError(name)
        return values[0] if len(values) == 1 else ", ".join(values)

    def get_list(self, name: str, split_commas: bool = False) -> list[str]:
        """Every value of a repeated field, in order (split on commas when asked)."""
        values = self._values(name)
        if not split_commas:
            return list(values)
        return [part.strip() for value in values for part in value.split(",")]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._values(name))

    def __iter__(self) -> Iterator[str]:
        return iter(self._lookup())

    def __len__(self) -> int:
        return len(self._lookup())

    def keys(self) -> KeysView[str]:
        """The header names, lower-cased (as httpx), once each."""
        return self._lookup().keys()

    def multi_items(self) -> list[tuple[str, str]]:
        """Every (name, value) as received, repeated names included, in order."""
        return list(self._pairs())

    @property
    def raw(self) -> list[tuple[bytes, bytes]]:
        return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in self._pairs()]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            other_items = other.multi_items()
        elif isinstance(other, Mapping):
            other_items = [(_text(k), _text(v)) for k, v in other.items()]
        else:
            return NotImplemented
        return _normal(self._pairs()) == _normal(other_items)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._pairs()!r})"


def _normal(items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted((k.lower(), v) for k, v in items)


def _text(value: Any) -> str:
    return value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)


def encode_fields(headers: HeaderTypes) -> list[tuple[bytes, bytes]]:
    """Request headers as (name, value) bytes for the writer (which validates them).

    Names are str (sent as ASCII; a non-ASCII name fails the writer's token check) or bytes;
    str values are sent as ASCII when they can be, else UTF-8 (what httpx does), bytes as
    given, int and float values as their decimal text. Anything else (None, a bool, a
    list, an object) is an InvalidRequestError (NotSent) naming the header: a None value is
    the classic missing API key, and must not go out as "None"."""
    pairs: Iterable[Tuple[Any, Any]]
    if type(headers) is dict:  # the common case; isinstance(x, Mapping) costs an ABC check
        pairs = headers.items()
    elif headers is None:
        return []
    elif isinstance(headers, Headers):
        pairs = headers.multi_items()
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    elif isinstance(headers, (str, bytes, bytearray, memoryview)):
        raise _bad_headers(headers)
    else:
        try:
            pairs = _pairs_of(headers, iter(headers))
        except TypeError:
            raise _bad_headers(headers) from None
    out = []
    for name, value in pairs:
        if type(name) is str:
            name = name.encode("utf-8", "replace")  # a non-ASCII name fails the writer's check
        elif isinstance(name, (bytes, bytearray, memoryview)):
            name = bytes(name)
        elif isinstance(name, str):
            name = str.__str__(name).encode("utf-8", "replace")
        else:
            raise InvalidRequestError(
                f"a header name must be str or bytes, got {_kind(name)}",
                code="header_name_invalid")
        if type(value) is str:
            value = value.encode("ascii") if value.isascii() else _utf8(name, value)
        elif isinstance(value, (bytes, bytearray, memoryview)):
            value = bytes(value)
        elif isinstance(value, str):
            value = _utf8(name, str.__str__(value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = (int.__repr__(value) if isinstance(value, int)
                     else float.__repr__(value)).encode("ascii")
        else:
            raise InvalidRequestError(
                f"header {_shown(name)}: a value must be str, bytes, int or float, got "
                f"{_kind(value)}" + (" (omit the header, or pass its value)"
                                     if value is None else ""),
                code="header_value_invalid")
        out.append((name, value))
    return out


def _pairs_of(headers: Any, items: Iterator[Any]) -> Iterator[Tuple[Any, Any]]:
    """The items of a sequence of headers, each checked to be a (name, value) pair (a str
    of length 2 would unpack too, and mean nothing)."""
    for item in items:
        if (type(item) is not tuple and not isinstance(item, (tuple, list))) or len(item) != 2:
            raise _bad_headers(headers, item)
        yield item[0], item[1]


def _kind(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _shown(name: bytes) -> str:
    return repr(name.decode("latin-1"))


def _utf8(name: bytes, value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        raise InvalidRequestError(f"header {_shown(name)}: the value cannot be encoded as "
                                  "UTF-8 (a lone surrogate)",
                                  code="header_value_invalid") from None


def _bad_headers(headers: Any, *item: Any) -> InvalidRequestError:
    got = f"an item of type {_kind(item[0])}" if item else _kind(headers)
    return InvalidRequestError("headers must be a mapping, a fastpool.Headers or a sequence of "
                               f"(name, value) pairs; got {got}", code="header_name_invalid")
