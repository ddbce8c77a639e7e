"""Cooldown: after a 429 or 418 the whole pool stops sending until the server's delay ends.

Sans-IO: ``on_response`` takes the status, the ``Retry-After`` value and the times, and
says how long to hold off; ``check(now_ns)`` says how long is left. The driver raises
RateLimitedError (NotSent: nothing is written) for a request asked during a cooldown.

Binance (developers.binance.com rest-api/limits): "A Retry-After header is sent with a 418
or 429 responses and will give the number of seconds required to wait, in the case of a
429, to prevent a ban, or, in the case of a 418, until the ban is over"; bans "scale in
duration for repeat offenders, from 2 minutes to 3 days". The unfilled-order-count 429 was
documented *without* Retry-After (2021 docs) and is now documented with it; the defaults
below cover the case where it is missing:

- 429 without a usable Retry-After: 60 s, one REQUEST_WEIGHT window (1 minute): waiting a
  whole window guarantees the exchange's count has reset, whichever limit tripped.
- 429 without Retry-After on an order request, or with Binance's -1015 TOO_MANY_ORDERS
  body: an *order* cooldown of 10 s (the shortest ORDERS window, 10 SECOND); other requests
  (market data, cancels are orders too) keep flowing.
- 418 without a usable Retry-After: first the -1003 body's "IP banned until <ms>" (the ban's
  end on the server's clock, Binance's documented message), else 120 s (the shortest ban).
- Every delay is clamped to [0, max_cooldown] (3 days, the longest documented ban).
"""

from __future__ import annotations

import email.utils
import math
import re
from typing import NamedTuple, Optional, Union

#: Binance's longest documented IP ban; a Retry-After beyond it is taken as this.
MAX_COOLDOWN = 3 * 86400.0
DEFAULTS = {429: 60.0, 418: 120.0}
DEFAULT_ORDER_429 = 10.0
_BANNED_UNTIL = re.compile(rb"banned until (\d{10,16})")
_TOO_MANY_ORDERS = re.compile(rb'"code"\s*:\s*-1015\b')
#: Longest Retry-After value worth parsing (a 3-day ban is 6 digits; an HTTP-date ~29).
_MAX_LEN = 64


def parse_retry_after(value: Union[str, bytes, None], wall_now: float,
                      max_seconds: float = MAX_COOLDOWN) -> Optional[float]:
    """Seconds to wait from a Retry-After value (RFC 9110 §10.2.3), or None if unusable.

    - delay-seconds (``1*DIGIT``): that many seconds; a huge value is clamped to
      max_seconds (it still means "very long", so it is not ignored).
    - HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms recipients must
      accept, RFC 9110 §5.6.7): the time until then on the wall clock ``wall_now`` (Unix
      seconds); a date in the past is 0.
    - A decimal number ("1.5", not in the grammar but sent by some servers) is accepted;
      a negative number, an empty value or anything else is unusable (None), and the
      caller falls back to its default: the header could not be trusted, the status can.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            return None
    text = value.strip()
    if not text or len(text) > _MAX_LEN or not text.isascii():
        return None  # (float() and int() would take non-ASCII digits)
    if text.isdigit():
        return min(float(int(text)), max_seconds)
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number) or number < 0:
            return None if math.isnan(number) or number < 0 else max_seconds
        return min(number, max_seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are GMT; parsedate_to_datetime leaves "-0000" naive.
        import datetime as _dt

        when = when.replace(tzinfo=_dt.timezone.utc)
    delta = when.timestamp() - wall_now
    return min(max(delta, 0.0), max_seconds)


def banned_until_ms(body: Optional[bytes]) -> Optional[int]:
    """The end of an IP ban from Binance's -1003 message ("... IP banned until
    1620286253180. ..."), in Unix milliseconds, or None."""
    if not body:
        return None
    match = _BANNED_UNTIL.search(body[:2048])
    return int(match.group(1)) if match else None


class CooldownInfo(NamedTuple):
    remaining: float  #: seconds left
    status: int  #: the response status that started it
    orders_only: bool


