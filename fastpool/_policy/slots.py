"""Slots: how many connections each lane holds, may hold, and must get back to.

A slot is room for one connection, counted from the moment someone decides to open it (so
concurrent openers never exceed the limit) until the connection is closed. Two lanes: the
general one (``connections`` kept open, growing to ``max_connections`` under load) and the
reserved one (``reserved`` connections only priority requests may use; it never grows).

A replacement (rotation: make-before-break) may take one slot beyond a lane's limit while the
connection it replaces is still open, so capacity never dips; at most one per lane at a time.
"""

from __future__ import annotations

from .waiters import GENERAL, RESERVED


class Slots:
    """Open/limit/target bookkeeping per lane. Not thread-safe: drivers call it under their
    lock (sync) or on the loop's thread (async)."""

    __slots__ = ("target", "limit", "open", "established", "replacing", "high_water", "closed")

    def __init__(self, connections: int, max_connections: int | None = None,
                 reserved: int = 0) -> None:
        if isinstance(connections, bool) or not isinstance(connections, int) or connections < 1:
            raise ValueError(f"connections must be a positive int, got {connections!r}")
        limit = connections if max_connections is None else max_connections
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < connections:
            raise ValueError(f"max_connections must be an int >= connections ({connections}), "
                             f"got {max_connections!r}")
        if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
            raise ValueError(f"reserved must be an int >= 0, got {reserved!r}")
        self.target = [connections, reserved]
        self.limit = [limit, reserved]
        self.open = [0, 0]          # open or being opened, per lane
        self.established = [0, 0]   # open (opened and not yet closed), per lane
        self.replacing = [0, 0]     # replacements being opened beyond the limit
        self.high_water = [0, 0]    # the most ever open at once (reconnects are derived from it)
        self.closed = False

    # ---- claiming and giving back ------------------------------------------------------

    def reserve(self, lane: int = GENERAL) -> bool:
        """Claims a slot in `lane` when the limit allows one (False when closed or full)."""
        if self.closed or self.open[lane] >= self.limit[lane]:
            return False
        self.open[lane] += 1
        return True

    def reserve_replacement(self, lane: int = GENERAL) -> bool:
        """Claims a slot for a connection that will replace an open one (make-before-break):
        allowed one beyond the limit, one replacement per lane at a time."""
        if self.closed or self.replacing[lane]:
            return False
        self.replacing[lane] += 1
        self.open[lane] += 1
        return True

    def unreserve(self, lane: int = GENERAL, replacement: bool = False) -> None:
        """A claimed slot was not used: the open failed or was abandoned."""
        self.open[lane] -= 1
        if replacement:
            self.replacing[lane] -= 1

    def opened(self, lane: int = GENERAL, replacement: bool = False) -> bool:
        """A claimed slot now holds an open connection. Returns whether it is a reconnect:
        it brings the lane back to a level it had already reached (a replacement of a
        dropped connection), rather than growing it (initial opens, growth under load) or
        rotating one (make-before-break)."""
        self.established[lane] += 1
        if replacement:
            self.replacing[lane] -= 1
            return False
        n = self.established[lane]
        if n > self.high_water[lane]:
            self.high_water[lane] = n
            return False
        return True

    def dropped(self, lane: int = GENERAL, count: int = 1) -> None:
        """Open connections of `lane` were closed (failed, not reusable, retired, pool
        closed)."""
        self.open[lane] -= count
        self.established[lane] -= count

    # ---- views -------------------------------------------------------------------------

    def deficit(self, lane: int = GENERAL) -> int:
        """How many connections to open in the background to get `lane` back to its target."""
        if self.closed:
            return 0
        return max(0, self.target[lane] - (self.open[lane] - self.replacing[lane]))

    def has_room(self, lane: int = GENERAL) -> bool:
        return not self.closed and self.open[lane] < self.limit[lane]

    @property
    def total_open(self) -> int:
        return self.open[GENERAL] + self.open[RESERVED]

    @property
    def total_target(self) -> int:
        return self.target[GENERAL] + self.target[RESERVED]

    def __repr__(self) -> str:
        return (f"<Slots general {self.open[0]}/{self.target[0]} (limit {self.limit[0]}), "
                f"reserved {self.open[1]}/{self.target[1]}{' closed' if self.closed else ''}>")
