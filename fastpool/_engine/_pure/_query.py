"""Query string encoding: the pure twin of _core.encode_query (same bytes out)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from fastpool._model.params import bad_item, bad_params, not_ascii, not_utf8, param_text

#: RFC 3986 unreserved characters: a query key or value made only of these is sent as is.
_UNRESERVED = re.compile(r"[A-Za-z0-9._~-]*").fullmatch


def _q(text: str) -> str:
    # Symbols, quantities, prices, timestamps: nearly every value is already unreserved,
    # and checking is far cheaper than quote().
    if text.isascii() and (text.isalnum() or _UNRESERVED(text)):
        return text
    return quote(text, safe="-._~")


def _pair(out: list[str], key: str, value: Any) -> None:
    k = _q(key)
    if type(value) is str:
        out.append(f"{k}={_q(value)}")
    elif isinstance(value, (list, tuple)):
        out.extend([f"{k}={_q(param_text(v, key, True))}" for v in value])
    else:
        out.append(f"{k}={_q(param_text(value, key))}")


def encode_query(params: Any) -> bytes:
    """params (dict / mapping / pairs / str / bytes) as a query string, in the caller's order:
    what is sent is what a signature must cover. Keys and values are UTF-8 and
    percent-encoded except RFC 3986 unreserved characters (so a space is %20, never '+');
    values become text by fastpool._model.params.param_text (True/False are "true"/"false",
    None is empty, floats and Decimals fixed-point, NaN refused), a list or tuple value
    repeats its key. A str, bytes or memoryview is taken as already encoded (a leading '?'
    dropped; a str must be ASCII). InvalidRequestError (NotSent) naming the parameter for
    anything else."""
    if type(params) is dict:  # the common case; isinstance(x, Mapping) costs an ABC check
        items: Any = params.items()
    elif params is None:
        return b""
    elif isinstance(params, str):
        if not params.isascii():
            raise not_ascii()
        return params.lstrip("?").encode("ascii")
    elif isinstance(params, (bytes, bytearray, memoryview)):
        return bytes(params).lstrip(b"?")
    elif isinstance(params, Mapping):
        items = params.items()
    else:
        try:
            items = iter(params)
        except TypeError:
            raise bad_params(params) from None
    out: list[str] = []
    key = ""
    try:
        if type(params) is dict:  # items are pairs: nothing to check
            for name, value in items:
                key = name if type(name) is str else param_text(name)
                _pair(out, key, value)
        else:
            for item in items:
                # A pair: a str item of length 2 would unpack too, and mean nothing.
                if (type(item) is not tuple and not isinstance(item, (tuple, list))
                        or len(item) != 2):
                    raise bad_item(item)
                name, value = item
                key = name if type(name) is str else param_text(name)
                _pair(out, key, value)
    except UnicodeEncodeError:
        raise not_utf8(key) from None
    return "&".join(out).encode("ascii")

