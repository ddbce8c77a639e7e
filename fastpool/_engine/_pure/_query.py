"""Query string encoding: the pure twin of _core.encode_query (same bytes out)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

#: RFC 3986 unreserved characters: a query key or value made only of these is sent as is.
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*").fullmatch


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, (int, float)):
        return str(value)
    raise TypeError("query parameter values must be str, int, float, bool or None, "
                    f"got {type(value).__name__}")


def _q(text: str) -> str:
    # Symbols, quantities, prices, timestamps: nearly every value is already unreserved,
    # and checking is far cheaper than quote().
    if text.isascii() and (text.isalnum() or _UNRESERVED(text)):
        return text
    return quote(text, safe="-._~")


def encode_query(params: Any) -> bytes:
    """params (dict / mapping / pairs / str / bytes) as a query string, in the caller's order:
    what is sent is what a signature must cover. Keys and values are UTF-8 and
    percent-encoded except RFC 3986 unreserved characters (so a space is %20, never '+');
    True/False are "true"/"false", None is empty, a list or tuple value repeats its key.
    A str or bytes is taken as already encoded (a leading '?' dropped)."""
    if type(params) is dict:  # the common case; isinstance(x, Mapping) costs an ABC check
        items = params.items()
    elif params is None:
        return b""
    elif isinstance(params, str):
        return params.lstrip("?").encode("ascii")
    elif isinstance(params, (bytes, bytearray)):
        return bytes(params).lstrip(b"?")
    else:
        items = params.items() if isinstance(params, Mapping) else params
    out = []
    for key, value in items:
        k = _q(_text(key) if not isinstance(key, str) else key)
        if isinstance(value, (list, tuple)):
            out.extend([f"{k}={_q(_text(v))}" for v in value])
        else:
            out.append(f"{k}={_q(_text(value))}")
    return "&".join(out).encode("ascii")
