"""The maintenance schedule: what the pool does in the background, and when it next must.

``due(now)`` returns the actions to carry out now and the time (ns) of the next wake-up, or
None when nothing is scheduled (the sync driver's thread then ends; the async driver sets no
timer). The drivers carry actions out off the hot path — a caller's request never waits
behind maintenance — and report each outcome back (``open_done``), which may schedule more.

Today's work: refilling lanes below their target, one open at a time, backing off with
jitter while opens fail (the gateway is down) and recovering by itself when it comes back.
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional, Tuple

from .backoff import Backoff
from .slots import Slots
from .waiters import GENERAL, RESERVED


class Open(NamedTuple):
    """Open a connection in `lane` (its slot is already claimed) and report open_done()."""

    lane: int
    reason: str = "refill"


Action = Open


class Maintenance:
    """The background schedule of one pool (not thread-safe: called under the driver's lock,
    or on the event loop)."""

    __slots__ = ("slots", "backoff", "opening")

    def __init__(self, slots: Slots, backoff: Optional[Backoff] = None) -> None:
        self.slots = slots
        self.backoff = backoff or Backoff()
        self.opening = 0            # background opens in flight

    def due(self, now: int) -> Tuple[List[Action], Optional[int]]:
        """The actions to carry out now, and when to call again (ns, or None: not until an
        event — a drop, a failure — asks for it)."""
        actions: List[Action] = []
        wake: Optional[int] = None
        slots = self.slots
        if slots.closed:
            return actions, None
        if self.opening == 0:
            for lane in (RESERVED, GENERAL):  # the reserved lane first: it serves the orders
                if slots.deficit(lane) <= 0:
                    continue
                if not self.backoff.ready(now):
                    wake = self.backoff.next_at
                    break
                if slots.reserve(lane):
                    self.opening += 1
                    actions.append(Open(lane))
                    break
        return actions, wake

    def open_done(self, action: Open, ok: bool, now: int) -> bool:
        """A background open finished. ok: the connection is open (the caller adopts it; the
        return value says whether it is a reconnect). Not ok: its slot is given back and the
        next attempt backs off. A pool closed meanwhile: the caller closes the connection."""
        self.opening -= 1
        if ok:
            self.backoff.succeeded()
            return self.slots.opened(action.lane)
        self.slots.unreserve(action.lane)
        self.backoff.failed(now)
        return False

    @property
    def failing(self) -> bool:
        """Whether background opens are failing (the gateway looks unreachable)."""
        return self.backoff.failing


__all__ = ["Open", "Action", "Maintenance", "GENERAL", "RESERVED"]
