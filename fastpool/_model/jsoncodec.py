"""JSON in and out: the bytes ``json=`` sends and what ``Response.json()`` returns, the same
with orjson installed (``pip install 'fastpool[json]'``: several times faster) or without.

The standard library's json module is the reference; orjson is a fast path, used only where
its result is the reference's.

Sent (``dumps``): compact (no spaces), UTF-8 (not \\u-escaped), keys in the caller's order.

* dict keys: str; int, float, bool and None keys are written as json.dumps writes them
  ({1: x} is {"1": x});
* numbers: any int (no 64-bit limit); a float as ``repr`` writes it (1e-07, 1e+16);
  NaN and infinities are refused: they are not JSON (RFC 8259 §6), and an order with a
  price of NaN is a bug to hear about before it leaves;
* str, int and float subclasses as their base type, an Enum member as its value, a UUID
  as its str; anything else (Decimal, datetime, bytes, a set, a dataclass, a circular
  structure, a lone surrogate) is an InvalidRequestError (NotSent) saying what.

orjson writes some floats differently (1e-7, 0.00001), writes NaN as null, refuses ints
beyond 64 bits and non-str keys, and serializes datetimes and dataclasses: its output is
used only when none of those can be in it (a scan of the output for null and for numbers
in exponent or long form), else the value goes through the reference encoder.

Received (``loads``): what json.loads returns. orjson parses instead when it agrees: it
reads ints beyond 64 bits as floats, so a body with a run of 20 or more digits goes to
json.loads, as does every body orjson refuses (NaN, a UTF-8 BOM, UTF-16), which json.loads
then parses or refuses.
"""

from __future__ import annotations

import enum
import json as _json
import uuid
from typing import Any, Callable, Optional

from .errors import InvalidRequestError

try:  # optional: the "json" extra
    import orjson as _orjson  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - depends on the environment
    _orjson = None  # type: ignore[assignment,unused-ignore]

_Dumps = Callable[..., bytes]
_Loads = Callable[[Any], Any]

#: orjson's encoder, or None: tests set it to None to run the reference path.
_orjson_dumps: Optional[_Dumps] = _orjson.dumps if _orjson is not None else None
_orjson_loads: Optional[_Loads] = _orjson.loads if _orjson is not None else None
#: Types orjson would serialize and json would not are handed to `default` instead, which
#: refuses them, and the value is then encoded by the reference.
_ORJSON_OPTIONS = (_orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME
                   | _orjson.OPT_PASSTHROUGH_SUBCLASS) if _orjson is not None else 0

#: Every digit made "0" (and "E" "e"): number shapes can then be found with plain bytes
#: searches, which run at C speed where a regex with alternatives costs several times the
#: encoding. (find(), not `in`: bytes.__contains__ first tries its argument as an int, and
#: pays for the exception.)
_SHAPE = bytes.maketrans(b"0123456789E", b"0000000000e")
#: 17 or more integer digits then a point: a float of 1e16 or more written out.
_LARGE = b"0" * 17 + b"."
#: A run of digits long enough to be an int beyond 64 bits, which orjson reads as a float.
_LONG_INT = b"0" * 20


def _agrees(out: bytes) -> bool:
    """Whether orjson's output can differ from json.dumps's in no place: no null (orjson's
    NaN), no number with an exponent, no small float (0.00001, json: 1e-05) or large one
    written out. Text in a string that only looks like one of these costs a pass through
    the reference encoder, never a difference."""
    if out.find(b"null") >= 0 or out.find(b"0.0000") >= 0:
        return False
    shape = out.translate(_SHAPE)
    return shape.find(b"0e") < 0 and shape.find(_LARGE) < 0


class _Unserializable(TypeError):
    pass


def _default(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, uuid.UUID):
        return str(value)
    raise _Unserializable(f"{type(value).__name__} is not JSON serializable")


def _refuse_for_orjson(value: Any) -> Any:
    raise _Unserializable  # not the reference's output: encode with the reference instead


_ENCODER = _json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                             default=_default)


def _reference(value: Any) -> bytes:
    try:
        text = _ENCODER.encode(value)
    except ValueError as exc:  # NaN or infinity (allow_nan=False), or a circular structure
        message = str(exc)
        if "Out of range float" in message:
            message = "NaN and infinities are not JSON (RFC 8259 §6)"
        raise InvalidRequestError(f"json: {message}", code="body_invalid") from None
    except TypeError as exc:
        raise InvalidRequestError(f"json: {exc} (pass str, int, float, bool, None, or a "
                                  "dict, list or tuple of them)", code="body_invalid") from None
    except RecursionError:
        raise InvalidRequestError("json: nested too deeply", code="body_invalid") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequestError("json: a str holds a lone surrogate, which has no UTF-8 form",
                                  code="body_invalid") from None


def dumps(value: Any) -> bytes:
    """The JSON body for ``json=value`` (see the module docstring); InvalidRequestError
    (NotSent) for a value that has no JSON form."""
    if _orjson_dumps is not None:
        try:
            out = _orjson_dumps(value, default=_refuse_for_orjson, option=_ORJSON_OPTIONS)
        except TypeError:  # orjson.JSONEncodeError is a TypeError: refused, or not ours
            return _reference(value)
        if _agrees(out):
            return out
    return _reference(value)


def loads(content: bytes) -> Any:
    """``Response.json()``: what json.loads returns for the body (see the module docstring)."""
    if _orjson_loads is not None and content.translate(_SHAPE).find(_LONG_INT) < 0:
        try:
            return _orjson_loads(content)
        except ValueError:  # orjson.JSONDecodeError: json.loads decides (and says why)
            pass
    return _json.loads(content)