class Cooldown:
    """The pool-wide hold-off after 429 / 418 (and an order-only one, see the module doc).

    ``defaults`` maps a status to its delay when the response says none; add e.g.
    ``{403: 600.0}`` for Bybit ("403, access too frequent": "wait for at least 10 minutes").
    """

    __slots__ = ("defaults", "order_default", "max_cooldown", "_until", "_orders_until",
                 "_status", "_order_status", "count")

    def __init__(self, defaults: Optional[dict[int, float]] = None, *,
                 order_default: float = DEFAULT_ORDER_429,
                 max_cooldown: float = MAX_COOLDOWN) -> None:
        merged = dict(DEFAULTS)
        if defaults:
            merged.update(defaults)
        for status, seconds in merged.items():
            if not isinstance(status, int) or not 100 <= status <= 599:
                raise ValueError(f"cooldown status must be an HTTP status, got {status!r}")
            if not isinstance(seconds, (int, float)) or not 0 <= seconds <= max_cooldown:
                raise ValueError(f"cooldown for {status} must be seconds in "
                                 f"[0, {max_cooldown:g}], got {seconds!r}")
        if not 0 <= order_default <= max_cooldown:
            raise ValueError(f"order_default must be in [0, {max_cooldown:g}]")
        self.defaults = merged
        self.order_default = float(order_default)
        self.max_cooldown = float(max_cooldown)
        self._until = 0  # monotonic ns; 0: none
        self._orders_until = 0
        self._status = 0
        self._order_status = 0
        self.count = 0  #: cooldowns started (for stats)

    def check(self, now_ns: int, order: bool = False) -> int:
        """Nanoseconds of cooldown left for a request (0: none)."""
        left = self._until - now_ns
        if order:
            left = max(left, self._orders_until - now_ns)
        return left if left > 0 else 0

    def on_response(self, now_ns: int, status: int, retry_after: Union[str, bytes, None],
                    wall_now: float, *, body: Optional[bytes] = None, order: bool = False,
                    server_now_ms: Optional[float] = None) -> Optional[float]:
        """The cooldown (seconds) this response starts, or None when it starts none.

        ``retry_after``: the Retry-After header (None when absent); ``wall_now``: Unix
        seconds, for an HTTP-date; ``body``: the response body, read for Binance's
        "IP banned until" and -1015 when there is no usable header; ``order``: whether the
        request was an order; ``server_now_ms``: the calibrated server time, for the ban's
        end (default: wall_now)."""
        if status not in self.defaults:
            return None
        seconds = parse_retry_after(retry_after, wall_now, self.max_cooldown)
        orders_only = False
        if seconds is None:
            until_ms = banned_until_ms(body) if status == 418 or status == 429 else None
            if until_ms is not None:
                ref = server_now_ms if server_now_ms is not None else wall_now * 1000.0
                seconds = min(max((until_ms - ref) / 1000.0, 0.0), self.max_cooldown)
            elif status == 429 and (order or (body and _TOO_MANY_ORDERS.search(body[:2048]))):
                seconds = self.order_default
                orders_only = True
            else:
                seconds = float(self.defaults[status])
        elif status == 429 and body and _TOO_MANY_ORDERS.search(body[:2048]):
            orders_only = True
        until = now_ns + int(seconds * 1e9)
        self.count += 1
        if orders_only:
            if until > self._orders_until:
                self._orders_until = until
                self._order_status = status
        elif until > self._until:
            self._until = until
            self._status = status
        return seconds

    def clear(self) -> None:
        """End every cooldown (e.g. the operator knows the ban was lifted)."""
        self._until = self._orders_until = 0

    def info(self, now_ns: int) -> Optional[CooldownInfo]:
        """The cooldown in force, if any (the longer one when both are)."""
        left = self._until - now_ns
        left_orders = self._orders_until - now_ns
        if left <= 0 and left_orders <= 0:
            return None
        if left >= left_orders:
            return CooldownInfo(left / 1e9, self._status, False)
        return CooldownInfo(left_orders / 1e9, self._order_status, True)
