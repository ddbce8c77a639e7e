"""Headers: case-insensitive, multi-valued, decoded from the response bytes only when used."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, KeysView, Mapping, Sequence, Tuple, Union

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

    def keys(self) -> KeysView[str]:  # lower-cased names, as httpx
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

    Names must be ASCII; str values are sent as ASCII when they can be, else UTF-8 (what
    httpx does); bytes are sent as given."""
    pairs: Iterable[Tuple[Any, Any]]
    if type(headers) is dict:  # the common case; isinstance(x, Mapping) costs an ABC check
        pairs = headers.items()
    elif headers is None:
        return []
    elif isinstance(headers, Headers):
        pairs = headers.multi_items()
    elif isinstance(headers, Mapping):
        pairs = headers.items()
    else:
        pairs = headers
    out = []
    for name, value in pairs:
        if isinstance(name, str):
            name = name.encode("utf-8", "replace")  # a non-ASCII name fails the writer's check
        elif not isinstance(name, bytes):
            name = bytes(name)
        if isinstance(value, str):
            value = value.encode("ascii") if value.isascii() else value.encode("utf-8")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value).encode("ascii")
        elif not isinstance(value, bytes):
            value = bytes(value)
        out.append((name, value))
    return out
