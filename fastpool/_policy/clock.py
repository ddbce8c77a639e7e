"""ClockEstimator: the exchange's clock, estimated NTP-style, and biased never to be early.

Each sample is one request: sent at monotonic ``t0``, answered at ``t1``, carrying the
server's time ``S`` stamped somewhere in between and truncated to the server's resolution
``r`` (Binance's serverTime is milliseconds; the HTTP Date header is seconds). With
server(t) = t + theta on the monotonic clock, the stamp S <= t_s + theta < S + r for some
t_s in [t0, t1], so

    S - t1  <=  theta  <  S + r - t0

an interval of width rtt + r, whatever the asymmetry of the two delays (no symmetry
assumption as in NTP's midpoint; the midpoint is within rtt/2 + r/2 of the truth). Samples
are intersected (each is a hard bound), widened with age by a drift allowance (the two
clocks' rates differ by parts per million). The smallest-round-trip samples give the
narrowest intervals, so those are kept.

Binance accepts a timestamp when ``serverTime - recvWindow <= ts < serverTime + 1000``
(developers.binance.com rest-api/request-security, "Timing security"): late is fine up to
recvWindow, early is refused past 1 s. ``server_time_ms`` therefore answers with the
interval's *lower* end: never ahead of the server, behind it by at most the interval width.

Monotonic, not wall-clock, time: the estimate maps CLOCK_MONOTONIC (which NTP slews but
never steps) straight to the server's clock, so a wall-clock step on this host after
calibration cannot shift it. Before any sample, a fallback offset (the driver passes
``time.time_ns() - time.monotonic_ns()``: the local wall clock) is used.

Sans-IO: no clock is read here; every call takes ``now_ns``.
"""

from __future__ import annotations

import json
import math
from typing import NamedTuple, Optional

UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


class ClockEstimate(NamedTuple):
    """The server clock as estimated from the samples (Pool.calibrate()'s result): server
    time = monotonic time + offset, within +- error_ns."""

    offset_ns: int  #: best estimate of server time - monotonic time (midpoint)
    error_ns: int  #: half the width of the interval the true offset lies in
    low_ns: int  #: the offset's lower bound (what server_time_* use: never early)
    high_ns: int
    rtt_ns: int  #: the smallest round trip among the samples kept
    samples: int


class _Sample(NamedTuple):
    mid_ns: int  # when it was taken (midpoint of send and receive, monotonic)
    low: int
    high: int
    rtt: int


