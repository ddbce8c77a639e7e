"""ClockEstimator: simulated skewed server clocks and asymmetric delays (fake clock), then a
real server with a known skew on loopback (examples/mock_exchange.py)."""

from __future__ import annotations

import http.client
import json
import random
import sys
import time
from pathlib import Path

import pytest

from fastpool._policy.clock import ClockEstimator, server_time_field

S = 1_000_000_000
MS = 1_000_000
US = 1_000
EPOCH = 1_700_000_000 * S


class SkewedServer:
    """A server whose clock is monotonic + theta (+ drift), stamping in ``unit``."""

    def __init__(self, theta, rng, drift_ppm=0.0, res=MS):
        self.theta, self.rng, self.drift, self.res = theta, rng, drift_ppm, res

    def true_ns(self, t):
        return t + self.theta + int(t * self.drift / 1e6)

    def exchange(self, t0, out_ns, back_ns):
        """Sent at t0, out_ns to get there, back_ns to return: (t1, stamp)."""
        stamp = self.true_ns(t0 + out_ns) // self.res  # truncated, like serverTime
        return t0 + out_ns + back_ns, stamp


def test_estimate_within_half_the_round_trip_and_never_early():
    rng = random.Random(3)
    for trial in range(200):
        theta = EPOCH + rng.randrange(-5 * S, 5 * S)  # a skew of up to 5 s either way
        server = SkewedServer(theta, rng)
        est = ClockEstimator()
        t = rng.randrange(10**6, 10**12)
        rtts = []
        for _ in range(rng.randint(1, 12)):
            # Asymmetric: one direction can take 40x the other.
            out_ns = rng.choice([rng.randrange(50 * US, 2 * MS), rng.randrange(1, 40) * MS])
            back_ns = rng.choice([rng.randrange(50 * US, 2 * MS), rng.randrange(1, 40) * MS])
            t1, stamp = server.exchange(t, out_ns, back_ns)
            assert est.add(t, t1, stamp)
            rtts.append(t1 - t)
            t = t1 + rng.randrange(0, 50 * MS)
        e = est.estimate(t)
        best = min(rtts)
        assert e.rtt_ns == best and e.samples == min(len(rtts), est.max_samples)
        # The midpoint: within half the (smallest) round trip + 1 ms of the truth.
        assert abs(e.offset_ns - theta) <= best // 2 + MS, (trial, e, theta)
        assert e.low_ns <= theta < e.high_ns
        # (plus the drift allowance: 50 ppm of the samples' age, well under 100 us here)
        assert e.error_ns <= best // 2 + MS // 2 + 100 * US
        # The timestamp: never ahead of the server, behind by at most the interval.
        for now in (t, t + 1, t + 7 * MS):
            true_ms = server.true_ns(now) // MS
            got = est.server_time_ms(now)
            assert got <= true_ms
            assert true_ms - got <= (best + MS) // MS + 1


def test_never_early_with_a_drifting_server_clock():
    rng = random.Random(5)
    server = SkewedServer(EPOCH + 1234 * MS, rng, drift_ppm=20.0)  # 20 ppm fast
    est = ClockEstimator(drift_ppm=50.0)
    t = 10 * S
    for _i in range(200):  # one sample every 30 s for 100 minutes
        t1, stamp = server.exchange(t, rng.randrange(100 * US, 5 * MS),
                                    rng.randrange(100 * US, 5 * MS))
        est.add(t, t1, stamp)
        for now in (t1, t1 + 10 * S, t1 + 29 * S):
            assert est.server_time_ns(now) <= server.true_ns(now)
        t = t1 + 30 * S
    e = est.estimate(t)
    assert e.samples <= est.max_samples
    assert est.resets == 0


def test_a_server_clock_step_resets_the_estimate():
    rng = random.Random(9)
    server = SkewedServer(EPOCH, rng)
    est = ClockEstimator()
    t = S
    for _ in range(5):
        t1, stamp = server.exchange(t, MS, MS)
        est.add(t, t1, stamp)
        t = t1 + S
    server.theta += 2 * S  # the exchange stepped its clock forward by 2 s
    t1, stamp = server.exchange(t, MS, MS)
    est.add(t, t1, stamp)
    assert est.resets == 1 and est.estimate(t1).samples == 1
    assert abs(est.estimate(t1).offset_ns - server.theta) <= MS + MS // 2
    assert est.server_time_ns(t1) <= server.true_ns(t1)


def test_units_rejections_and_fallback():
    est = ClockEstimator(fallback_offset_ns=EPOCH, fallback_error_ns=50 * MS)
    assert not est.calibrated and est.estimate(0) is None
    assert est.server_time_ms(S) == (S + EPOCH - 50 * MS) // MS  # the local wall clock
    assert est.offset_for_limiter(S) == (EPOCH, 50 * MS)
    assert not est.add(2 * S, S, 1)  # received before it was sent
    assert not est.add(0, 6 * S, 1)  # a 6-s round trip says too little
    assert est.rejected == 2
    with pytest.raises(ValueError):
        est.add(0, 1, 1, unit="minutes")
    # An HTTP Date header: one-second resolution.
    theta = EPOCH + 300 * MS
    t0, t1 = 10 * S, 10 * S + 4 * MS
    assert est.add(t0, t1, (t0 + 2 * MS + theta) // S, unit="s")
    e = est.estimate(t1)
    assert e.low_ns <= theta < e.high_ns and e.error_ns <= S // 2 + 2 * MS + US
    # Microseconds (X-MBX-TIME-UNIT: MICROSECOND) narrow it down.
    est2 = ClockEstimator()
    assert est2.add(t0, t1, (t0 + 2 * MS + theta) // US, unit="us")
    assert est2.estimate(t1).error_ns <= 2 * MS + 2 * US
    with pytest.raises(RuntimeError):
        ClockEstimator().server_time_ms(0)
    with pytest.raises(ValueError):
        ClockEstimator(max_samples=0)


def test_server_time_field():
    assert server_time_field(b'{"serverTime": 1499827319559}') == 1499827319559
    assert server_time_field(b'{"time": 5}', "time") == 5
    for body in (b"", b"[1]", b'{"serverTime": "1"}', b'{"serverTime": true}', b"\xff",
                 b'{"other": 1}'):
        assert server_time_field(body) is None


# --- against a real server with a known skew -----------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))


def test_calibrating_against_a_skewed_mock_exchange():
    from mock_exchange import MockExchange

    skew_ms = -2345  # the exchange's clock runs 2.345 s behind ours
    with MockExchange(skew_ms=skew_ms) as exchange:
        conn = http.client.HTTPConnection("127.0.0.1", exchange.port, timeout=10)
        est = ClockEstimator()
        rtts = []
        for _ in range(8):
            t0 = time.monotonic_ns()
            conn.request("GET", "/api/v3/time")
            body = conn.getresponse().read()
            t1 = time.monotonic_ns()
            rtts.append(t1 - t0)
            est.add(t0, t1, json.loads(body)["serverTime"])
        conn.close()
        now = time.monotonic_ns()
        # The truth: the mock's clock is our wall clock + skew, so server - monotonic is
        # (wall - monotonic) + skew; reading that pair costs a few microseconds.
        truth = time.time_ns() - time.monotonic_ns() + skew_ms * MS
        e = est.estimate(now)
        assert abs(e.offset_ns - truth) <= min(rtts) // 2 + MS + 100 * US
        assert est.server_time_ms(now) <= (now + truth) // MS + 1
