"""RateLimiter: keeps a pool inside the exchange's budgets, counted as the exchange counts.

Sans-IO: every method takes ``now_ns`` (CLOCK_MONOTONIC nanoseconds) and returns a
decision; nothing here sleeps, awaits or reads a clock. The driver calls ``acquire`` before
writing a request (0: go; else wait that long or raise RateLimitedError), ``refund`` when a
granted request certainly never reached the server (NotSent), ``observe`` with every
response's headers, and ``set_clock_offset`` after calibrating the server clock.

Fixed windows (Binance: clock-aligned) are indexed by the *server's* time, estimated as
``now_ns + offset_ns``. A request's arrival time at the server is only known to lie in
``[s - error, s + error + transit]`` (clock error, one-way delay); when that interval
crosses a window boundary the request is charged to *both* windows, so no server window
can receive more than ``limit`` whatever side of the boundary it lands on. (A token bucket
of ``limit`` refilled over ``per`` lets a full bucket out at the end of one window and the
refill at the start of the next: up to ~2x the limit inside one exchange window.)

Sliding windows (Bybit: "any 5-second window") count the last ``per`` seconds in
``buckets`` sub-buckets of ``per / buckets``; a bucket's units are taken to have been sent
at the bucket's end, so they expire up to one bucket width late, never early: the count is
exact to ``per / buckets`` and errs on the safe side. Sliding windows are kept on the
monotonic clock (no offset: the window has no phase), which all processes of a machine share.

State per limit is a short array of int64 words (a Python list, or a slice of a
SharedLedger's memory map when the limit is shared across processes), so the same code
serves both.

Cost per call: bench/exchange_costs.py measures acquire and acquire + observe.
"""

from __future__ import annotations

from typing import Any, Callable, MutableSequence, NamedTuple, Optional, Sequence

from .._model.ratelimit import RateLimit
from .ledger import SharedLedger

#: Windows kept per fixed limit: the one a request may still straddle into from the
#: previous boundary, the current one, the next one, and one spare so a slot is never
#: overwritten while a straddling charge may still refund it.
RING = 4

GetHeader = Callable[[str], Optional[str]]


class LimitState(NamedTuple):
    """One budget as the limiter sees it now (for stats)."""

    name: str
    limit: int
    per: float
    window: str
    orders: bool
    used: int
    remaining: int
    resets_in: float  #: seconds until the count next drops (fixed: window end)


