"""Parser and writer error codes, shared by both engines.

The integers are the negative return codes of ``csrc/fp_http.h`` (the C engine checks at import
that they agree); the names are what ``ProtocolError.code`` and ``InvalidRequestError.code``
carry on both engines. One table, two readers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # errors imports nothing from here; imported lazily below to stay that way
    from .errors import InvalidRequestError, ProtocolError

NEED_MORE = -1

# code -> (name, message). Response parsing (ProtocolError).
PARSE_ERRORS: dict[int, tuple[str, str]] = {
    -2: ("version", "status line does not start with HTTP/1.0 or HTTP/1.1 followed by a space"),
    -3: ("status", "status code is not exactly three digits in 100-999"),
    -4: ("reason", "control character in the reason phrase"),
    -5: ("header_name", "empty or non-token header name"),
    -6: ("header_no_colon", "header line without a colon"),
    -7: ("header_whitespace", "whitespace between header name and colon"),
    -8: ("header_value", "control character in a header value"),
    -9: ("obs_fold", "obsolete line folding (line starting with whitespace)"),
    -10: ("too_many_headers", "more header lines than max_headers"),
    -11: ("line_too_long", "line longer than max_line_size"),
    -12: ("head_too_large", "response head (or trailer section) larger than max_head_size"),
    -13: ("content_length_invalid", "Content-Length is not a non-negative decimal integer < 2**63"),
    -14: ("content_length_multiple", "more than one Content-Length header"),
    -15: ("content_length_and_chunked", "both Content-Length and Transfer-Encoding"),
    -16: ("transfer_encoding", "Transfer-Encoding other than a single 'chunked' (or in HTTP/1.0)"),
    -17: ("chunk_size", "chunk size is not 1-16 hex digits below 2**63"),
    -18: ("chunk_extension", "control character in a chunk extension"),
    -19: ("chunk_crlf", "chunk data not followed by CRLF"),
    -20: ("body_too_large", "body larger than max_body_size"),
    -21: ("unsolicited_101", "101 Switching Protocols was not asked for"),
    -22: ("too_many_interim", "more 1xx interim responses than max_interim"),
    -23: ("truncated", "connection closed before the response was complete"),
    -24: ("no_response", "connection closed before any byte of the response"),
}

# Request writing (InvalidRequestError): nothing is written when one of these is raised.
WRITE_ERRORS: dict[int, tuple[str, str]] = {
    -64: ("method_invalid", "method must be a non-empty token (no space, CR, LF, NUL)"),
    -65: ("target_invalid", "target must start with '/' (or be '*') and hold only visible ASCII"),
    -66: ("header_name_invalid", "header name must be a non-empty token"),
    -67: ("header_value_invalid", "header value must not contain CR, LF, NUL or other controls"),
    -68: ("header_forbidden", "Host, Connection and Transfer-Encoding are set by the pool"),
    -69: ("content_length_mismatch", "Content-Length header disagrees with the body length"),
    -70: ("buffer_too_small", "output buffer too small"),
}

PARSE_CODES: dict[str, int] = {name: code for code, (name, _) in PARSE_ERRORS.items()}
WRITE_CODES: dict[str, int] = {name: code for code, (name, _) in WRITE_ERRORS.items()}


def protocol_error(code: int, detail: str = "") -> ProtocolError:
    """The ProtocolError for a negative parser return code (both engines call this)."""
    from .errors import ProtocolError

    name, message = PARSE_ERRORS[code]
    return ProtocolError(f"{message}{': ' + detail if detail else ''}", code=name)


def request_error(code: int, detail: str = "") -> InvalidRequestError:
    """The InvalidRequestError for a negative writer return code (both engines call this)."""
    from .errors import InvalidRequestError

    name, message = WRITE_ERRORS[code]
    return InvalidRequestError(f"{message}{': ' + detail if detail else ''}", code=name)
