"""The maintenance schedule: what the pool does in the background, and when it next must.

``due(now)`` returns the actions to carry out now and the time (ns) of the next wake-up, or
None when nothing is scheduled (the sync driver's thread then ends; the async driver sets no
timer). The drivers carry actions out off the hot path — a caller's request never waits
behind maintenance — and report each outcome back, which may schedule more.

The work, in order of importance:
1. Refill: a lane below its target gets a connection, one open at a time, backing off with
   jitter while opens fail (the gateway is down) and recovering by itself when it is back.
2. Rotation: a connection past its lifetime or request budget is replaced make-before-break:
   its replacement is opened (TLS resumed) while it stays in service, then it retires. One
   replacement per lane at a time; lifetimes are jittered so connections opened together do
   not expire together.
3. Keep-warm: a connection idle for ``every`` gets the KeepWarm request (it is taken off the
   idle stack for it, so it is not idle: requests use the others meanwhile).
4. Tending (sync pools over TLS): a new connection no request has used yet is checked once,
   ``tend_ns`` after it opened: a TLS 1.3 server sends its session tickets a round trip
   after the handshake, and only a read stores them — an idle pool (or one rotating its
   connections before any request) would otherwise never resume. (The async driver's
   readers see those bytes arrive and check at once.)
"""

from __future__ import annotations

import random
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple, Union

from . import lifecycle
from .backoff import Backoff
from .choice import slow_ones
from .slots import Slots
from .waiters import GENERAL, RESERVED

#: With "fastest" choice, how often the schedule looks for persistently slow connections.
_SLOW_CHECK_NS = 1_000_000_000


class Open(NamedTuple):
    """Open a connection in `lane` (its slot is already claimed) and report open_done()."""

    lane: int
    reason: str = "refill"       # "refill" or "rotate"
    replaces: Any = None         # rotate: the connection it replaces


class Ping(NamedTuple):
    """Send the keep-warm request on `conn` (taken off its idle stack) and report
    ping_done()."""

    conn: Any


class Tend(NamedTuple):
    """Check `conn` (taken off its idle stack) without sending anything: reading what the
    server sent since its handshake stores its TLS 1.3 session tickets (so the next opens
    resume) and finds a close. Report tended()."""

    conn: Any


Action = Union[Open, Ping, Tend]