class _Fixed:
    """Fixed windows: RING slots of (window index + 1, used); 0 marks an empty slot."""

    __slots__ = ("spec", "limit", "cap", "per", "w", "header", "remaining_kind")

    def __init__(self, spec: RateLimit, words: MutableSequence[int]) -> None:
        self.spec = spec
        self.limit = spec.limit
        self.cap = spec.limit - spec.reserve
        self.per = spec.per_ns
        self.w = words
        self.header = spec.header
        self.remaining_kind = spec.header_kind == "remaining"

    def used(self, win: int) -> int:
        w = self.w
        i = (win % RING) * 2
        return w[i + 1] if w[i] == win + 1 else 0

    def check(self, lo: int, hi: int, n: int, cap: int) -> int:
        """0 if n more units fit in every window [lo, hi] touches, else ns to wait (> 0)."""
        per = self.per
        w = self.w
        wa = lo // per
        i = (wa % RING) * 2
        blocked = -1
        if w[i] == wa + 1 and w[i + 1] + n > cap:
            blocked = wa
        wb = hi // per
        if wb != wa:
            i = (wb % RING) * 2
            if w[i] == wb + 1 and w[i + 1] + n > cap:
                blocked = wb
        if blocked < 0:
            return 0
        # Until the earliest possible arrival has left the blocking window.
        return max((blocked + 1) * per - lo, 1)

    def charge(self, lo: int, hi: int, n: int) -> None:
        per = self.per
        w = self.w
        wa = lo // per
        i = (wa % RING) * 2
        if w[i] == wa + 1:
            w[i + 1] += n
        else:
            w[i] = wa + 1
            w[i + 1] = n
        wb = hi // per
        if wb != wa:
            self._add(wb, n)

    def _add(self, win: int, n: int) -> None:
        w = self.w
        i = (win % RING) * 2
        if w[i] != win + 1:
            w[i] = win + 1
            w[i + 1] = 0
        w[i + 1] += n

    def refund(self, lo: int, hi: int, n: int) -> None:
        per = self.per
        wa = lo // per
        wb = hi // per
        for win in ((wa,) if wa == wb else (wa, wb)):
            w = self.w
            i = (win % RING) * 2
            if w[i] == win + 1:
                w[i + 1] = max(w[i + 1] - n, 0)

    def floor(self, lo: int, hi: int, server_used: int) -> None:
        """The server says ``server_used`` units were counted in the window of a request
        that reached it somewhere in [lo, hi]. One window: take it as a floor. Several (the
        window rolled over while the request was out): the count may belong to the old
        window; raising the new one by it would block a fresh window for nothing, so it is
        applied to the oldest, where it can only be harmless."""
        win = lo // self.per
        w = self.w
        i = (win % RING) * 2
        if w[i] != win + 1:
            if hi // self.per != win:
                return  # the old window is no longer kept: nothing left to correct
            w[i] = win + 1
            w[i + 1] = 0
        if server_used > w[i + 1]:
            w[i + 1] = server_used

    def state(self, s: int) -> tuple[int, int]:
        win = s // self.per
        return self.used(win), (win + 1) * self.per - s


