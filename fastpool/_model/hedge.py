"""Hedge: a request not answered after a delay is also sent on a second connection; the
first answer wins (``Pool(..., hedge=fastpool.Hedge(after="p95"))`` or per request).

The tail of a trading strategy's latency is mostly one slow connection or one slow server
behind the gateway; a second copy on another connection cuts it, for a few per cent more
requests (Dean and Barroso, "The Tail at Scale", 2013).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Union

_QUANTILE = re.compile(r"p(\d{1,2}(?:\.\d{1,3})?)\Z")


@dataclass(frozen=True)
class Hedge:
    """When and how much to hedge.

    ``after``: seconds (a fixed delay > 0), or ``"pNN"`` (``"p95"``, ``"p99"``, ``"p99.9"``):
    that quantile of the pool's own latency for the endpoint (its per-endpoint histogram, or
    the pool's once the endpoint has too few samples); no hedge until `min_samples` requests
    were measured. ``budget``: the most hedges per request, as a fraction (a token bucket:
    each request earns ``budget``, a hedge spends 1, at most ``burst`` saved) — so a slow
    server sees at most that many more requests, and the rate limits as many more units.

    Only safe requests (GET, HEAD, OPTIONS) are hedged on their own — a second copy of an
    order could fill twice, and a second cancel answers "unknown order" when the first one
    won. The one exception is opt-in, per request: ``deduplicated=True`` says the exchange
    itself refuses a duplicate (an order with a client order id on an exchange that rejects
    a reused one; a cancel by id). Then the first *successful* (2xx) answer wins: the
    duplicate's refusal is not the order's outcome, so on a non-2xx first answer the pool
    waits for the other copy's answer (up to the request's deadline) and returns that when
    it is a 2xx, else the first. A pool's own ``hedge=`` hedges its safe requests only.

    A hedge is sent only on an idle connection (it never waits for one nor opens one: a
    hedge that waits is too late), of the general lane unless the request has priority, and
    only when the rate limits have room at once (no cooldown in force). The loser's
    connection is never handed on with a response in flight: AsyncPool reads the loser's
    answer to its end in the background, then gives the connection back; Pool has no
    thread to wait in, so it takes what has already arrived and closes the connection when
    that is not the whole answer (the refill replaces it). The caller's deadline bounds both
    copies; when both fail, the error is MaybeSent if either may have reached the server.
    The delay counts in milliseconds at the finest for Pool (poll()) and on uvloop (its
    timers), so a delay under 1 ms acts as 1 ms there. ``pool.stats()`` counts ``hedges``
    (copies sent) and ``hedge_wins`` (requests the copy answered).
    """

    after: Union[float, str] = "p95"
    budget: float = 0.1
    burst: float = 10.0
    min_samples: int = 20
    deduplicated: bool = False

    def __post_init__(self) -> None:
        after = self.after
        if isinstance(after, str):
            m = _QUANTILE.match(after)
            if m is None or not 50.0 <= float(m.group(1)) < 100.0:
                raise ValueError(f'Hedge after must be seconds or a quantile "p50" .. "p99.9", '
                                 f"got {after!r}")
        elif (isinstance(after, bool) or not isinstance(after, (int, float))
              or not math.isfinite(after) or after <= 0):
            raise ValueError(f"Hedge after must be seconds > 0 or a quantile like \"p95\", "
                             f"got {after!r}")
        for name, low in (("budget", 0.0), ("burst", 1.0)):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float))
                    or not math.isfinite(value) or value < low or (name == "budget"
                                                                   and value > 1.0)):
                bound = "in [0, 1]" if name == "budget" else ">= 1"
                raise ValueError(f"Hedge {name} must be a number {bound}, got {value!r}")
        if (isinstance(self.min_samples, bool) or not isinstance(self.min_samples, int)
                or self.min_samples < 1):
            raise ValueError(f"Hedge min_samples must be a positive int, "
                             f"got {self.min_samples!r}")
        if not isinstance(self.deduplicated, bool):
            raise TypeError(f"Hedge deduplicated must be a bool, got {self.deduplicated!r}")

    @property
    def quantile(self) -> Optional[float]:
        """The quantile (0.95 for "p95"), or None for a fixed delay."""
        if isinstance(self.after, str):
            return float(self.after[1:]) / 100.0
        return None

    @property
    def after_ns(self) -> int:
        """The fixed delay in ns (0 with a quantile)."""
        return 0 if isinstance(self.after, str) else max(int(self.after * 1e9), 1)
