"""KeepWarm: the cheap request that keeps idle connections open through a gateway's idle
timeout (``Pool(..., keep_warm=fastpool.KeepWarm("/api/v3/ping", every=25.0))``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class KeepWarm:
    """Send ``method path`` on each connection that sat idle ``every`` seconds.

    Off the hot path: a connection being pinged is simply not idle, so no caller's request
    waits behind a ping. A ping that fails (or finds the connection closed) replaces the
    connection quietly (``stats()["ping_failures"]``). Choose ``every`` below the gateway's
    idle timeout (BitMEX documents 90 s; CloudFront-class fronts close idle connections in
    tens of seconds) and an endpoint of the smallest weight (Binance: /api/v3/ping, weight
    1). Only idempotent methods without a body.
    """

    path: str
    every: float = 25.0
    method: str = "GET"
    #: The JSON field of the answer carrying the server's time (Binance /api/v3/time:
    #: "serverTime"): every ping then calibrates the server clock (see Pool.calibrate).
    clock_field: Optional[str] = None
    clock_unit: str = "ms"

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path:
            raise ValueError(f"KeepWarm path must be a non-empty str, got {self.path!r}")
        every = self.every
        if (isinstance(every, bool) or not isinstance(every, (int, float))
                or not math.isfinite(every) or every <= 0):
            raise ValueError(f"KeepWarm every must be seconds > 0, got {every!r}")
        if not isinstance(self.method, str) or self.method.upper() not in _METHODS:
            raise ValueError(f"KeepWarm method must be one of {sorted(_METHODS)}, "
                             f"got {self.method!r}")
        object.__setattr__(self, "method", self.method.upper())

    @property
    def every_ns(self) -> int:
        return int(self.every * 1e9)
