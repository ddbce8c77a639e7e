"""A user's script over the documented API (README, DESIGN.md), type-checked, never run.

tests/test_typing.py runs `mypy --strict` and pyright (strict) on this file alone, outside the
project's own configuration, as a user's checker would see the installed package: every line
below must type-check clean. The reveal-free assignments to annotated names are the checks
(``code: int = r.status_code`` fails if status_code is not an int).
"""

from __future__ import annotations

import asyncio
from typing import Any, Optional

import fastpool
from fastpool import (
    AsyncPool,
    HmacSigner,
    KeepWarm,
    Limits,
    Pool,
    RateLimit,
    Response,
    SharedLedger,
    Timeout,
)


def use_response(r: Response) -> None:
    code: int = r.status_code
    body: bytes = r.content
    text: str = r.text
    data: Any = r.json()
    ctype: str = r.headers["content-type"]
    maybe: Optional[str] = r.headers.get("x-mbx-used-weight-1m")
    many: list[str] = r.headers.get_list("set-cookie")
    version: str = r.http_version
    reason: str = r.reason_phrase
    ok: bool = r.is_success and not r.is_error
    total_ns: int = r.timings.total
    first_byte: int = r.timings.first_byte
    seconds: float = r.elapsed.total_seconds()
    url: str = r.url
    method: str = r.request.method
    same: Response = r.raise_for_status()
    print(code, body, text, data, ctype, maybe, many, version, reason, ok, total_ns,
          first_byte, seconds, url, method, same)


def sync_pool(key: str, secret: str) -> None:
    timeout = Timeout(5.0, connect=1.0, read=2.0, total=3.0)
    read: Optional[float] = timeout.read
    with Pool("https://api.example.com", connections=4, verify="ca.pem", timeout=timeout,
              headers={"X-MBX-APIKEY": key}, retries=1, limits=Limits(),
              keep_warm=KeepWarm("/api/v3/ping", every=25.0),
              rate_limits=[RateLimit(1200, per=60.0, header="x-mbx-used-weight-1m"),
                           RateLimit(50, per=10.0, orders=True)],
              auth=HmacSigner(api_key=key, secret=secret, recv_window=5000),
              reserved=1, max_lifetime=600.0) as pool:
        r = pool.get("/api/v3/ticker", params={"symbol": "BTCUSDT"})
        use_response(r)
        r = pool.post("/api/v3/order", params={"symbol": "BTCUSDT", "side": "BUY"},
                      order=True, signed=True, priority=True)
        r = pool.post("/api/v3/order", content=b"{}", headers={"content-type": "a/json"})
        r = pool.post("/api/v3/order", json={"symbol": "BTCUSDT"}, timeout=0.5)
        r = pool.post("/api/v3/order", data={"symbol": "BTCUSDT"}, weight=1)
        r = pool.request("DELETE", "/api/v3/order", params=[("symbol", "BTCUSDT")])
        use_response(r)
        stats = pool.stats()
        p50: int = stats["latency_ns"]["p50"]
        p999: int = stats["latency_ns"]["p999"]
        requests: int = stats["requests"]
        remaining: list[int] = [limit["remaining"] for limit in stats["rate_limits"]]
        by_endpoint = pool.stats(by_endpoint=True)
        jitter: int = by_endpoint.get("endpoints", {})["GET /api/v3/ticker"]["jitter"]
        engine: str = pool.engine
        closed: bool = pool.closed
        print(read, p50, p999, requests, remaining, jitter, engine, closed)
        pool.rotate()
        pool.reset_stats()
    pool.close()


def with_ledger() -> None:
    ledger = SharedLedger("binance-weights")
    pool = Pool("https://api.example.com", verify=True, cert=("c.pem", "k.pem"),
                rate_limits=[RateLimit(6000, per=60.0, name="ip")], rate_ledger=ledger,
                on_limit="raise")
    try:
        pool.get("/api/v3/time")
    finally:
        pool.close()
        ledger.close()


def errors(pool: Pool) -> None:
    try:
        pool.post("/api/v3/order", params={"newClientOrderId": "x1"})
    except fastpool.RateLimitedError as e:
        retry_after: float = e.retry_after
        status: int = e.status_code
        scope: str = e.scope
        print(retry_after, status, scope)
        if e.response is not None:
            used: Optional[str] = e.response.headers.get("x-mbx-used-weight-1m")
            print(used)
    except fastpool.HTTPStatusError as e:
        rejected: Response = e.response
        print(rejected.status_code)
    except fastpool.ReadTimeout as e:
        phase: str = e.phase
        print(phase)
    except fastpool.ProtocolError as e:
        rule: str = e.code
        print(rule)
    except fastpool.ServerDisconnected as e:
        how: str = e.code
        print(how)
    except fastpool.TLSError as e:
        verify_code: int = e.verify_code
        print(verify_code)
    except fastpool.InvalidRequestError as e:
        invalid: str = e.code
        print(invalid)
    except fastpool.TimeoutException as e:
        print(e.phase)
    except fastpool.MaybeSentError as e:
        if e.request is not None:
            client_order_id: Optional[str] = e.request.client_order_id
            expires_ms: Optional[int] = e.request.expires_ms
            sent: bytes = e.request.target
            print(e.request.method, e.request.url, client_order_id, expires_ms, len(sent))
        # Reconcile: wait until the exchange can no longer act on it, then look it up.
        print(pool.resolve(e, lambda: pool.get("/api/v3/order"), margin=1.0))
    except fastpool.NotSentError as e:
        print("safe to retry", e)
    except fastpool.FastpoolError as e:
        print(e)
    every: list[type[fastpool.FastpoolError]] = [
        fastpool.ConnectError, fastpool.ConnectTimeout, fastpool.OutageError,
        fastpool.PoolTimeout, fastpool.PoolClosed, fastpool.StaleConnection,
        fastpool.WriteTimeoutNotSent, fastpool.EventLoopError, fastpool.Interrupted,
        fastpool.InterruptedNotSent, fastpool.InterruptedMaybeSent, fastpool.WriteError,
        fastpool.WriteTimeout, fastpool.ReadError, fastpool.ResolveError]
    print(every, fastpool.InvalidURL, fastpool.InsecureWarning, fastpool.EngineWarning)


async def async_pool() -> None:
    async with AsyncPool("https://api.example.com", connections=4, verify="ca.pem",
                         timeout=Timeout(2.0)) as pool:
        r = await pool.get("/api/v3/ticker", params={"symbol": "BTCUSDT"})
        use_response(r)
        r = await pool.post("/api/v3/order", json={"a": 1})
        results = await asyncio.gather(pool.get("/a"), pool.get("/b"))
        for one in results:
            use_response(one)
        p50: int = pool.stats()["latency_ns"]["p50"]
        estimate = await pool.calibrate("/api/v3/time", "serverTime")
        print(p50, estimate)
    pool2 = await AsyncPool("https://api.example.com").open()
    await pool2.aclose()


def module_level() -> None:
    backend: str = fastpool.BACKEND
    version: str = fastpool.__version__
    query: str = fastpool.encode_query({"symbol": "BTCUSDT", "limit": 5})
    form: bytes = fastpool.encode_form([("a", "1")])
    signer = HmacSigner(api_key="k", secret="s")
    window: Optional[int] = signer.recv_window
    sig: str = signer.signature(b"symbol=BTCUSDT")
    print(backend, version, query, form, window, sig)
