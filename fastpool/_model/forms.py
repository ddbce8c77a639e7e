"""Form bodies (``data=``) and the public query encoder: the bytes a signature must cover.

Both use an engine's query encoder (C or pure: the same bytes), so
``fastpool.encode_query(params)`` is exactly what the pool puts after the "?" and
``encode_form(data)`` exactly what it sends as an application/x-www-form-urlencoded body:
keys and values UTF-8 and percent-encoded except RFC 3986 unreserved characters (a space is
%20, which form parsers decode like "+"), True/False as "true"/"false", None as an empty
value, a list or tuple value repeating its key, the caller's order kept; values as
fastpool._model.params describes (floats and Decimals fixed-point, NaN refused). (The
public functions, bound to the engine chosen at import, are in fastpool/__init__.py; the
pools pass their own engine's encoder.)
"""

from __future__ import annotations

from typing import Any, Callable

from .errors import InvalidRequestError

FORM_CONTENT_TYPE = b"application/x-www-form-urlencoded"

Encoder = Callable[[Any], bytes]


def encode_query(params: Any, encoder: Encoder) -> str:
    """params (dict, pairs, or an already encoded str/bytes) as the query string the pool
    sends (without the "?"): sign this string, then pass the same params to the request.
    Values follow fastpool._model.params (floats and Decimals fixed-point, NaN refused);
    InvalidRequestError naming the parameter for what cannot be sent."""
    return encoder(params).decode("ascii")


def encode_form(data: Any, encoder: Encoder) -> bytes:
    """``data=`` as a form body. A dict or pairs is encoded like a query; bytes are sent as
    given; a str is taken as already encoded and must be ASCII; None is an empty body."""
    if data is None:
        return b""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    if isinstance(data, str):
        try:
            return data.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidRequestError("a str form body is sent as given and must be ASCII "
                                      "(percent-encode it, or pass a dict or pairs)",
                                      code="body_invalid") from None
    try:
        return encoder(data)
    except InvalidRequestError as exc:
        raise InvalidRequestError(f"data: {exc}", code="body_invalid") from None
