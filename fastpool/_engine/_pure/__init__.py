"""The pure-Python engine: the same interface and behaviour as the C engine
(fastpool._engine._core); the interface is fastpool._engine.protocol."""

from ._conn import (
    STEP_DONE,
    STEP_WANT_READ,
    STEP_WANT_WRITE,
    Connection,
    Lane,
    TLSContext,
)
from ._decode import decode_headers, header_values
from ._hist import Histogram
from ._http import (
    RawResponse,
    ResponseParser,
    build_request,
    encode_header_block,
    parse_response,
)
from ._park import Park
from ._query import encode_query

__all__ = [
    "Connection",
    "TLSContext",
    "Lane",
    "Park",
    "STEP_DONE",
    "STEP_WANT_READ",
    "STEP_WANT_WRITE",
    "decode_headers",
    "header_values",
    "encode_query",
    "Histogram",
    "RawResponse",
    "ResponseParser",
    "build_request",
    "encode_header_block",
    "parse_response",
]
