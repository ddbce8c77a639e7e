"""The exchange-aware pool against the mock exchange (examples/mock_exchange.py): weighted rate
limits that mirror the gateway's windows, 429/418 cooldowns, signing, the server clock,
resolving a MaybeSent order, per-endpoint latency. Every driver, both engines."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import pytest
from pool_helpers import room_in_window

import fastpool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from mock_exchange import EXAMPLE_API_KEY, EXAMPLE_SECRET, MockExchange  # noqa: E402


@pytest.fixture
def exchange():
    """factory(**MockExchange kwargs) -> a started mock exchange; all stopped at teardown."""
    started = []

    def make(**kwargs):
        ex = MockExchange(**kwargs).start()
        started.append(ex)
        return ex

    yield make
    for ex in started:
        ex.stop()


def signer(**kw) -> fastpool.HmacSigner:
    return fastpool.HmacSigner(api_key=EXAMPLE_API_KEY, secret=EXAMPLE_SECRET, **kw)


def order(cid: str) -> dict:
    return {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
            "quantity": "0.001", "price": "50000.00", "newClientOrderId": cid}


def weight_limit(limit: int, per: float, **kw) -> fastpool.RateLimit:
    name = "x-mbx-used-weight-" + (f"{int(per)}s" if per < 60 else f"{int(per // 60)}m")
    return fastpool.RateLimit(limit, per=per, header=name, **kw)


# ---- rate limits ----------------------------------------------------------------------------


def test_a_budget_that_says_raise_refuses_before_sending(exchange, make_pool):
    ex = exchange(weight_limit=1000, weight_window=60)
    pool = make_pool(ex.url, connections=2, rate_limits=[fastpool.RateLimit(5, per=60, window="sliding")],
                     on_limit="raise")
    for _ in range(5):
        assert pool.get("/api/v3/ping").status_code == 200
    before = ex.state()["requests"]
    with pytest.raises(fastpool.RateLimitedError) as info:
        pool.get("/api/v3/ping")
    assert isinstance(info.value, fastpool.NotSentError) and info.value.retry_after > 0
    assert ex.state()["requests"] == before  # refused here, not at the exchange
    assert pool.stats()["rate_limited"] == 1
    (state,) = pool.stats()["rate_limits"]
    assert state["used"] == 5 and state["remaining"] == 0


def test_waiting_keeps_inside_the_exchanges_fixed_windows(exchange, make_pool):
    ex = exchange(weight_limit=8, weight_window=1)
    pool = make_pool(ex.url, connections=2, rate_limits=[weight_limit(8, 1.0)],
                     timeout=10)
    t0 = time.monotonic()
    for _ in range(20):  # 2.5 windows' worth
        assert pool.get("/api/v3/ping").status_code == 200  # never a 429
    assert time.monotonic() - t0 >= 1.0  # it had to wait for the next window(s)
    assert ex.state()["violations"] == 0 and pool.stats()["rate_limited"] == 0


def test_a_wait_past_the_deadline_is_refused_at_once(exchange, make_pool):
    ex = exchange()
    pool = make_pool(ex.url, connections=1, rate_limits=[fastpool.RateLimit(1, per=60, window="sliding")])
    pool.get("/api/v3/ping")
    t0 = time.monotonic()
    with pytest.raises(fastpool.RateLimitedError):
        pool.get("/api/v3/ping", timeout=fastpool.Timeout(5, total=0.5))
    assert time.monotonic() - t0 < 0.4  # no point waiting 60 s for a 0.5 s deadline


def test_the_servers_usage_headers_correct_the_count(exchange, make_pool):
    import http.client

    room_in_window(60, 10)  # the exchange's minute and the limiter's: the test's own
    ex = exchange(weight_limit=100, weight_window=60)
    # Another process on this IP spends 90 of the 100 (as the exchange counts them).
    conn = http.client.HTTPConnection("127.0.0.1", ex.port, timeout=5)
    for _ in range(9):
        conn.request("GET", "/api/v3/exchangeInfo" if _ < 4 else "/api/v3/ping")
        conn.getresponse().read()
    conn.close()
    used = ex.state()["usedWeight"]
    pool = make_pool(ex.url, connections=1, rate_limits=[weight_limit(100, 60)],
                     on_limit="raise")
    pool.get("/api/v3/ping")  # its answer says used = used + 1
    sent = 0
    with pytest.raises(fastpool.RateLimitedError):
        for _ in range(100):
            pool.get("/api/v3/ping")
            sent += 1
    assert sent == 100 - used - 1  # exactly what was left of the exchange's count
    assert ex.state()["violations"] == 0


def test_weights_orders_and_the_priority_reserve(exchange, make_pool):
    ex = exchange()
    limits = [fastpool.RateLimit(20, per=60, reserve=6, window="sliding"),
              fastpool.RateLimit(2, per=60, orders=True, window="sliding")]
    pool = make_pool(ex.url, connections=1, rate_limits=limits, on_limit="raise",
                     auth=signer())
    pool.get("/api/v3/exchangeInfo", weight=10)
    with pytest.raises(fastpool.RateLimitedError):
        pool.get("/api/v3/exchangeInfo", weight=10)  # ordinary share is 14
    for i in range(2):
        r = pool.post("/api/v3/order", data=order(f"w{i}"), signed=True, order=True,
                      priority=True)
        assert r.status_code == 200, r.text
    with pytest.raises(fastpool.RateLimitedError):  # the order limit: 2
        pool.post("/api/v3/order", data=order("w3"), signed=True, order=True, priority=True)
    assert pool.get("/api/v3/ping", priority=True, weight=4).status_code == 200  # the reserve
    with pytest.raises(fastpool.InvalidRequestError):
        pool.get("/api/v3/ping", weight=21)  # no window could ever admit it
    with pytest.raises(ValueError):
        make_pool(ex.url, connections=1, on_limit="later")


def test_pools_sharing_a_ledger_share_the_budget(exchange, make_pool, tmp_path):
    ex = exchange()
    ledger = fastpool.SharedLedger(str(tmp_path / "budget.ledger"))
    limits = [fastpool.RateLimit(6, per=60, name="ip-weight", window="sliding")]
    a = make_pool(ex.url, connections=1, rate_limits=limits, rate_ledger=ledger,
                  on_limit="raise")
    b = make_pool(ex.url, connections=1, rate_limits=limits, rate_ledger=ledger,
                  on_limit="raise")
    granted = 0
    for pool in (a, b, a, b, a, b, a, b):
        try:
            pool.get("/api/v3/ping")
            granted += 1
        except fastpool.RateLimitedError:
            pass
    assert granted == 6 and ex.state()["requests"] == 6


# ---- 429 / 418 -------------------------------------------------------------------------------


def test_429_raises_and_cools_the_pool_down_then_418_bans(exchange, make_pool):
    room_in_window(2, 1.0)  # four requests inside one of the exchange's 2-s windows
    ex = exchange(weight_limit=3, weight_window=2, ban_after=2, ban_seconds=30)
    pool = make_pool(ex.url, connections=1)
    for _ in range(3):
        pool.get("/api/v3/ping")
    with pytest.raises(fastpool.RateLimitedError) as info:
        pool.get("/api/v3/ping")
    exc = info.value
    assert exc.status_code == 429 and exc.response.status_code == 429
    assert 0 < exc.retry_after <= 2 and isinstance(exc, fastpool.NotSentError)
    before = ex.state()["requests"]
    with pytest.raises(fastpool.RateLimitedError) as info:
        pool.post("/api/v3/order", content=b"x")  # during the cooldown: not sent at all
    assert info.value.response is None and ex.state()["requests"] == before
    time.sleep(exc.retry_after + 0.05)
    for _ in range(3):  # a new window: allowed again
        pool.get("/api/v3/ping")
    with pytest.raises(fastpool.RateLimitedError) as info:
        pool.get("/api/v3/ping")  # the second violation: the exchange bans the IP
    assert info.value.status_code == 418 and info.value.retry_after >= 29
    stats = pool.stats()
    assert stats["cooldown"] is not None and stats["cooldown"]["status"] == 418
    assert stats["rate_limited"] == 3


def test_cooldowns_can_be_turned_off(exchange, make_pool):
    room_in_window(60, 5)
    ex = exchange(weight_limit=1, weight_window=60)
    pool = make_pool(ex.url, connections=1, cooldowns=False)
    pool.get("/api/v3/ping")
    r = pool.get("/api/v3/ping")
    assert r.status_code == 429  # a plain response, as a generic client would give


# ---- signing and the server clock -----------------------------------------------------------


@pytest.mark.parametrize("where", ["data", "params"])
def test_signed_orders_are_accepted_by_the_exchange(exchange, make_pool, where):
    ex = exchange()
    pool = make_pool(ex.url, connections=1, auth=signer())
    cid = f"c-{uuid.uuid4().hex[:8]}"
    kw = {"data": order(cid)} if where == "data" else {"params": order(cid)}
    r = pool.post("/api/v3/order", signed=True, **kw)
    assert r.status_code == 200, r.text
    assert r.json()["clientOrderId"] == cid
    r = pool.get("/api/v3/order", signed=True,
                 params={"symbol": "BTCUSDT", "origClientOrderId": cid})
    assert r.status_code == 200 and r.json()["clientOrderId"] == cid
    with pytest.raises(fastpool.InvalidRequestError):
        make_pool(ex.url, connections=1).get("/api/v3/order", signed=True)  # no auth=


def test_calibrate_fixes_a_server_clock_behind_ours(exchange, make_pool):
    ex = exchange(skew_ms=-3000)  # the server's clock is 3 s behind: our timestamps early
    pool = make_pool(ex.url, connections=1, auth=signer())
    r = pool.post("/api/v3/order", data=order("early"), signed=True)
    assert r.status_code == 400 and r.json()["code"] == -1021  # "ahead of the server's time"
    est = pool.calibrate(path="/api/v3/time", field="serverTime", samples=5)
    assert est.error_ns <= est.rtt_ns // 2 + 2_000_000
    server_ms = ex.now_s() * 1000
    ours = pool._gate.timestamp_ms(time.monotonic_ns()) if hasattr(pool, "_gate") else None
    if ours is None:
        ours = pool.pool._gate.timestamp_ms(time.monotonic_ns())
    assert server_ms - ours >= -1  # never ahead of the server (1 ms: the mock's rounding)
    assert server_ms - ours <= est.rtt_ns / 1e6 + 5
    r = pool.post("/api/v3/order", data=order("on-time"), signed=True)
    assert r.status_code == 200, r.text
    assert pool.stats()["clock"]["samples"] >= 1


def test_keep_warm_on_the_time_endpoint_keeps_the_clock_calibrated(exchange, make_pool):
    ex = exchange(skew_ms=1500)
    pool = make_pool(ex.url, connections=1, keep_warm=fastpool.KeepWarm(
        "/api/v3/time", every=0.1, clock_field="serverTime"))
    deadline = time.monotonic() + 10
    while pool.stats()["clock"] is None and time.monotonic() < deadline:
        time.sleep(0.05)
    clock = pool.stats()["clock"]
    assert clock is not None
    wall_offset = time.time_ns() - time.monotonic_ns()
    assert abs(clock["offset_ns"] - wall_offset - 1_500_000_000) < 20_000_000


# ---- resolving a MaybeSent order ------------------------------------------------------------


def test_an_ambiguous_order_is_resolved_by_its_client_order_id(exchange, make_pool):
    ex = exchange()
    pool = make_pool(ex.url, connections=1, auth=signer(recv_window=1000))
    ex.fail_next_order("close")  # placed, then the connection closes without an answer
    cid = "amb-close"
    with pytest.raises(fastpool.MaybeSentError) as info:
        pool.post("/api/v3/order", data=order(cid), signed=True)
    exc = info.value
    assert exc.request.client_order_id == cid and exc.request.expires_ms is not None
    assert exc.request.method == "POST" and "/api/v3/order" in exc.request.url

    def lookup():
        r = pool.get("/api/v3/order", signed=True,
                     params={"symbol": "BTCUSDT", "origClientOrderId": cid})
        return r.json() if r.status_code == 200 else None

    t0 = time.monotonic()
    found = pool.resolve(exc, lookup, margin=0.05)
    assert found is not None and found["clientOrderId"] == cid  # it was placed
    assert time.monotonic() - t0 <= 2.5  # recvWindow 1 s + margin, not forever


def test_a_5xx_order_answer_is_a_response_its_status_unknown(exchange, make_pool):
    """Binance: a 5xx means the execution status is UNKNOWN. The pool returns the answer
    (it is one); the order may well be live, as the lookup shows."""
    ex = exchange()
    pool = make_pool(ex.url, connections=1, auth=signer())
    ex.fail_next_order("503")
    r = pool.post("/api/v3/order", data=order("amb-503"), signed=True)
    assert r.status_code == 503 and r.json()["code"] == -1007
    with pytest.raises(fastpool.HTTPStatusError):
        r.raise_for_status()
    r = pool.get("/api/v3/order", signed=True,
                 params={"symbol": "BTCUSDT", "origClientOrderId": "amb-503"})
    assert r.status_code == 200  # it executed


def test_resolve_needs_a_deadline_or_a_wait(exchange, make_pool):
    ex = exchange()
    pool = make_pool(ex.url, connections=1)
    err = fastpool.MaybeSentError("x")
    with pytest.raises(ValueError):
        pool.resolve(err, lambda: None)
    assert pool.resolve(err, lambda: 42, wait=0.01) == 42


# ---- per-endpoint latency and forms ---------------------------------------------------------


def test_per_endpoint_latency_reset_and_merge(exchange, make_pool):
    ex = exchange()
    pool = make_pool(ex.url, connections=1)
    for _ in range(5):
        pool.get("/api/v3/ping")
    for i in range(3):
        pool.get("/api/v3/time", params={"i": i})
    endpoints = pool.stats(by_endpoint=True)["endpoints"]
    assert endpoints["GET /api/v3/ping"]["count"] == 5
    assert endpoints["GET /api/v3/time"]["count"] == 3  # params are not a new endpoint
    e = endpoints["GET /api/v3/ping"]
    assert 0 < e["min"] <= e["p50"] <= e["p99"] <= e["max"] and e["jitter"] >= 0
    hists = pool.latency_histograms()
    merged = hists["GET /api/v3/ping"]
    merged.merge(hists["GET /api/v3/time"])
    assert merged.count == 8
    pool.reset_stats()
    s = pool.stats(by_endpoint=True)
    assert s["requests"] == 0 and s["endpoints"]["GET /api/v3/ping"]["count"] == 0
    assert "endpoints" not in pool.stats()


def test_form_bodies(exchange, make_pool):
    ex = exchange()
    pool = make_pool(ex.url, connections=1, auth=signer())
    r = pool.post("/api/v3/order", data=[("symbol", "BTCUSDT"), ("side", "SELL"),
                                         ("type", "MARKET"), ("quantity", "1"),
                                         ("newClientOrderId", "form-1")], signed=True)
    assert r.status_code == 200, r.text
    with pytest.raises(fastpool.InvalidRequestError):
        pool.post("/api/v3/order", data={"a": 1}, json={"b": 2})
    assert fastpool.encode_form({"a": "b c", "n": 1}) == b"a=b%20c&n=1"
