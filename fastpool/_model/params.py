"""Query and form parameters as text: the one rule both engines' encoders follow.

The C encoder (fastpool/_engine/_query.pxi) handles plain str, int, bool and None and the
floats ``repr`` writes without an exponent itself, and calls ``param_text`` for everything
else; the pure one (fastpool/_engine/_pure/_query.py) calls it for every value that is not a
str. So both send the same bytes and raise the same InvalidRequestError, by construction.

What a value becomes:

* str (and str subclasses, e.g. a ``class Side(str, Enum)`` member): its characters.
* True / False: "true" / "false" (what exchange APIs expect); None: an empty value.
* int (and subclasses, e.g. IntEnum): its decimal digits.
* float: the shortest decimal that reads back as the same float (``repr``), always written
  out without an exponent: 0.1 is "0.1", 1e-07 is "0.0000001", 1e+22 is
  "10000000000000000000000". Exchanges check prices and quantities against patterns like
  ``^([0-9]{1,20})(\\.[0-9]{1,20})?$``, which "1e-07" fails.
* decimal.Decimal: fixed-point, as written (``format(value, "f")``): Decimal("0.00001000")
  is "0.00001000", Decimal("1E-7") is "0.0000001". Strategies keep prices in Decimal.
* NaN and infinities (float or Decimal) are refused: no exchange means anything by a price
  of "nan", and sending one is a bug the caller wants to hear about before the order leaves.

Anything else (bytes, lists inside lists, dicts, objects) is an InvalidRequestError
(NotSent) that names the parameter; nothing is sent.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any, Optional

from .errors import InvalidRequestError

#: InvalidRequestError.code of a parameter that cannot be encoded.
PARAMS_INVALID = "params_invalid"

_KINDS = "str, int, float, Decimal, bool or None"


def _error(message: str) -> InvalidRequestError:
    return InvalidRequestError(message, code=PARAMS_INVALID)


def _where(name: Optional[str]) -> str:
    return "a parameter name" if name is None else f"parameter {name!r}"


def _positional(value: Decimal) -> str:
    return format(value, "f")


_float_repr = float.__repr__
_int_repr = int.__repr__
_isfinite = math.isfinite


def param_text(value: Any, name: Optional[str] = None, in_list: bool = False) -> str:
    """The text a query or form value (or, with ``name`` None, a parameter name) is sent as;
    InvalidRequestError naming the parameter when it has none. ``in_list``: the value is an
    item of a list or tuple value (which repeats the name)."""
    kind = type(value)
    if kind is float:  # the common kinds first, by exact type (the pure engine's hot path)
        text = _float_repr(value)
        if "e" not in text and _isfinite(value):
            return text
    elif kind is int:
        try:
            return _int_repr(value)
        except ValueError:  # beyond sys.get_int_max_str_digits()
            raise _error(f"{_where(name)}: the int has too many digits to send") from None
    if isinstance(value, str):
        return str.__str__(value)
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    if isinstance(value, int):
        try:
            return _int_repr(value)
        except ValueError:
            raise _error(f"{_where(name)}: the int has too many digits to send") from None
    if isinstance(value, float):
        text = _float_repr(value)
        if not _isfinite(value):
            raise _error(f"{_where(name)}: {text} is not a finite number")
        return text if "e" not in text else _positional(Decimal(text))
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise _error(f"{_where(name)}: {value} is not a finite number")
        return _positional(value)
    what = type(value).__name__
    if name is None:
        raise _error(f"a parameter name must be a {_KINDS}, got {what}")
    if isinstance(value, (bytes, bytearray, memoryview)):
        raise _error(f"{_where(name)}: got {what}; pass a str (decode it first), so that what "
                     "is sent is unambiguous")
    if in_list:
        raise _error(f"{_where(name)}: the items of a list or tuple value must be {_KINDS}, "
                     f"got {what}")
    raise _error(f"{_where(name)}: a value must be {_KINDS}, or a list or tuple of them "
                 f"(which repeats the name), got {what}")


def bad_item(item: Any) -> InvalidRequestError:
    """The error for an item of a params sequence that is not a (name, value) pair."""
    return _error("params must be a mapping, a sequence of (name, value) pairs, or an encoded "
                  f"str or bytes; got an item of type {type(item).__name__}"
                  + (f" and length {len(item)}" if isinstance(item, (tuple, list)) else ""))


def bad_params(params: Any) -> InvalidRequestError:
    """The error for params that is none of the accepted shapes."""
    return _error("params must be a mapping, a sequence of (name, value) pairs, or an encoded "
                  f"str or bytes; got {type(params).__name__}")


def not_utf8(name: str) -> InvalidRequestError:
    """The error for a name or value that has no UTF-8 form (a lone surrogate)."""
    return _error(f"{_where(name)}: the text cannot be encoded as UTF-8 (a lone surrogate)")


def not_ascii() -> InvalidRequestError:
    """The error for an already encoded str query that is not ASCII."""
    return InvalidRequestError(
        "a str query string is sent as given and must be ASCII (percent-encode it, or pass a "
        "dict or pairs to have it encoded)", code="target_invalid")
