"""Which connection a request takes, and which gateway address a new connection goes to.

Two ways to choose among idle connections:
- "hottest" (the default with one gateway address): the most recently used, LIFO — its
  socket, TLS state and the server's worker for it are the warmest. The engines' lanes pop
  the top of the stack.
- "fastest" (the default with several addresses): the idle connection with the smallest
  smoothed round trip (Connection.rtt_ns, RFC 6298's SRTT of written -> first byte, kept by
  the lanes and the async driver from every request and keep-warm ping). A connection not
  measured yet counts as fastest, so it gets measured. Connections within `SAME_RTT` of each
  other count as equal and the hottest of them wins (a round trip's noise must not make the
  pool hop between connections).

A persistently slow connection — its SRTT several times the lane's best after enough
requests to trust it — is rotated out (make-before-break), its replacement opened to the
fastest address. (Against the best, not the median: when half the connections go to a slow
gateway address, the median is the slow one and nothing would look slow.) New connections
go to the address with the fewest connections, ties to the fastest: spread first, then
performance; a slow one's replacement goes by performance first.
"""

from __future__ import annotations

from typing import Any, List, Optional, Sequence

#: Round trips within this ratio of each other are the same to "fastest".
SAME_RTT = 1.25
#: A connection is persistently slow when its SRTT exceeds the lane's best by this factor...
SLOW_FACTOR = 3.0
#: ... and by at least this much (ns: tiny round trips vary by multiples on a busy host)...
SLOW_MARGIN_NS = 200_000
#: ... once measured (by a request or a keep-warm ping: a SRTT is kept from the first
#: sample; with "fastest" a slow connection is seldom used again, so one sample must do).
SLOW_AFTER_USES = 1

CHOICES = ("hottest", "fastest")


def fastest_index(stack: List[Any]) -> int:
    """The index in an idle stack (hottest last) of the connection "fastest" takes."""
    best = len(stack) - 1
    best_rtt = stack[best].rtt_ns
    for i in range(best - 1, -1, -1):
        rtt = stack[i].rtt_ns
        if rtt == 0 and best_rtt != 0:
            best, best_rtt = i, rtt  # not measured yet: measure it
        elif best_rtt and rtt and rtt * SAME_RTT < best_rtt:
            best, best_rtt = i, rtt
    return best


def slow_ones(conns: Sequence[Any]) -> List[Any]:
    """Connections (of one lane) whose round trip stays far above the others'."""
    measured = [c for c in conns if c.rtt_ns and c.uses >= SLOW_AFTER_USES]
    if len(measured) < 2:  # nothing to compare with
        return []
    best = min(c.rtt_ns for c in measured)
    return [c for c in measured
            if c.rtt_ns > best * SLOW_FACTOR and c.rtt_ns - best > SLOW_MARGIN_NS]


class Addresses:
    """The gateway addresses of a pool and where the next connection goes."""

    __slots__ = ("count",)

    def __init__(self, count: int) -> None:
        self.count = count

    def pick(self, live: Sequence[Any], avoid: Optional[Any] = None) -> int:
        """The address index for a new connection: the fewest live connections, ties to the
        smallest median round trip (unmeasured addresses first). `avoid`: a connection
        being replaced for being slow: its replacement goes to the address with the
        smallest median round trip (unmeasured first, to measure it), another address than
        avoid's when there is one — spreading it evenly would send it back to the slow
        address as often as not."""
        if self.count == 1:
            return 0
        counts = [0] * self.count
        rtts: List[List[int]] = [[] for _ in range(self.count)]
        for conn in live:
            i = conn.address
            if 0 <= i < self.count:
                counts[i] += 1
                if conn.rtt_ns:
                    rtts[i].append(conn.rtt_ns)

        def median(i: int) -> int:
            r = sorted(rtts[i])
            return r[len(r) // 2] if r else 0

        if avoid is not None and 0 <= avoid.address < self.count:
            others = [i for i in range(self.count) if i != avoid.address]
            return min(others, key=lambda i: (median(i), counts[i]))
        return min(range(self.count), key=lambda i: (counts[i], median(i)))
