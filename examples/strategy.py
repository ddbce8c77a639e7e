#!/usr/bin/env python3
"""A strategy-style client: places and cancels orders through fastpool, inside the
exchange's limits, and reconciles an ambiguous order (MaybeSentError) by its client order id.

    python examples/strategy.py                          # starts the mock exchange itself
    python examples/mock_exchange.py --port 8999 &       # or against one running already
    python examples/strategy.py --url http://127.0.0.1:8999 --orders 40

What it shows:
- a Binance-style configuration: the request-weight and order-count limits as the exchange
  counts them (fixed windows on the server's clock, corrected from its usage headers), a
  share of each held back for priority requests (the cancels), an HMAC signer, keep-warm on
  the time endpoint (which also keeps the server clock calibrated);
- every order either placed, refused before sending (NotSentError: safe to retry), or
  ambiguous (MaybeSentError: the exchange may have acted) and then resolved by looking the
  order up once the exchange can no longer execute it.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mock_exchange import EXAMPLE_API_KEY, EXAMPLE_SECRET, MockExchange  # noqa: E402

import fastpool  # noqa: E402

SYMBOL = "BTCUSDT"


def binance_pool(url: str, **kw: object) -> fastpool.Pool:
    """fastpool configured as for Binance spot (the mock mirrors its rules)."""
    limits = [
        # REQUEST_WEIGHT: 6000 per minute per IP, reported in X-MBX-USED-WEIGHT-1M
        fastpool.RateLimit(6000, per=60.0, header="x-mbx-used-weight-1m", reserve=300),
        # ORDERS: 50 per 10 s per account (the mock's; Binance: 100), X-MBX-ORDER-COUNT-10S
        fastpool.RateLimit(50, per=10.0, orders=True, header="x-mbx-order-count-10s",
                           reserve=5),
    ]
    return fastpool.Pool(
        url, connections=2, reserved=1, timeout=fastpool.Timeout(5.0, total=8.0),
        rate_limits=limits, on_limit="wait",
        auth=fastpool.HmacSigner(api_key=EXAMPLE_API_KEY, secret=EXAMPLE_SECRET,
                                 recv_window=2000),
        keep_warm=fastpool.KeepWarm("/api/v3/time", every=20.0, clock_field="serverTime"),
        **kw)  # type: ignore[arg-type]


def reconcile(pool: fastpool.Pool, exc: fastpool.MaybeSentError, cid: str) -> object:
    """Wait until the exchange can no longer accept the request (its timestamp + recvWindow
    on the calibrated clock), then ask for the order by client order id: the answer is now
    final (found: it executed; -2013 "Order does not exist": it never will)."""

    def lookup() -> object:
        r = pool.get("/api/v3/order", signed=True, weight=4, priority=True,
                     params={"symbol": SYMBOL, "origClientOrderId": cid})
        if r.status_code == 200:
            return r.json()
        if r.json().get("code") == -2013:
            return None
        r.raise_for_status()
        return None

    return pool.resolve(exc, lookup, margin=0.2)


def run(url: str, orders: int, fail_every: int, exchange: MockExchange | None) -> int:
    placed = refused = ambiguous = resolved_live = resolved_dead = cancelled = 0
    with binance_pool(url) as pool:
        est = pool.calibrate(path="/api/v3/time", field="serverTime", samples=5)
        print(f"server clock offset known within +-{est.error_ns / 1e6:.2f} ms "
              f"(round trip {est.rtt_ns / 1e3:.0f} us)")
        run_id = uuid.uuid4().hex[:6]
        for i in range(orders):
            cid = f"s{run_id}-{i}"
            if exchange is not None and fail_every and i % fail_every == fail_every - 1:
                exchange.fail_next_order("close")  # placed, then no answer: ambiguous
            try:
                r = pool.post("/api/v3/order", signed=True, order=True, priority=True, data={
                    "symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                    "quantity": "0.001", "price": f"{50000 + i}.00", "newClientOrderId": cid})
                r.raise_for_status()
                live = r.json()
                placed += 1
            except fastpool.NotSentError as exc:  # refused before sending: nothing happened
                print(f"{cid}: not sent ({type(exc).__name__}): {exc}")
                refused += 1
                continue
            except fastpool.MaybeSentError as exc:
                ambiguous += 1
                found = reconcile(pool, exc, cid)
                print(f"{cid}: ambiguous ({type(exc).__name__}) -> "
                      f"{'live' if found else 'never executed'}")
                if found is None:
                    resolved_dead += 1
                    continue
                resolved_live += 1
                live = found
            # The cancel goes out even if polling had used the budget: priority.
            r = pool.delete("/api/v3/order", signed=True, priority=True,
                            params={"symbol": SYMBOL,
                                    "origClientOrderId": live["clientOrderId"]})
            if r.status_code == 200:
                cancelled += 1
        stats = pool.stats()
        for limit in stats["rate_limits"]:
            print(f"budget {limit['name']}: {limit['used']}/{limit['limit']} used in this "
                  f"window")
        p50 = stats["latency_ns"]["p50"] / 1e3
        print(f"orders: {placed} placed, {ambiguous} ambiguous ({resolved_live} live, "
              f"{resolved_dead} never executed), {refused} refused before sending, "
              f"{cancelled} cancelled; p50 {p50:.0f} us; rate limited "
              f"{stats['rate_limited']} times")
    return 0 if placed + resolved_live == cancelled and refused == 0 else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", help="a running mock exchange (default: start one here)")
    ap.add_argument("--orders", type=int, default=20)
    ap.add_argument("--fail-every", type=int, default=7,
                    help="make every Nth order ambiguous (mock started here only; 0: none)")
    args = ap.parse_args(argv)
    if args.url:
        return run(args.url, args.orders, 0, None)
    with MockExchange() as exchange:
        t0 = time.monotonic()
        code = run(exchange.url, args.orders, args.fail_every, exchange)
        print(f"done in {time.monotonic() - t0:.2f} s against {exchange.url}")
        return code


if __name__ == "__main__":
    sys.exit(main())
