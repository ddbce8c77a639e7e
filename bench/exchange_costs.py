"""What the exchange-aware building blocks cost per request: µs per call, best of 7 runs.

    .venv/bin/python bench/exchange_costs.py

Rate limiter (acquire, acquire + observe of the usage headers; local and through a
SharedLedger, whose flock pair is also timed alone), cooldown check, server clock, signers
(HMAC with the prepared state copied vs. re-keyed per request; Ed25519 when cryptography is
installed) and the form encoder. Best of 7 because the figure of interest is the cost, not
the machine's noise; CPU time, not wall time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import time
import timeit

from fastpool import HmacSigner, RateLimit, SharedLedger, encode_form
from fastpool._policy.clock import ClockEstimator
from fastpool._policy.cooldown import Cooldown
from fastpool._policy.ratelimit import RateLimiter

N = 20_000
BIG = 10**15  # budgets no benchmark can exhaust: the grant path is what is timed
QUERY = b"symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=97000.01"
HEADERS = {"x-mbx-used-weight-1m": "123", "x-mbx-order-count-10s": "4",
           "x-bapi-limit-status": str(BIG - 500)}.get  # remaining: 500 used


def best(fn, n=N) -> float:
    timer = timeit.Timer(fn, timer=time.process_time)
    return min(timer.repeat(7, n)) / n * 1e6


def binance_limits():
    return [RateLimit(BIG, per=60.0, header="x-mbx-used-weight-1m"),
            RateLimit(BIG, per=10.0, orders=True, header="x-mbx-order-count-10s")]


def limiter_rows(label: str, limiter: RateLimiter) -> list[tuple[str, float]]:
    t = [time.monotonic_ns()]

    def acquire():
        t[0] += 1000
        limiter.acquire(t[0])

    def acquire_observe():
        t[0] += 1000
        now = t[0]
        limiter.acquire(now)
        limiter.observe(now, HEADERS, now)

    def order_acquire_observe():
        t[0] += 1000
        now = t[0]
        limiter.acquire(now, 1, True)
        limiter.observe(now, HEADERS, now)

    return [(f"{label}: acquire", best(acquire)),
            (f"{label}: acquire + observe", best(acquire_observe)),
            (f"{label}: order acquire + observe", best(order_acquire_observe))]


def main() -> None:
    rows: list[tuple[str, float]] = []
    wall = time.time_ns() - time.monotonic_ns()
    rows += limiter_rows("fixed x2 (weight 1m, orders 10s)",
                         RateLimiter(binance_limits(), offset_ns=wall, error_ns=1_000_000))
    rows += limiter_rows("sliding, 100 buckets", RateLimiter(
        [RateLimit(BIG, per=5.0, window="sliding", header="x-bapi-limit-status",
                   header_kind="remaining")]))
    with tempfile.TemporaryDirectory() as tmp:
        ledger = SharedLedger(os.path.join(tmp, "bench.ledger"))
        rows += limiter_rows("fixed x2 on a SharedLedger",
                             RateLimiter(binance_limits(), ledger=ledger, offset_ns=wall))

        def lock_pair():
            ledger.lock()
            ledger.unlock()

        rows.append(("SharedLedger lock + unlock alone", best(lock_pair)))

    cooldown = Cooldown()
    rows.append(("cooldown check", best(lambda: cooldown.check(1))))
    clock = ClockEstimator()
    for i in range(8):
        clock.add(i * 10**9, i * 10**9 + 300_000, 1_700_000_000_000 + i * 1000)
    rows.append(("server_time_ms (8 samples)", best(lambda: clock.server_time_ms(9 * 10**9))))

    signer = HmacSigner(api_key="k" * 64, secret="s" * 64)
    rows.append(("HmacSigner.sign (prepared state .copy())",
                 best(lambda: signer.sign("POST", b"/api/v3/order", QUERY, None, 1))))
    key = b"s" * 64
    payload = QUERY + b"&recvWindow=5000&timestamp=1700000000000"
    rows.append(("  for comparison: hmac.new(key, msg, sha256).hexdigest()",
                 best(lambda: hmac.new(key, payload, hashlib.sha256).hexdigest())))
    rows.append(("  for comparison: hmac.digest(key, msg, 'sha256').hex()",
                 best(lambda: hmac.digest(key, payload, "sha256").hex())))
    mac = hmac.new(key, digestmod=hashlib.sha256)

    def copied():
        m = mac.copy()
        m.update(payload)
        m.hexdigest()

    rows.append(("  for comparison: prepared.copy() + update + hexdigest", best(copied)))
    try:
        from fastpool import Ed25519Signer

        ed = Ed25519Signer(api_key="k" * 64, private_key=b"\x01" * 32)
        rows.append(("Ed25519Signer.sign", best(lambda: ed.sign("POST", b"/api/v3/order",
                                                                QUERY, None, 1), 5000)))
    except ImportError:
        rows.append(("Ed25519Signer.sign (cryptography missing)", float("nan")))
    params = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
              "quantity": "0.001", "price": "97000.01", "newClientOrderId": "x1-42"}
    rows.append(("encode_form (7 fields)", best(lambda: encode_form(params))))

    width = max(len(name) for name, _ in rows)
    for name, us in rows:
        print(f"{name:<{width}}  {us:8.2f} us")


if __name__ == "__main__":
    main()