class Maintenance:
    """The background schedule of one pool (not thread-safe: called under the driver's lock,
    or on the event loop)."""

    __slots__ = ("slots", "idle", "backoff", "opening", "opening_lane", "keep_warm_ns",
                 "tend_ns", "lifetime_ns", "live", "pinging",
                 "max_requests", "retiring", "replacing", "_random", "last_error")

    def __init__(self, slots: Slots, idle: Sequence[List[Any]], *, keep_warm_ns: int = 0,
                 lifetime_ns: int = 0, max_requests: int = 0, tend_ns: int = 0,
                 backoff: Optional[Backoff] = None,
                 rand: Optional[Callable[[], float]] = None) -> None:
        self.slots = slots
        self.idle = idle              # the policy's idle stacks, per lane
        self.backoff = backoff or Backoff(rand=rand)
        self.opening = 0              # background refills in flight (0 or 1)
        self.opening_lane = GENERAL
        self.keep_warm_ns = keep_warm_ns
        self.tend_ns = tend_ns        # check a new connection once, this long after it opened
        self.lifetime_ns = lifetime_ns
        self.max_requests = max_requests
        self.retiring: List[Any] = []   # due for replacement, none opened for them yet
        self.replacing: List[Any] = []  # a replacement is opening for them
        self._random = rand or random.random
        self.last_error = ""          # why the last background open failed
        #: keep-warm pings in flight per lane: one at a time, so that connections that went
        #: idle together (after a burst) are never all away being pinged at once
        self.pinging = [0, 0]
        #: with "fastest" choice: every connection, to find the persistently slow ones
        self.live: Optional[Any] = None

    @property
    def timed(self) -> bool:
        """Work comes due by time alone (pings, rotation by age, the slow-connection check):
        the driver runs the schedule from the start, not only when an event asks for it."""
        return bool(self.keep_warm_ns or self.lifetime_ns or self.live is not None)

    # ---- what a new connection gets ------------------------------------------------------

    def stamp(self, conn: Any, now: int) -> None:
        """Sets a new connection's lifecycle fields: in service, born now, and when it will be
        due for rotation (jittered down by up to 20 %: connections opened together spread
        their replacements over a fifth of their life)."""
        conn.state = lifecycle.IN_SERVICE
        conn.born_ns = now
        conn.uses = 0
        conn.tended = self.tend_ns == 0
        if self.lifetime_ns:
            conn.retire_at_ns = now + int(self.lifetime_ns * (1.0 - 0.2 * self._random()))
        else:
            conn.retire_at_ns = 0
        if self.max_requests:
            conn.retire_uses = max(1, int(self.max_requests * (1.0 - 0.2 * self._random())))
        else:
            conn.retire_uses = lifecycle.NO_LIMIT

    def due_for_rotation(self, conn: Any, now: int) -> bool:
        return bool(conn.state == lifecycle.IN_SERVICE) and (
            conn.uses >= conn.retire_uses or (conn.retire_at_ns != 0
                                              and now >= conn.retire_at_ns))

    def retire(self, conn: Any) -> None:
        """conn is due for rotation: it stays in service until its replacement is open (its
        replacement was started at a jittered 80-100 % of the budget: usually in time). The
        lane hands it back again only when it reaches the request budget itself, which is a
        hard limit (spent(): then it closes, replaced or not)."""
        lifecycle.move(conn, lifecycle.RETIRING)
        conn.retire_at_ns = 0
        conn.retire_uses = self.max_requests or lifecycle.NO_LIMIT
        self.retiring.append(conn)

    def spent(self, conn: Any) -> bool:
        """Whether conn carried its whole request budget (max_requests): no more requests."""
        return bool(self.max_requests) and conn.uses >= self.max_requests

    def rotate_all(self, live: Any) -> None:
        """pool.rotate(): every connection in service is due now."""
        for conn in list(live):
            if conn.state in (lifecycle.IN_SERVICE, lifecycle.PINGING):
                conn.retire_at_ns = 1   # in the past: due at the next look (or release)

    # ---- the schedule --------------------------------------------------------------------

    def due(self, now: int) -> Tuple[List[Action], Optional[int]]:
        """The actions to carry out now, and when to call again (ns, or None: not until an
        event — a drop, a failure, a release — asks for it)."""
        actions: List[Action] = []
        wakes: List[int] = []
        slots = self.slots
        if slots.closed:
            return actions, None
        ready = self.backoff.ready(now)
        # 1. refill
        if self.opening == 0:
            for lane in (RESERVED, GENERAL):  # the reserved lane first: it serves the orders
                if slots.deficit(lane) <= 0:
                    continue
                if not ready:
                    wakes.append(self.backoff.next_at)
                elif slots.reserve(lane):
                    self.opening += 1
                    self.opening_lane = lane
                    actions.append(Open(lane))
                break
        # Idle connections: due for rotation, due for a ping.
        for lane in (GENERAL, RESERVED):
            for conn in list(self.idle[lane]):
                if self.due_for_rotation(conn, now):
                    self.retire(conn)
                elif conn.state == lifecycle.IN_SERVICE:
                    if conn.retire_at_ns:
                        wakes.append(conn.retire_at_ns)
                    if not conn.tended:
                        if conn.uses:  # a request read from it already
                            conn.tended = True
                        elif conn.born_ns + self.tend_ns <= now:
                            conn.tended = True
                            self.idle[lane].remove(conn)
                            lifecycle.move(conn, lifecycle.PINGING)
                            actions.append(Tend(conn))
                            continue
                        else:
                            wakes.append(conn.born_ns + self.tend_ns)
                    if self.keep_warm_ns:
                        at = conn.last_used_ns + self.keep_warm_ns
                        if at > now:
                            wakes.append(at)
                        elif not self.pinging[lane]:  # else: when that ping is done
                            self.idle[lane].remove(conn)  # not idle while it is pinged
                            lifecycle.move(conn, lifecycle.PINGING)
                            self.pinging[lane] += 1
                            actions.append(Ping(conn))
        # Persistently slow connections are rotated out (their replacement goes elsewhere).
        if self.live is not None:
            wakes.append(now + _SLOW_CHECK_NS)
            for lane in (GENERAL, RESERVED):
                lane_conns = [c for c in list(self.live)
                              if c.lane == lane and c.state != lifecycle.CLOSED]
                for conn in slow_ones(lane_conns):
                    if conn.state == lifecycle.IN_SERVICE:
                        self.retire(conn)
        # 2. rotation (after the refill: capacity first)
        if self.retiring:
            if not ready:
                wakes.append(self.backoff.next_at)
            else:
                for conn in list(self.retiring):
                    if conn.state != lifecycle.RETIRING:  # closed meanwhile
                        self.retiring.remove(conn)
                    elif slots.reserve_replacement(conn.lane):
                        self.retiring.remove(conn)
                        self.replacing.append(conn)
                        actions.append(Open(conn.lane, "rotate", conn))
        return actions, (min(wakes) if wakes else None)

    def open_done(self, action: Open, ok: bool, now: int, error: str = "") -> bool:
        """A background open finished. ok: the connection is open (the caller adopts it; the
        return value says whether it is a reconnect). Not ok: its slot is given back, a
        rotation goes back to waiting, and the next attempt backs off. (A pool closed
        meanwhile: the caller closes the connection.)"""
        replacement = action.reason == "rotate"
        if replacement:
            if action.replaces in self.replacing:
                self.replacing.remove(action.replaces)
        else:
            self.opening -= 1
        if ok:
            self.backoff.succeeded()
            return self.slots.opened(action.lane, replacement=replacement)
        self.slots.unreserve(action.lane, replacement=replacement)
        self.backoff.failed(now)
        self.last_error = error
        if replacement and action.replaces.state == lifecycle.RETIRING:
            self.retiring.append(action.replaces)  # still in service: try again later
        return False

    def ping_done(self, conn: Any) -> None:
        """The keep-warm request on conn finished (the next one in its lane may start)."""
        self.pinging[conn.lane] -= 1

    def forget(self, conn: Any) -> None:
        """conn left the pool (closed): no rotation is owed to it any more."""
        if conn in self.retiring:
            self.retiring.remove(conn)

    def in_flight(self, lane: int) -> int:
        """Background opens (refills, replacements) holding a slot of `lane` now."""
        refill = 1 if self.opening and self.opening_lane == lane else 0
        return refill + sum(1 for c in self.replacing if c.lane == lane)

    @property
    def failing(self) -> bool:
        """Whether background opens are failing (the gateway looks unreachable)."""
        return self.backoff.failing


__all__ = ["Open", "Ping", "Tend", "Action", "Maintenance", "GENERAL", "RESERVED"]
