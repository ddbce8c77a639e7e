"""PoolPolicy: the decisions of one pool, composed from slots, the wait queue, the idle stacks,
the connections' lifecycle, the maintenance schedule and the stats. Both drivers hold one and
call it — the sync driver under its lock, the async driver on the loop's thread — then wake
the waiters it names, close the connections it gives back, and carry out the actions the
schedule returns. It never blocks, sleeps, reads a clock or touches a socket.

Where a connection goes when it comes free (returned after a request, newly opened, its ping
answered): to the oldest waiter that may use it, else on top of its lane's idle stack (LIFO:
the most recently used connection is reused first — its socket, TLS state and the server's
worker for it are the warmest, and the coldest ones at the bottom are the ones a server's idle
timeout reaps, or keep-warm pings). A connection opened or pinged in the background goes to
the bottom instead, below the hot ones. Where a freed slot goes: to the oldest waiter that may
open a connection in that lane, else to the maintenance schedule's refill.

The idle stacks are plain lists: the engines' hot path pops and pushes them directly (atomic
list operations under the GIL), after checking the wait queue's deques are empty.
"""

from __future__ import annotations

import weakref
from typing import Any, List, NamedTuple, Optional, Tuple

from .._model.errors import StaleConnection
from . import lifecycle
from .choice import Addresses, fastest_index
from .maintenance import Maintenance, Open
from .slots import Slots
from .stats import Stats, _PoolStats
from .waiters import GENERAL, RESERVED, Waiter, WaitQueue


class Released(NamedTuple):
    """What the driver does after the policy took back a connection."""

    woken: Optional[Waiter]     # wake it (it got the connection or the freed slot)
    close: Any                  # close this connection (None: nothing)
    maintain: bool              # ask the maintenance schedule (a drop, a rotation due)


class Claim:
    """A slot claimed for a request to open its own connection. The claimant holds it while
    it opens; the policy holds it weakly. A claimant that dies without settling it (an
    exception from a signal handler can land between any two statements) lets it go with
    its frame, and ``reconcile`` gives the slot back."""

    __slots__ = ("lane", "settled", "__weakref__")

    def __init__(self, lane: int) -> None:
        self.lane = lane
        self.settled = False


