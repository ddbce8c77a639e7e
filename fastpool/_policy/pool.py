"""PoolPolicy: the decisions of one pool, composed from slots, the wait queue, the idle stacks,
the maintenance schedule and the stats. Both drivers hold one and call it — the sync driver
under its lock, the async driver on the loop's thread — then wake the waiters it names and
carry out the actions it returns. It never blocks, sleeps, reads a clock or touches a socket.

Where a connection goes when it comes free (returned after a request, newly opened, its ping
answered): to the oldest waiter that may use it, else on top of its lane's idle stack (LIFO:
the most recently used connection is reused first — its socket, TLS state and the server's
worker for it are the warmest, and the coldest ones at the bottom are the ones a server's idle
timeout reaps). A connection opened in the background goes to the bottom instead, below the
hot ones. Where a freed slot goes: to the oldest waiter that may open a connection in that
lane, else to the maintenance schedule's refill.

The idle stacks are plain lists: the engines' hot path pops and pushes them directly (atomic
list operations under the GIL), after checking the wait queue's deques are empty.
"""

from __future__ import annotations

import weakref
from typing import Any, List, Optional, Tuple

from .._model.errors import StaleConnection
from .maintenance import Maintenance
from .slots import Slots
from .stats import PoolStats, Stats
from .waiters import GENERAL, RESERVED, Waiter, WaitQueue


class PoolPolicy:
    """The shared state and decisions of one pool (see the module docstring)."""

    __slots__ = ("slots", "queue", "idle", "maintenance", "stats", "live")

    def __init__(self, connections: int, max_connections: Optional[int], histogram: Any,
                 reserved: int = 0) -> None:
        self.slots = Slots(connections, max_connections, reserved)
        self.queue = WaitQueue()
        #: Idle stacks per lane (GENERAL, RESERVED); the top (end) is the hottest.
        self.idle: Tuple[List[Any], List[Any]] = ([], [])
        self.maintenance = Maintenance(self.slots)
        self.stats = Stats(histogram)
        #: Every connection this policy counted, weakly: idle, in use or being closed. (After
        #: fork() the child closes them all without writing a byte; see the drivers.)
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()

    @property
    def closed(self) -> bool:
        return self.slots.closed

    # ---- taking ------------------------------------------------------------------------

    def take_idle(self, priority: bool = False) -> Any:
        """The hottest idle connection this request may use, or None. A priority request
        takes the reserved lane's first (keeping it warm with the orders it exists for)."""
        if priority and self.idle[RESERVED]:
            return self.idle[RESERVED].pop()
        if self.idle[GENERAL]:
            return self.idle[GENERAL].pop()
        return None

    def reserve_for_request(self, priority: bool = False) -> Optional[int]:
        """Room for the request to open its own connection: the lane claimed, or None."""
        if priority and self.slots.reserve(RESERVED):
            return RESERVED
        if self.slots.reserve(GENERAL):
            return GENERAL
        return None

    def settle(self) -> List[Waiter]:
        """Idle connections that waiters may use go to them (oldest first). Closes the race
        where a connection was pushed idle just as a request queued: the engines' hot path
        checks the queue before pushing, a queuing request checks the stacks after queuing,
        so at least one of them sees the other, and whichever does calls this."""
        woken = []
        for lane in (GENERAL, RESERVED):
            stack = self.idle[lane]
            while stack and self.queue.wants(lane):
                waiter = self.queue.offer_conn(stack.pop(), lane)
                if waiter is not None:
                    woken.append(waiter)
        return woken

    # ---- events ------------------------------------------------------------------------

    def opened(self, conn: Any, lane: int) -> None:
        """A connection opened in a claimed slot of `lane` (for a request or initially)."""
        conn.lane = lane
        self.live.add(conn)
        self.stats.opened(reconnect=self.slots.opened(lane),
                          resumed=bool(getattr(conn, "resumed", False)))

    def opened_in_background(self, conn: Any, reconnect: bool) -> None:
        """A connection the maintenance schedule opened (its slot counted by open_done)."""
        self.live.add(conn)
        self.stats.opened(reconnect=reconnect, resumed=bool(getattr(conn, "resumed", False)))

    def returned(self, conn: Any, *, fresh: bool = False) -> Optional[Waiter]:
        """A usable connection came free: the waiter that gets it (to be woken), or None
        (it went idle: on top, or at the bottom when `fresh` from the background)."""
        lane = conn.lane
        waiter = self.queue.offer_conn(conn, lane)
        if waiter is None:
            if fresh:
                self.idle[lane].insert(0, conn)
            else:
                self.idle[lane].append(conn)
        return waiter

    def dropped(self, lane: int, exc: Optional[BaseException] = None) -> Optional[Waiter]:
        """A connection of `lane` was closed (failed, not reusable, found stale). Its slot
        goes to the oldest waiter that may open one there (returned, to be woken), else to
        the refill (the driver asks maintenance)."""
        self.slots.dropped(lane)
        if isinstance(exc, StaleConnection):
            self.stats.stale += 1
        return self.slot_freed(lane)

    def slot_freed(self, lane: int) -> Optional[Waiter]:
        """Room in `lane` came free (a drop, a failed open): to the oldest waiter for it."""
        if self.queue.wants(lane) and self.slots.reserve(lane):
            waiter = self.queue.offer_slot(lane)
            if waiter is not None:
                return waiter
            self.slots.unreserve(lane)  # pragma: no cover - wants() said there was one
        return None

    def unreserved(self, lane: int) -> Optional[Waiter]:
        """A slot claimed for a request was not used (its open failed or was abandoned)."""
        self.slots.unreserve(lane)
        return self.slot_freed(lane)

    def close(self) -> Tuple[List[Any], List[Waiter]]:
        """The pool closes: the idle connections to close and the waiters to fail (with
        PoolClosed, set by the caller through WaitQueue.fail_all's error). Connections in
        use close when their requests finish (the driver sees `closed` on return)."""
        self.slots.closed = True
        idle = []
        for lane in (GENERAL, RESERVED):
            stack = self.idle[lane]
            self.slots.dropped(lane, len(stack))
            idle.extend(stack)
            stack.clear()
        return idle, []

    # ---- views -------------------------------------------------------------------------

    def idle_count(self) -> int:
        return len(self.idle[GENERAL]) + len(self.idle[RESERVED])

    def connections(self) -> List[Any]:
        """The idle connections, hottest last per lane (for tests and introspection)."""
        return list(self.idle[GENERAL]) + list(self.idle[RESERVED])

    def snapshot(self) -> PoolStats:
        return self.stats.snapshot(self.slots.total_open, self.idle_count(), len(self.queue))