class _Sliding:
    """Sliding window: words [low bucket + 1, total, (bucket index + 1, count) x (B + 1)].

    Bucket k holds the units sent in [k*g, (k+1)*g); they are counted until
    (k+1)*g + per. ``low`` is the oldest bucket possibly still counted; expiring advances
    it, so each bucket is visited once (amortised O(1) per call)."""

    __slots__ = ("spec", "limit", "cap", "per", "g", "slots", "w", "header", "remaining_kind")

    def __init__(self, spec: RateLimit, words: MutableSequence[int]) -> None:
        self.spec = spec
        self.limit = spec.limit
        self.cap = spec.limit - spec.reserve
        self.per = spec.per_ns
        self.g = -(-spec.per_ns // spec.buckets)  # ceil: B buckets cover the window
        self.slots = spec.buckets + 1
        self.w = words
        self.header = spec.header
        self.remaining_kind = spec.header_kind == "remaining"

    @staticmethod
    def words(spec: RateLimit) -> int:
        return 2 + 2 * (spec.buckets + 1)

    def _expire(self, t: int) -> int:
        """Drop buckets expired at t; returns the current total."""
        w = self.w
        # Bucket k has expired at t when (k+1)*g + per <= t, i.e. k < first. No bucket
        # below 0 exists (t >= 0), hence the clamp, which also keeps w[0] >= 1.
        first = max((t - self.per) // self.g, 0)
        low = w[0] - 1
        if first <= low:
            if low <= t // self.g + 1:
                return w[1]
            # low is in the future: left by a previous boot (monotonic time went back).
        elif w[0] != 0 and first - low <= self.slots:
            return self._drop(low, first)
        for j in range(len(w)):  # first use, everything expired, or stale
            w[j] = 0
        w[0] = first + 1
        return 0

    def _drop(self, low: int, first: int) -> int:
        w = self.w
        total = w[1]
        slots = self.slots
        for k in range(low, first):
            i = 2 + (k % slots) * 2
            if w[i] == k + 1:
                total -= w[i + 1]
                w[i] = 0
                w[i + 1] = 0
        w[1] = total = max(total, 0)
        w[0] = first + 1
        return total

    def check(self, t: int, n: int, cap: int) -> int:
        total = self._expire(t)
        if total + n <= cap:
            return 0
        # Walk from the oldest bucket until enough units have expired.
        w = self.w
        need = total + n - cap
        slots = self.slots
        g = self.g
        k = w[0] - 1
        last = t // g
        while k <= last:
            i = 2 + (k % slots) * 2
            if w[i] == k + 1:
                need -= w[i + 1]
                if need <= 0:
                    return max((k + 1) * g + self.per - t, 1)
            k += 1
        return max((last + 1) * g + self.per - t, 1)  # unreachable unless n > cap

    def charge(self, t: int, n: int) -> None:
        w = self.w
        k = t // self.g
        i = 2 + (k % self.slots) * 2
        if w[i] != k + 1:
            w[i] = k + 1
            w[i + 1] = 0
        w[i + 1] += n
        w[1] += n

    def refund(self, t: int, n: int) -> None:
        w = self.w
        k = t // self.g
        i = 2 + (k % self.slots) * 2
        if w[i] == k + 1 and k >= w[0] - 1:
            take = min(n, w[i + 1])
            w[i + 1] -= take
            w[1] = max(w[1] - take, 0)

    def floor(self, t: int, server_used: int) -> None:
        total = self._expire(t)
        if server_used > total:
            self.charge(t, server_used - total)

    def state(self, t: int) -> tuple[int, int]:
        total = self._expire(t)
        if total == 0:
            return 0, 0
        w = self.w
        g = self.g
        slots = self.slots
        for k in range(w[0] - 1, t // g + 1):
            i = 2 + (k % slots) * 2
            if w[i] == k + 1 and w[i + 1]:
                return total, max((k + 1) * g + self.per - t, 0)
        return total, 0


def _parse_count(value: Optional[str]) -> int:
    """A usage header's integer, or -1 when absent or not a plain non-negative integer."""
    if not value:
        return -1
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        return -1
    return int(value)


class RateLimiter:
    """The budgets of one pool (or of several processes, through a SharedLedger).

    ``RateLimiter([RateLimit(6000, per=60, header="x-mbx-used-weight-1m"),
    RateLimit(50, per=10, orders=True, header="x-mbx-order-count-10s")])``."""

    def __init__(self, limits: Sequence[RateLimit], *, ledger: Optional[SharedLedger] = None,
                 offset_ns: int = 0, error_ns: int = 0, transit_ns: int = 0) -> None:
        limits = list(limits)
        for spec in limits:
            if not isinstance(spec, RateLimit):
                raise TypeError(f"rate_limits must hold fastpool.RateLimit values, "
                                f"got {type(spec).__name__}")
        if ledger is not None and not isinstance(ledger, SharedLedger):
            raise TypeError(f"ledger must be a fastpool.SharedLedger, "
                            f"got {type(ledger).__name__}")
        keys = [spec.key for spec in limits if ledger is not None and spec.shared]
        if len(set(keys)) != len(keys):
            raise ValueError("two shared rate limits have the same name, kind, period and "
                             "window: give one a distinct name=")
        self.limits = tuple(limits)
        self._ledger = ledger
        fixed: list[_Fixed] = []
        sliding: list[_Sliding] = []
        ordered: list[_Fixed | _Sliding] = []  # as given, for snapshot()
        shared = False
        for spec in limits:
            use_ledger = ledger is not None and spec.shared
            words: Any
            shared = shared or use_ledger
            if spec.window == "fixed":
                words = ledger.region(spec.key, RING * 2) if ledger and use_ledger else [
                    0] * (RING * 2)
                fixed.append(_Fixed(spec, words))
                ordered.append(fixed[-1])
            else:
                n = _Sliding.words(spec)
                words = ledger.region(spec.key, n) if ledger and use_ledger else [0] * n
                sliding.append(_Sliding(spec, words))
                ordered.append(sliding[-1])
        self._shared = shared
        # Per kind, for the hot path: weight limits count every request, order limits
        # only orders.
        self._fixed_w = tuple(f for f in fixed if not f.spec.orders)
        self._fixed_o = tuple(f for f in fixed if f.spec.orders)
        self._slide_w = tuple(s for s in sliding if not s.spec.orders)
        self._slide_o = tuple(s for s in sliding if s.spec.orders)
        both: list[_Fixed | _Sliding] = [*fixed, *sliding]
        self._headers = tuple(x for x in both if x.header)
        self._all = tuple(ordered)
        self._max_weight = min((x.limit for x in both if not x.spec.orders), default=None)
        self._max_orders = min((x.limit for x in both if x.spec.orders), default=None)
        self._offset = 0
        self._err = 0
        self._transit = 0
        self.set_clock_offset(offset_ns, error_ns, transit_ns)

    # -- clock ----------------------------------------------------------------------------

    def set_clock_offset(self, offset_ns: int, error_ns: int = 0,
                         transit_ns: Optional[int] = None) -> None:
        """Align fixed windows to the server: server time = monotonic now + offset_ns,
        known within +-error_ns; requests reach the server up to transit_ns after leaving.

        Before calibration pass the local wall clock's offset (time.time_ns() -
        time.monotonic_ns()) with the error it may have. The straddle zone (2 * error +
        transit) is capped at half the shortest fixed window: past that every request
        would be charged twice."""
        self._offset = int(offset_ns)
        if transit_ns is not None:
            self._transit = max(int(transit_ns), 0)
        err = max(int(error_ns), 0)
        shortest = min((f.per for f in (*self._fixed_w, *self._fixed_o)), default=None)
        if shortest is not None:
            room = shortest // 2
            if self._transit > room:
                self._transit = room
            err = min(err, (room - self._transit) // 2)
        self._err = err

    @property
    def clock(self) -> tuple[int, int, int]:
        """(offset_ns, error_ns, transit_ns) in use."""
        return self._offset, self._err, self._transit

    # -- per request ----------------------------------------------------------------------

    def acquire(self, now_ns: int, weight: int = 1, order: int = False,
                priority: bool = False) -> int:
        """0 when the request may go now (then it is counted in every window it may land
        in); otherwise the nanoseconds until it could (nothing counted). ``order``: False,
        True (one order) or a count (a batch). ValueError for a request no budget could
        ever admit."""
        if weight.__class__ is not int or weight < 0:
            weight = self._check_weight(weight)
        n_ord = int(order)
        if n_ord < 0:
            raise ValueError(f"order must be True, False or a count >= 0, got {order!r}")
        mw = self._max_weight
        if mw is not None and weight > mw:
            raise ValueError(f"weight {weight} exceeds the limit {mw}: no window can admit it")
        if n_ord:
            mo = self._max_orders
            if mo is not None and n_ord > mo:
                raise ValueError(f"{n_ord} orders exceed the order limit {mo}")
        s = now_ns + self._offset
        lo = s - self._err
        hi = s + self._err + self._transit
        fixed_w = self._fixed_w
        slide_w = self._slide_w
        fixed_o = self._fixed_o if n_ord else ()
        slide_o = self._slide_o if n_ord else ()
        ledger = self._ledger if self._shared else None
        if ledger is not None:
            ledger.lock()
        try:
            wait = 0
            for f in fixed_w:
                cap = f.limit if priority else f.cap
                if weight > cap:
                    raise ValueError(f"weight {weight} exceeds the ordinary share {cap} of "
                                     f"{f.spec} (its reserve is for priority requests)")
                d = f.check(lo, hi, weight, cap)
                if d > wait:
                    wait = d
            for f in fixed_o:
                cap = f.limit if priority else f.cap
                if n_ord > cap:
                    raise ValueError(f"{n_ord} orders exceed the ordinary share {cap} of "
                                     f"{f.spec}")
                d = f.check(lo, hi, n_ord, cap)
                if d > wait:
                    wait = d
            for sl in slide_w:
                cap = sl.limit if priority else sl.cap
                if weight > cap:
                    raise ValueError(f"weight {weight} exceeds the ordinary share {cap} of "
                                     f"{sl.spec}")
                d = sl.check(now_ns, weight, cap)
                if d > wait:
                    wait = d
            for sl in slide_o:
                cap = sl.limit if priority else sl.cap
                if n_ord > cap:
                    raise ValueError(f"{n_ord} orders exceed the ordinary share {cap} of "
                                     f"{sl.spec}")
                d = sl.check(now_ns, n_ord, cap)
                if d > wait:
                    wait = d
            if wait:
                return wait
            if weight:
                for f in fixed_w:
                    f.charge(lo, hi, weight)
                for sl in slide_w:
                    sl.charge(now_ns, weight)
            for f in fixed_o:
                f.charge(lo, hi, n_ord)
            for sl in slide_o:
                sl.charge(now_ns, n_ord)
            return 0
        finally:
            if ledger is not None:
                ledger.unlock()

    @staticmethod
    def _check_weight(weight: object) -> int:
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ValueError(f"weight must be an int >= 0, got {weight!r}")
        return int(weight)

    def refund(self, now_ns: int, weight: int = 1, order: int = False,
               granted_ns: Optional[int] = None) -> None:
        """Give back what ``acquire`` counted for a request that certainly never reached the
        server (NotSent). ``granted_ns``: the now_ns its acquire was granted at (default
        now_ns); a window that has since ended is left alone."""
        t = now_ns if granted_ns is None else granted_ns
        weight = self._check_weight(weight)
        n_ord = int(order)
        s = t + self._offset
        lo = s - self._err
        hi = s + self._err + self._transit
        ledger = self._ledger if self._shared else None
        if ledger is not None:
            ledger.lock()
        try:
            if weight:
                for f in self._fixed_w:
                    f.refund(lo, hi, weight)
                for sl in self._slide_w:
                    sl.refund(t, weight)
            if n_ord > 0:
                for f in self._fixed_o:
                    f.refund(lo, hi, n_ord)
                for sl in self._slide_o:
                    sl.refund(t, n_ord)
        finally:
            if ledger is not None:
                ledger.unlock()

    def observe(self, now_ns: int, get_header: GetHeader,
                sent_ns: Optional[int] = None) -> None:
        """Correct the counts from a response's usage headers (``get_header(name)`` -> value
        or None; e.g. ``response.headers.get``). ``sent_ns``: when the request was granted;
        with it a count that may belong to a window which ended while the request was out is
        recognised as such (see _Fixed.floor)."""
        tracked = self._headers
        if not tracked:
            return
        s_now = now_ns + self._offset
        s_sent = s_now if sent_ns is None else sent_ns + self._offset
        lo = s_sent - self._err
        hi = s_now + self._err
        ledger = self._ledger if self._shared else None
        locked = False
        try:
            for x in tracked:
                count = _parse_count(get_header(x.header))  # type: ignore[arg-type]
                if count < 0:
                    continue
                if x.remaining_kind:
                    count = max(x.limit - count, 0)
                if ledger is not None and not locked:
                    ledger.lock()
                    locked = True
                if isinstance(x, _Fixed):
                    x.floor(lo, hi, count)
                else:
                    x.floor(now_ns, count)
        finally:
            if locked and ledger is not None:
                ledger.unlock()

    def snapshot(self, now_ns: int) -> tuple[LimitState, ...]:
        """Every budget's current count, for stats."""
        out = []
        s = now_ns + self._offset
        ledger = self._ledger if self._shared else None
        if ledger is not None:
            ledger.lock()
        try:
            for x in self._all:
                spec = x.spec
                if isinstance(x, _Fixed):
                    used, resets = x.state(s)
                else:
                    used, resets = x.state(now_ns)
                out.append(LimitState(spec.name or ("orders" if spec.orders else "weight"),
                                      spec.limit, spec.per, spec.window, spec.orders, used,
                                      max(spec.limit - used, 0), resets / 1e9))
        finally:
            if ledger is not None:
                ledger.unlock()
        return tuple(out)