class PoolPolicy:
    """The shared state and decisions of one pool (see the module docstring)."""

    __slots__ = ("slots", "queue", "idle", "maintenance", "stats", "live", "claims", "fastest",
                 "addresses")

    def __init__(self, connections: int, max_connections: Optional[int], histogram: Any,
                 reserved: int = 0, *, keep_warm_ns: int = 0, lifetime_ns: int = 0,
                 max_requests: int = 0, tend_ns: int = 0, fastest: bool = False,
                 addresses: int = 1) -> None:
        self.slots = Slots(connections, max_connections, reserved)
        self.queue = WaitQueue()
        #: Idle stacks per lane (GENERAL, RESERVED); the top (end) is the hottest.
        self.idle: Tuple[List[Any], List[Any]] = ([], [])
        self.maintenance = Maintenance(self.slots, self.idle, keep_warm_ns=keep_warm_ns,
                                       lifetime_ns=lifetime_ns, max_requests=max_requests,
                                       tend_ns=tend_ns)
        self.stats = Stats(histogram)
        #: Every connection this policy counted, weakly: idle, in use or being closed. (After
        #: fork() the child closes them all without writing a byte; see the drivers.)
        self.live: weakref.WeakSet[Any] = weakref.WeakSet()
        self.claims: weakref.WeakSet[Claim] = weakref.WeakSet()
        #: "fastest" choice (fastpool._policy.choice) instead of the hottest
        self.fastest = fastest
        self.addresses = Addresses(addresses)
        self.maintenance.live = self.live if fastest else None

    @property
    def closed(self) -> bool:
        return self.slots.closed

    # ---- taking ------------------------------------------------------------------------

    def take_idle(self, priority: bool = False) -> Any:
        """The hottest idle connection this request may use, or None. A priority request
        takes the reserved lane's first (keeping it warm with the orders it exists for)."""
        for lane in ((RESERVED, GENERAL) if priority else (GENERAL,)):
            stack = self.idle[lane]
            if stack:
                return stack.pop(fastest_index(stack) if self.fastest else -1)
        return None

    def address_for(self, replaces: Any = None) -> int:
        """The gateway address a new connection should go to (see fastpool._policy.choice)."""
        return self.addresses.pick(list(self.live), replaces)

    def reserve_for_request(self, priority: bool = False) -> Optional[Claim]:
        """Room for the request to open its own connection (its claim), or None."""
        if priority and self.slots.reserve(RESERVED):
            return self._claim(RESERVED)
        if self.slots.reserve(GENERAL):
            return self._claim(GENERAL)
        return None

    def _claim(self, lane: int) -> Claim:
        claim = Claim(lane)
        self.claims.add(claim)
        return claim

    def reconcile(self) -> bool:
        """Gives back slots that nothing holds any more: counted as open, but neither a
        connection that is not closed, nor a live claim, nor a background open. Only an
        interrupted bookkeeping step (a signal handler's exception between two statements)
        leaks one; this runs when a request would otherwise wait, so a leak never starves
        the pool. True when slots were given back."""
        fixed = False
        m = self.maintenance
        for lane in (GENERAL, RESERVED):
            live = sum(1 for c in list(self.live)
                       if c.lane == lane and c.state != lifecycle.CLOSED)
            claims = sum(1 for k in list(self.claims) if k.lane == lane and not k.settled)
            held = live + claims + m.in_flight(lane)
            if held < self.slots.open[lane]:
                self.slots.open[lane] = held
                self.slots.established[lane] = min(self.slots.established[lane], live)
                fixed = True
        return fixed

    def outage(self) -> Optional[str]:
        """Why a request that found no connection should fail at once rather than try to
        open one itself: background opens are failing and not one connection is open (the
        gateway is down; the schedule keeps probing with back-off). None otherwise."""
        m = self.maintenance
        if m.failing and not any(self.slots.established):
            return (f"the gateway is unreachable: {m.backoff.failures} background attempts "
                    f"in a row failed ({m.last_error or 'no detail'}); retrying in the "
                    "background")
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

    # ---- connections joining -----------------------------------------------------------

    def opened(self, conn: Any, lane: int, now: int, claim: Optional[Claim] = None) -> None:
        """A connection opened in a claimed slot of `lane` (for a request, holding `claim`,
        or initially)."""
        if claim is not None:
            claim.settled = True
        conn.lane = lane
        self.maintenance.stamp(conn, now)
        self.live.add(conn)
        self.stats.opened(reconnect=self.slots.opened(lane),
                          resumed=bool(getattr(conn, "resumed", False)))

    def opened_in_background(self, action: Open, conn: Any, now: int) -> Released:
        """The maintenance schedule's open succeeded: the connection joins its lane (to a
        waiter, else the bottom of the stack); a replacement retires the one it replaces."""
        reconnect = self.maintenance.open_done(action, True, now)
        if self.closed:  # closed while it opened
            self.slots.dropped(action.lane)
            return Released(None, conn, False)
        conn.lane = action.lane
        self.maintenance.stamp(conn, now)
        self.live.add(conn)
        self.stats.opened(reconnect=reconnect, resumed=bool(getattr(conn, "resumed", False)))
        woken = self.returned(conn, fresh=True)
        old = action.replaces
        close = None
        if old is not None:
            self.stats.rotations += 1
            close = self._retire(old)
        return Released(woken, close, True)

    def _retire(self, old: Any) -> Any:
        """The replacement of `old` is open: old is closed now if idle, else on release."""
        if old.state != lifecycle.RETIRING:
            return None  # already gone (failed, stale, pool closed)
        lifecycle.move(old, lifecycle.RETIRED)
        try:
            self.idle[old.lane].remove(old)
        except ValueError:  # carrying a request: the lane hands it back when it is done
            old.retire_uses = 0
            return None
        self._closed(old)
        self.slots.dropped(old.lane)
        return old

    # ---- connections coming back -------------------------------------------------------

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

    def released(self, conn: Any, now: int) -> Released:
        """The lane handed back a connection after a request (it could not push it idle: a
        waiter, or a rotation due, or it cannot be reused, or the pool closed)."""
        if not conn.reusable or self.closed or conn.state == lifecycle.RETIRED:
            woken = self.dropped(conn, None)
            return Released(woken, conn if conn.reusable else None, woken is None)
        maintain = False
        m = self.maintenance
        if m.due_for_rotation(conn, now):
            m.retire(conn)
            maintain = True
        if conn.state == lifecycle.RETIRING and m.spent(conn):
            # Its budget is a limit: it carries nothing more. The replacement (opening, or
            # about to) takes its place; a waiter gets the slot if none is on the way.
            return Released(self.dropped(conn, None), conn, True)
        return Released(self.returned(conn), None, maintain)

    def ping_done(self, conn: Any, error: Optional[BaseException]) -> Released:
        """The keep-warm request on conn finished (error None: answered)."""
        self.stats.pings += 1
        self.maintenance.ping_done(conn)
        if error is None and conn.reusable and not self.closed:
            lifecycle.move(conn, lifecycle.IN_SERVICE)
            return Released(self.returned(conn, fresh=True), None, True)
        if error is not None:
            self.stats.ping_failures += 1
        woken = self.dropped(conn, None)
        return Released(woken, conn, True)

    def tended(self, conn: Any, stale: bool) -> Released:
        """The check of a new connection found it usable (back to the bottom of its stack)
        or stale (dropped, replaced)."""
        if not stale and not self.closed:
            lifecycle.move(conn, lifecycle.IN_SERVICE)
            return Released(self.returned(conn, fresh=True), None, False)
        woken = self.dropped(conn, StaleConnection("closed by the server while idle"))
        return Released(woken, conn, True)

    def dropped(self, conn: Any, exc: Optional[BaseException] = None) -> Optional[Waiter]:
        """conn was closed (failed, not reusable, found stale) or is to be: its slot goes to
        the oldest waiter that may open one there (returned, to be woken), else to the
        refill (the driver asks maintenance)."""
        lane = conn.lane
        # A retired connection's replacement holds the lane's place already; so does one
        # whose replacement is opening (it fills the place when it arrives).
        replaced = (conn.state == lifecycle.RETIRED
                    or any(c is conn for c in self.maintenance.replacing))
        self._closed(conn)
        self.slots.dropped(lane)
        if isinstance(exc, StaleConnection):
            self.stats.stale += 1
        return None if replaced else self.slot_freed(lane)

    def _closed(self, conn: Any) -> None:
        if conn.state != lifecycle.CLOSED:
            lifecycle.move(conn, lifecycle.CLOSED)
        self.maintenance.forget(conn)

    def slot_freed(self, lane: int) -> Optional[Waiter]:
        """Room in `lane` came free (a drop, a failed open): to the oldest waiter for it (who
        gets the claim), or None."""
        if self.queue.wants(lane) and self.slots.reserve(lane):
            waiter = self.queue.offer_slot(lane)
            if waiter is not None:
                waiter.claim = self._claim(lane)
                return waiter
            self.slots.unreserve(lane)  # pragma: no cover - wants() said there was one
        return None

    def unreserved(self, claim: Claim) -> Optional[Waiter]:
        """A claimed slot was not used (its open failed or was abandoned); once per claim."""
        if claim.settled:
            return None
        claim.settled = True
        self.slots.unreserve(claim.lane)
        return self.slot_freed(claim.lane)

    def open_failed(self, action: Open, now: int, error: str) -> Optional[Waiter]:
        """The maintenance schedule's open failed: its slot to a waiter (who then tries on
        its own instead of sleeping to its pool timeout), the schedule backs off."""
        self.maintenance.open_done(action, False, now, error)
        return None if action.reason == "rotate" else self.slot_freed(action.lane)

    def rotate(self) -> None:
        """Every connection is replaced (make-before-break), starting now."""
        self.maintenance.rotate_all(self.live)

    def close(self) -> Tuple[List[Any], List[Waiter]]:
        """The pool closes: the idle connections to close and the waiters to fail (with
        PoolClosed, set by the caller through WaitQueue.fail_all's error). Connections in
        use close when their requests finish (the driver sees `closed` on return)."""
        self.slots.closed = True
        idle = []
        for lane in (GENERAL, RESERVED):
            stack = self.idle[lane]
            for conn in stack:
                self._closed(conn)
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

    def snapshot(self) -> _PoolStats:
        return self.stats.snapshot(self.slots.total_open, self.idle_count(), len(self.queue))
