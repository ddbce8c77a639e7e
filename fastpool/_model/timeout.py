"""fastpool.Timeout: httpx's shape (connect, write, read, pool) plus a total deadline."""

from __future__ import annotations

import math
from typing import Union

_NS = 1_000_000_000


class _Sentinel:
    """A default that means "not given", with a repr that says what happens then (it is
    what help() and signatures show)."""

    __slots__ = ("_name", "_text")

    def __init__(self, name: str, text: str) -> None:
        self._name = name
        self._text = text

    def __repr__(self) -> str:
        return self._text

    def __reduce__(self) -> str:  # copy and pickle keep the identity `is` tests rely on
        return self._name


#: The verbs' ``timeout=`` default: the pool's timeout applies.
_UNSET = _Sentinel("_UNSET", "<the pool's timeout>")
#: Timeout()'s own defaults: a phase not given takes the default (or the total).
_DEFAULT = _Sentinel("_DEFAULT", "<unset>")


def _check(name: str, value: object) -> float | None:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
            or not math.isfinite(value)):
        raise ValueError(f"timeout {name} must be a non-negative number of seconds or None, "
                         f"got {value!r}")
    return float(value)


class Timeout:
    """Deadlines for a request, in seconds; None means "no limit" for that phase.

    ``Timeout(5.0)`` gives every phase 5 s; ``Timeout(5.0, connect=1.0)`` overrides one;
    ``total`` bounds the whole request, retries and waits for a connection included.
    Each phase bounds one wait: ``read`` is the longest silence while a response arrives
    (as in httpx), ``write`` the longest stall while the request is sent.

    ``Timeout(total=0.5)`` alone is enough: each phase not given then defaults to the total
    (as if ``Timeout(0.5, total=0.5)``). No wait of a request can outlast its total anyway,
    and the connections the pool opens in the background, which no request's total
    covers, are bounded by the same 0.5 s rather than by nothing. Without a total, give a
    default or every one of connect, write, read and pool.
    """

    __slots__ = ("connect", "write", "read", "pool", "total",
                 "connect_ns", "write_ns", "read_ns", "total_ns")

    connect: float | None
    write: float | None
    read: float | None
    pool: float | None
    total: float | None
    connect_ns: int
    write_ns: int
    read_ns: int
    total_ns: int

    def __init__(self, default: float | None | object = _DEFAULT, *,
                 connect: object = _DEFAULT, write: object = _DEFAULT, read: object = _DEFAULT,
                 pool: object = _DEFAULT, total: float | None = None) -> None:
        if isinstance(default, Timeout):
            connect, write, read, pool, total = (default.connect, default.write, default.read,
                                                 default.pool, default.total)
            default = None
        self.total = _check("total", total)
        if default is _DEFAULT:
            missing = [n for n, v in (("connect", connect), ("write", write), ("read", read),
                                      ("pool", pool)) if v is _DEFAULT]
            if missing and self.total is None:
                raise ValueError(
                    "Timeout needs a default, a total, or all of connect, write, read and "
                    f"pool (missing: {', '.join(missing)}); e.g. Timeout(5.0, connect=1.0) "
                    "or Timeout(total=0.5)")
            default = self.total
        self.connect = _check("connect", default if connect is _DEFAULT else connect)
        self.write = _check("write", default if write is _DEFAULT else write)
        self.read = _check("read", default if read is _DEFAULT else read)
        self.pool = _check("pool", default if pool is _DEFAULT else pool)
        # Nanosecond forms for the engines: -1 = no limit (per wait), 0 = no deadline (total).
        self.connect_ns = -1 if self.connect is None else int(self.connect * _NS)
        self.write_ns = -1 if self.write is None else int(self.write * _NS)
        self.read_ns = -1 if self.read is None else int(self.read * _NS)
        self.total_ns = 0 if self.total is None else max(1, int(self.total * _NS))

    @classmethod
    def of(cls, value: TimeoutTypes) -> Timeout:
        """A Timeout from what callers pass: a Timeout, a number of seconds, or None.

        Numbers are cached: ``get(..., timeout=0.5)`` on every order would otherwise build
        (and validate) a Timeout per request: 1.7 us, against 0.3 us for the lookup. (Keyed
        by type too: True == 1.)"""
        if isinstance(value, Timeout):
            return value
        if type(value) not in (float, int) and value is not None:
            return cls(value)  # not cached: rejected (ValueError), or a subclass of a number
        key = (type(value), value)
        made = _BY_SECONDS.get(key)
        if made is None:
            made = cls(value)  # raises ValueError for what is not a valid number of seconds
            if len(_BY_SECONDS) < 256:
                _BY_SECONDS[key] = made
        return made

    def _key(self) -> tuple[float | None, ...]:
        return (self.connect, self.write, self.read, self.pool, self.total)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Timeout) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (f"Timeout(connect={self.connect}, write={self.write}, read={self.read}, "
                f"pool={self.pool}, total={self.total})")


TimeoutTypes = Union[Timeout, float, int, None]

#: Timeout.of's cache: (type, seconds) -> Timeout. Bounded: callers use a few values.
_BY_SECONDS: dict[tuple[type, object], Timeout] = {}
