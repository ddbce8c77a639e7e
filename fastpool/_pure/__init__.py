"""The pure-Python engine: the same interface and behaviour as fastpool._core (see _engine)."""

from ._http import (
    RawResponse,
    ResponseParser,
    build_request,
    encode_header_block,
    parse_response,
)

__all__ = [
    "RawResponse",
    "ResponseParser",
    "build_request",
    "encode_header_block",
    "parse_response",
]
