"""Back-off for background opens: exponential, capped, with full jitter.

While the gateway is down, every pool of every strategy on the machine retries; without jitter
they retry in lockstep (AWS's "Exponential Backoff And Jitter": full jitter spreads them best
for the least total work). The random source is injected, so a test sees exact delays.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

#: The first retry after a failure waits up to this long; each further failure doubles it.
BASE_NS = 50_000_000
#: ... up to this (a gateway back after an outage is found within ~2 s).
CAP_NS = 2_000_000_000


class Backoff:
    """When the next background attempt may run, after consecutive failures."""

    __slots__ = ("base_ns", "cap_ns", "failures", "next_at", "_random")

    def __init__(self, base_ns: int = BASE_NS, cap_ns: int = CAP_NS,
                 rand: Optional[Callable[[], float]] = None) -> None:
        self.base_ns = base_ns
        self.cap_ns = cap_ns
        self.failures = 0
        self.next_at = 0            # ns; 0: now
        self._random = rand or random.random

    def failed(self, now: int) -> int:
        """An attempt failed at `now`: returns (and remembers) when the next may run."""
        self.failures += 1
        ceiling = min(self.cap_ns, self.base_ns << min(self.failures - 1, 40))
        # Full jitter, but never less than half the base: a zero wait would spin.
        delay = max(self.base_ns // 2, int(ceiling * self._random()))
        self.next_at = now + delay
        return self.next_at

    def succeeded(self) -> None:
        self.failures = 0
        self.next_at = 0

    def ready(self, now: int) -> bool:
        return now >= self.next_at

    @property
    def failing(self) -> bool:
        """Whether the last background attempt failed (the gateway looks down)."""
        return self.failures > 0
