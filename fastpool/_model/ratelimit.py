"""RateLimit: one budget of the exchange, as the exchange counts it (a value; no state).

Binance counts in fixed windows aligned to the clock ("A 1 MINUTE interval starts every
minute. Request submitted at 00:01:23.456 counts towards the 00:01:00 minute's limit";
"10 SECOND interval resets at 00, 10, 20... seconds of each minute": developers.binance.com
websocket-api/rate-limits), so "fixed" windows start at multiples of ``per`` since the Unix
epoch on the server's clock. Bybit counts "600 requests in any 5-second window" (a sliding
window: bybit-exchange.github.io/docs/v5/rate-limit). fastpool._policy.ratelimit enforces
them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

#: RFC 9110 §5.1 field name (token), the form a usage header's name must have.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+").fullmatch
WINDOWS = ("fixed", "sliding")
HEADER_KINDS = ("used", "remaining")
#: Above this many sub-buckets a sliding window costs memory and time for no useful precision.
MAX_BUCKETS = 4096
#: One year: longer windows are not rate limits any exchange documents.
MAX_PER = 366 * 86400.0


@dataclass(frozen=True)
class RateLimit:
    """A budget of ``limit`` units per ``per`` seconds.

    - ``orders=False``: every request counts its ``weight=`` (default 1). ``orders=True``:
      only requests sent with ``order=True`` count, one each (``order=N`` counts N, for a
      batch); an order also counts its weight in the ``orders=False`` limits.
    - ``header``: the response header carrying the server's own count for this budget (for
      Binance ``x-mbx-used-weight-1m``, ``x-mbx-order-count-10s``); the limiter takes it as a
      floor for its own count on every response. ``header_kind="remaining"`` for headers that
      carry what is left instead (Bybit's ``X-Bapi-Limit-Status``).
    - ``window="fixed"`` (Binance): windows start at multiples of ``per`` seconds since the
      epoch on the server's clock; never more than ``limit`` inside one of them.
      ``window="sliding"`` (Bybit): never more than ``limit`` in any ``per`` seconds; kept in
      ``buckets`` sub-buckets, so a unit is held up to ``per / buckets`` longer than it
      strictly must (never shorter).
    - ``reserve``: units held back for ``priority=True`` requests (cancels that must go out
      when polling has used the budget): ordinary requests may use ``limit - reserve``.
    - ``name`` / ``shared``: with a SharedLedger, limits with the same name, kind, period
      and window share one count across the processes of the machine (the exchange counts
      per IP or per account, not per process); ``shared=False`` keeps this one local. Give
      per-account limits (orders) a name per account.
    """

    limit: int
    per: float = 60.0
    orders: bool = False
    header: Optional[str] = None
    header_kind: str = "used"
    window: str = "fixed"
    reserve: int = 0
    buckets: int = 100
    name: Optional[str] = None
    shared: bool = True

    def __post_init__(self) -> None:
        limit = self.limit
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"RateLimit limit must be an int >= 1, got {limit!r}")
        per = self.per
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not (
                0.001 <= per <= MAX_PER):
            raise ValueError(f"RateLimit per must be seconds in [0.001, {MAX_PER:.0f}], "
                             f"got {per!r}")
        if not isinstance(self.orders, bool):
            raise ValueError(f"RateLimit orders must be True or False, got {self.orders!r}")
        if self.header is not None:
            if not isinstance(self.header, str) or not _TOKEN(self.header):
                raise ValueError(f"RateLimit header must be a header field name, "
                                 f"got {self.header!r}")
            object.__setattr__(self, "header", self.header.lower())
        if self.header_kind not in HEADER_KINDS:
            raise ValueError(f"RateLimit header_kind must be one of {HEADER_KINDS}, "
                             f"got {self.header_kind!r}")
        if self.window not in WINDOWS:
            raise ValueError(f"RateLimit window must be one of {WINDOWS}, got {self.window!r}")
        reserve = self.reserve
        if isinstance(reserve, bool) or not isinstance(reserve, int) or not (
                0 <= reserve < limit):
            raise ValueError(f"RateLimit reserve must be an int in [0, limit), got "
                             f"{reserve!r} for limit {limit}")
        buckets = self.buckets
        if isinstance(buckets, bool) or not isinstance(buckets, int) or not (
                1 <= buckets <= MAX_BUCKETS):
            raise ValueError(f"RateLimit buckets must be an int in [1, {MAX_BUCKETS}], "
                             f"got {buckets!r}")
        if self.window == "sliding" and self.per_ns < buckets:
            raise ValueError("RateLimit buckets must not exceed the window in nanoseconds")
        if self.name is not None and (not isinstance(self.name, str) or not self.name
                                      or len(self.name) > 200):
            raise ValueError(f"RateLimit name must be a non-empty str (at most 200 "
                             f"characters), got {self.name!r}")
        if not isinstance(self.shared, bool):
            raise ValueError(f"RateLimit shared must be True or False, got {self.shared!r}")

    @property
    def per_ns(self) -> int:
        """The window in integer nanoseconds."""
        return round(self.per * 1_000_000_000)

    @property
    def key(self) -> str:
        """What identifies this budget in a SharedLedger: name, kind, period, window shape.

        The limit and the reserve are left out on purpose: processes that cap themselves
        differently still count the same requests."""
        shape = f"sliding/{self.buckets}" if self.window == "sliding" else "fixed"
        kind = "orders" if self.orders else "weight"
        return f"{self.name or ''}|{kind}|{self.per_ns}|{shape}"

    def __str__(self) -> str:
        what = "orders" if self.orders else "weight"
        return f"{self.name or what} {self.limit}/{self.per:g}s {self.window}"
