"""The pure-Python engine: the same interface and behaviour as fastpool._core (see _engine)."""

from ._conn import (
    STEP_DONE,
    STEP_WANT_READ,
    STEP_WANT_WRITE,
    Connection,
    TLSContext,
    send_pooled,
)
from ._decode import decode_headers
from ._hist import Histogram
from ._query import encode_query
from ._http import RawResponse, ResponseParser, build_request, encode_header_block, parse_response

__all__ = [
    "Connection", "TLSContext", "send_pooled", "STEP_DONE", "STEP_WANT_READ", "STEP_WANT_WRITE",
    "decode_headers", "encode_query", "Histogram", "RawResponse", "ResponseParser", "build_request",
    "encode_header_block", "parse_response",
]