class ClockEstimator:
    """Server clock offset from request/response pairs (see the module doc).

    ``max_samples``: narrowest samples kept; ``drift_ppm``: allowance for the two clocks'
    rate difference (each sample's interval widens by it with age); ``max_rtt_ns``: slower
    round trips are ignored (their bounds are too loose to help)."""

    def __init__(self, *, max_samples: int = 8, drift_ppm: float = 50.0,
                 max_rtt_ns: int = 5_000_000_000, fallback_offset_ns: Optional[int] = None,
                 fallback_error_ns: int = 0) -> None:
        if not isinstance(max_samples, int) or max_samples < 1:
            raise ValueError(f"max_samples must be an int >= 1, got {max_samples!r}")
        if not 0 <= drift_ppm <= 10_000:
            raise ValueError(f"drift_ppm must be in [0, 10000], got {drift_ppm!r}")
        self.max_samples = max_samples
        self.drift_ppm = float(drift_ppm)
        self.max_rtt_ns = int(max_rtt_ns)
        self._samples: list[_Sample] = []
        # Bounds for any now >= the newest sample's midpoint, where widening is linear:
        # low(now) = max(low_i + d*mid_i) - d*now, high(now) = min(high_i - d*mid_i) + d*now.
        # server_time_ms is called once per signed request: O(1) there, not O(samples).
        self._cache: Optional[tuple[int, int, int]] = None
        self._fallback = fallback_offset_ns
        self._fallback_err = int(fallback_error_ns)
        self.rejected = 0  #: samples refused (inverted or too slow)
        self.resets = 0  #: times the samples contradicted each other (server clock stepped)

    def set_fallback(self, offset_ns: int, error_ns: int = 0) -> None:
        """The offset to use until calibrated (the local wall clock's, usually)."""
        self._fallback = int(offset_ns)
        self._fallback_err = int(error_ns)

    @property
    def calibrated(self) -> bool:
        return bool(self._samples)

    def add(self, send_ns: int, recv_ns: int, server_time: float, unit: str = "ms") -> bool:
        """One exchange: sent at monotonic send_ns, answered at recv_ns, carrying the
        server's time ``server_time`` in ``unit`` ("ms": Binance serverTime; "us": with
        X-MBX-TIME-UNIT: MICROSECOND; "s": an HTTP Date header). False if refused."""
        res = UNITS.get(unit)
        if res is None:
            raise ValueError(f"unit must be one of {tuple(UNITS)}, got {unit!r}")
        rtt = recv_ns - send_ns
        if rtt < 0 or rtt > self.max_rtt_ns:
            self.rejected += 1
            return False
        stamp = int(server_time) * res if isinstance(server_time, int) else int(
            server_time * res)
        sample = _Sample((send_ns + recv_ns) // 2, stamp - recv_ns, stamp + res - send_ns,
                         rtt)
        bounds = self._bounds(recv_ns)
        if bounds is not None and (sample.high <= bounds[0] or sample.low >= bounds[1]):
            # Disjoint from everything known: the server's clock stepped (or the drift
            # allowance was too small). The newest evidence wins.
            self._samples.clear()
            self.resets += 1
        self._samples.append(sample)
        if len(self._samples) > self.max_samples:
            # Drop the one that says least now: the widest once aged.
            widest = max(self._samples, key=lambda x: self._widen(x, recv_ns)[2])
            self._samples.remove(widest)
        self._update_cache()
        return True

    def _widen(self, x: _Sample, now_ns: int) -> tuple[int, int, int]:
        slack = int(abs(now_ns - x.mid_ns) * self.drift_ppm / 1e6)
        low = x.low - slack
        high = x.high + slack
        return low, high, high - low

    def _bounds(self, now_ns: int) -> Optional[tuple[int, int]]:
        if not self._samples:
            return None
        cache = self._cache
        if cache is not None and now_ns >= cache[0]:
            grow = math.ceil(now_ns * self.drift_ppm / 1e6)
            low = cache[1] - grow
            high = cache[2] + grow
            if low < high:
                return low, high
        bounds = self._scan(now_ns)
        self._update_cache()
        return bounds

    def _update_cache(self) -> None:
        # Integers throughout (offsets are ~1.7e18 ns, beyond a float's precision), each
        # rounding taken on the side that widens the interval.
        d = self.drift_ppm / 1e6
        samples = self._samples
        self._cache = (max(x.mid_ns for x in samples),
                       max(x.low + math.floor(d * x.mid_ns) for x in samples),
                       min(x.high - math.floor(d * x.mid_ns) for x in samples))

    def _scan(self, now_ns: int) -> tuple[int, int]:
        low = -(1 << 62)
        high = 1 << 62
        for x in self._samples:
            lo, hi, _ = self._widen(x, now_ns)
            if lo > low:
                low = lo
            if hi < high:
                high = hi
        if low >= high:
            # Contradictory (drift beyond the allowance): trust the newest sample alone.
            newest = max(self._samples, key=lambda x: x.mid_ns)
            self._samples[:] = [newest]
            self.resets += 1
            low, high, _ = self._widen(newest, now_ns)
        return low, high

    def estimate(self, now_ns: int) -> Optional[ClockEstimate]:
        """The offset and its bounds now, or None before the first sample."""
        bounds = self._bounds(now_ns)
        if bounds is None:
            return None
        low, high = bounds
        return ClockEstimate((low + high) // 2, (high - low + 1) // 2, low, high,
                             min(x.rtt for x in self._samples), len(self._samples))

    def _low(self, now_ns: int) -> int:
        bounds = self._bounds(now_ns)
        if bounds is not None:
            return bounds[0]
        if self._fallback is None:
            raise RuntimeError("the server clock is not calibrated and no fallback offset "
                               "was given")
        return self._fallback - self._fallback_err

    def server_time_ns(self, now_ns: int) -> int:
        """The server's time now, never ahead of it (the estimate's lower bound)."""
        return now_ns + self._low(now_ns)

    def server_time_ms(self, now_ns: int) -> int:
        """The server's time now in milliseconds, never ahead of it: a timestamp Binance
        cannot refuse as "ahead of the server's time"."""
        return (now_ns + self._low(now_ns)) // 1_000_000

    def offset_for_limiter(self, now_ns: int) -> tuple[int, int]:
        """(offset_ns, error_ns) for RateLimiter.set_clock_offset: the midpoint and half
        width, or the fallback before calibration."""
        est = self.estimate(now_ns)
        if est is not None:
            return est.offset_ns, est.error_ns
        if self._fallback is None:
            raise RuntimeError("the server clock is not calibrated and no fallback offset "
                               "was given")
        return self._fallback, self._fallback_err


def server_time_field(body: bytes, field: str = "serverTime") -> Optional[int]:
    """The integer ``field`` of a JSON object body (Binance /api/v3/time: {"serverTime":
    1499827319559}), or None when the body has no such integer."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict):
        return None
    value = data.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value
