"""What checking the caller's input costs per request: ns per call, best of 7 runs (CPU).

    .venv/bin/python bench/input_costs.py

The query encoder of each engine on an order's parameters, request header encoding, the
JSON body encoder (orjson's fast path with its check, against orjson alone and the
standard library), Response.json() (orjson with its big-int check, against orjson alone
and json.loads), and the redacted response.url.
"""

from __future__ import annotations

import json
import time
import timeit
from decimal import Decimal

from fastpool._engine import _pure
from fastpool._model import jsoncodec
from fastpool._model.headers import encode_fields
from fastpool._model.redact import DEFAULT_REDACT
from fastpool._model.url import parse_origin

try:
    from fastpool._engine import _core
except ImportError:  # pragma: no cover - no compiler
    _core = None  # type: ignore[assignment]

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
         "quantity": 0.001, "price": 97000.01, "recvWindow": 5000, "timestamp": 1700000000000}
ORDER_DECIMAL = {**ORDER, "quantity": Decimal("0.00100"), "price": Decimal("97000.01")}
HEADERS = {"X-MBX-APIKEY": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
           "Content-Type": "application/x-www-form-urlencoded"}
BODY = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001",
        "price": "97000.01", "timeInForce": "GTC", "clientOrderId": "x7a1b2c3", "ts": 1700000000000}
TICKER = b'{"symbol":"BTCUSDT","price":"97000.01000000","time":1700000000000123}'
DEPTH = json.dumps({"lastUpdateId": 1027024, "bids": [[f"{97000 - i / 100:.2f}", "0.431"]
                                                      for i in range(1000)]}).encode()
TARGET = b"/api/v3/order?symbol=BTCUSDT&side=BUY&timestamp=1700000000000&signature=" + b"a" * 64


def best(fn, n: int = 20_000) -> float:
    timer = timeit.Timer(fn, timer=time.process_time)
    return min(timer.repeat(7, n)) / n * 1e9


def main() -> None:
    rows = []
    for name, engine in (("C", _core), ("pure", _pure)):
        if engine is not None:
            rows.append((f"encode_query, {name} engine, 8 params (floats)",
                         best(lambda e=engine: e.encode_query(ORDER))))
            rows.append((f"encode_query, {name} engine, 8 params (Decimals)",
                         best(lambda e=engine: e.encode_query(ORDER_DECIMAL))))
    rows.append(("encode_fields, 2 headers", best(lambda: encode_fields(HEADERS))))
    if jsoncodec._orjson is not None:
        import orjson

        rows.append(("json= body: orjson alone", best(lambda: orjson.dumps(BODY))))
        rows.append(("json= body: jsoncodec.dumps (orjson + check)",
                     best(lambda: jsoncodec.dumps(BODY))))
    rows.append(("json= body: standard library (the reference)",
                 best(lambda: jsoncodec._reference(BODY))))
    for label, content, n in (("ticker", TICKER, 20_000), ("1000-level depth", DEPTH, 200)):
        if jsoncodec._orjson is not None:
            rows.append((f"json() {label}: orjson alone",
                         best(lambda c=content: orjson.loads(c), n)))
            rows.append((f"json() {label}: jsoncodec.loads (orjson + check)",
                         best(lambda c=content: jsoncodec.loads(c), n)))
        rows.append((f"json() {label}: json.loads", best(lambda c=content: json.loads(c), n)))
    origin = parse_origin("https://api.binance.com")
    rows.append(("response.url, signed target, redacted",
                 best(lambda: origin.url(TARGET, DEFAULT_REDACT))))
    rows.append(("response.url, signed target, raw", best(lambda: origin.url(TARGET))))
    width = max(len(label) for label, _ in rows)
    for label, ns in rows:
        print(f"{label:<{width}}  {ns:>10,.0f} ns")


if __name__ == "__main__":
    main()
