"""A connection's life, as one table. Everything that moves a connection from one state to
another goes through ``move``, which checks the move against the table — except the hot
path's two edges: a request takes an IN_SERVICE connection off the idle stack and gives it
back (the engines' lane does that with a list pop and push, without touching the state: in
service means "idle or carrying a request", and which of the two is where it is).

    OPENING    being connected and handshaked (its slot is claimed)
    IN_SERVICE open; idle on its lane's stack or carrying a request
    PINGING    taken by the maintenance schedule for a keep-warm request or a check (not
               idle, so no caller's request ever waits behind it; a retiring one is not)
    RETIRING   past its lifetime or request budget: still in service while its replacement
               opens (make-before-break: capacity never dips)
    RETIRED    its replacement is open: closed as soon as it is idle
    CLOSED     closed (failed, stale, retired, pool closed)

Besides the state, a connection carries what the hot path compares on release (the lane
reads these fields directly): ``retire_at_ns`` (0: never) and ``retire_uses`` (requests after
which it is due; ``uses`` counts them). When either is reached, the lane hands the connection
to the policy instead of pushing it idle.
"""

from __future__ import annotations

from typing import Any, Dict, FrozenSet

OPENING = 0
IN_SERVICE = 1
PINGING = 2
RETIRING = 3
RETIRED = 4
CLOSED = 5

NAMES = ("opening", "in service", "pinging", "retiring", "retired", "closed")

#: No request budget: the lane's `uses >= retire_uses` never holds.
NO_LIMIT = (1 << 62)

#: state -> the states it may move to.
TRANSITIONS: Dict[int, FrozenSet[int]] = {
    OPENING: frozenset({IN_SERVICE, CLOSED}),
    IN_SERVICE: frozenset({PINGING, RETIRING, CLOSED}),
    PINGING: frozenset({IN_SERVICE, CLOSED}),
    RETIRING: frozenset({RETIRED, CLOSED}),
    RETIRED: frozenset({CLOSED}),
    CLOSED: frozenset({CLOSED}),
}


class TransitionError(AssertionError):
    """A move the table does not allow: a bug in the policy, never a user's error."""


def move(conn: Any, to: int) -> None:
    """Moves conn to state `to`, as the table allows."""
    now = conn.state
    if to not in TRANSITIONS[now]:
        raise TransitionError(f"a connection cannot go from {NAMES[now]} to {NAMES[to]}")
    conn.state = to


def in_service(conn: Any) -> bool:
    """Whether conn may carry requests (in service, or retiring while its replacement opens)."""
    return conn.state in (IN_SERVICE, RETIRING)
