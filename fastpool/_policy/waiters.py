"""The wait queue: requests waiting for a connection, served oldest first, priority lane first.

The hand-off race lives here, once, for both drivers (Go's net/http `wantConn` is the model):
a connection or a free slot is offered to the queue, which says which waiter won it; a waiter
that gives up (timeout, cancellation, pool closed) is cancelled, and cancelling hands back a
connection that was delivered to it meanwhile, so nothing is ever lost between the two.

Rules:
- Priority waiters (``priority=True`` requests: orders, cancels) are served before every
  ordinary waiter, each lane in arrival order.
- A connection of the reserved lane goes only to a priority waiter; an ordinary connection
  goes to the oldest priority waiter, else the oldest ordinary one.
- A slot (room to open a connection) of a lane goes to the oldest waiter that may use that
  lane, the same way.

The queue never blocks and never wakes anyone: it returns the waiter that won, and the driver
wakes it (a lock released by the sync driver, a future resolved by the async driver). Not
thread-safe by itself: the sync driver calls it under its lock.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Deque, List, Optional, Tuple

#: Lanes: ordinary connections, and the connections reserved for priority requests.
GENERAL = 0
RESERVED = 1

# What a waiter ended with.
WAITING = 0
GOT_CONN = 1      # .conn holds a connection to use
GOT_SLOT = 2      # .slot_lane names the lane in which it may open a connection
FAILED = 3        # .error holds the exception to raise (e.g. the pool closed)
CANCELLED = 4     # it gave up; nothing is owed to it


class Waiter:
    """One request waiting for a connection. ``handle`` is the driver's (a lock, a future)."""

    __slots__ = ("priority", "state", "conn", "slot_lane", "claim", "error", "handle")

    def __init__(self, priority: bool = False, handle: Any = None) -> None:
        self.priority = priority
        self.state = WAITING
        self.conn: Any = None
        self.slot_lane = GENERAL
        self.claim: Any = None      # GOT_SLOT: the policy's Claim on that slot
        self.error: Optional[BaseException] = None
        self.handle = handle

    @property
    def done(self) -> bool:
        return self.state != WAITING

    def __repr__(self) -> str:
        names = ("waiting", "got a connection", "got a slot", "failed", "cancelled")
        return f"<Waiter {'priority ' if self.priority else ''}{names[self.state]}>"


class WaitQueue:
    """FIFO of waiters with a priority lane (see the module docstring for the rules).

    ``general`` and ``priority`` are the deques themselves: the engines' hot path tests them
    for emptiness (a returned connection must go to a waiter, not to the idle stack), which
    costs a length check, not a call.
    """

    __slots__ = ("general", "priority")

    def __init__(self) -> None:
        self.general: Deque[Waiter] = deque()
        self.priority: Deque[Waiter] = deque()

    def __len__(self) -> int:
        return len(self.general) + len(self.priority)

    def add(self, waiter: Waiter) -> None:
        """Queues a waiter behind every earlier one of its lane."""
        (self.priority if waiter.priority else self.general).append(waiter)

    def offer_conn(self, conn: Any, lane: int = GENERAL) -> Optional[Waiter]:
        """A connection of `lane` came free: the waiter that gets it (now GOT_CONN), or None
        (no waiter may use it; the caller makes it idle)."""
        waiter = self._first(lane)
        if waiter is not None:
            waiter.state = GOT_CONN
            waiter.conn = conn
        return waiter

    def offer_slot(self, lane: int = GENERAL) -> Optional[Waiter]:
        """Room to open one connection in `lane`: the waiter that gets it (now GOT_SLOT), or
        None (the caller keeps the room)."""
        waiter = self._first(lane)
        if waiter is not None:
            waiter.state = GOT_SLOT
            waiter.slot_lane = lane
        return waiter

    def cancel(self, waiter: Waiter) -> Tuple[Any, Any]:
        """The waiter gives up. Returns what it had been given meanwhile, which the caller must
        pass on: ``(conn, None)``, ``(None, claim)`` (a slot), or ``(None, None)``."""
        state = waiter.state
        if state == WAITING:
            queue = self.priority if waiter.priority else self.general
            try:
                queue.remove(waiter)
            except ValueError:  # pragma: no cover - a waiting waiter is always queued
                pass
        waiter.state = CANCELLED
        if state == GOT_CONN:
            conn, waiter.conn = waiter.conn, None
            return conn, None
        if state == GOT_SLOT:
            return None, waiter.claim
        return None, None

    def fail_all(self, error: BaseException) -> List[Waiter]:
        """Every waiter fails with `error` (the pool closed): the waiters, to be woken."""
        out: List[Waiter] = []
        for queue in (self.priority, self.general):
            while queue:
                waiter = queue.popleft()
                waiter.state = FAILED
                waiter.error = error
                out.append(waiter)
        return out

    def wants(self, lane: int = GENERAL) -> bool:
        """Whether a waiter would take a connection or slot of `lane`."""
        return bool(self.priority) or (lane == GENERAL and bool(self.general))

    def _first(self, lane: int) -> Optional[Waiter]:
        if self.priority:
            return self.priority.popleft()
        if lane == GENERAL and self.general:
            return self.general.popleft()
        return None
