#!/usr/bin/env python3
"""A small Binance-style exchange to run a strategy against: standard library only.

    python examples/mock_exchange.py --port 8999            # plain HTTP/1.1, keep-alive
    python examples/mock_exchange.py --port 8999 --cert c.pem --key k.pem    # TLS

What it mirrors of Binance's REST API (developers.binance.com: rest-api, errors):

- GET /api/v3/ping (weight 1), GET /api/v3/time (weight 1: {"serverTime": ms}, on a clock
  that can be skewed with --skew-ms), GET /api/v3/exchangeInfo (weight 20: the rateLimits).
- POST /api/v3/order (weight 1, one order): HMAC-SHA256 signature over query + body
  (X-MBX-APIKEY, timestamp, recvWindow, signature), timestamp checked against the server
  clock (``serverTime - recvWindow <= timestamp < serverTime + 1000``), newClientOrderId
  (a duplicate is refused with -2010 "Duplicate order sent."). GET /api/v3/order by
  origClientOrderId (weight 4; -2013 when unknown), DELETE /api/v3/order to cancel
  (weight 1; -2011 when unknown).
- Request weight counted per IP in fixed windows aligned to the (skewed) server clock,
  reported in X-MBX-USED-WEIGHT-1M on every response; orders counted per 10 s window,
  reported in X-MBX-ORDER-COUNT-10S on successful orders. Over a limit: 429 with
  Retry-After (seconds to the window's end) and -1003 / -1015; ``--ban-after`` 429s in a
  row earn a 418 IP ban (-1003 "IP banned until <ms>", Retry-After), doubling each time.
- A switch to make order requests fail *ambiguously*, the case a strategy must reconcile:
  POST /mock/fail?mode=close (the order is placed, then the connection is closed without
  an answer) or mode=503 (placed, then 503 with -1007 "execution status unknown").
  GET /mock/state and POST /mock/reset inspect and reset it. /mock/ is never counted.

The default key and secret are the example pair from Binance's documentation (public, for
illustration only). From Python: ``with MockExchange(port=0) as ex: ex.url``.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import math
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional
from urllib.parse import parse_qsl, urlsplit

EXAMPLE_API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
EXAMPLE_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
MAX_RECV_WINDOW = 60_000
MAX_BAN = 3 * 86400.0  # "from 2 minutes to 3 days"
MAX_BODY = 1 << 20


def interval_name(seconds: float) -> str:
    """Binance's header suffix for an interval: 60 -> "1m", 10 -> "10s", 86400 -> "1d"."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds * 1000)}ms"


class _Window:
    """A fixed, clock-aligned window counter ("A 1 MINUTE interval starts every minute")."""

    def __init__(self, limit: int, seconds: float) -> None:
        self.limit = limit
        self.seconds = seconds
        self.index = None
        self.used = 0

    def roll(self, now_s: float) -> None:
        index = math.floor(now_s / self.seconds)
        if index != self.index:
            self.index = index
            self.used = 0

    def add(self, now_s: float, n: int) -> int:
        self.roll(now_s)
        self.used += n
        return self.used

    def retry_after(self, now_s: float) -> int:
        end = (math.floor(now_s / self.seconds) + 1) * self.seconds
        return max(1, math.ceil(end - now_s))


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str,
                 headers: Optional[dict] = None) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg
        self.headers = headers or {}


class MockExchange:
    """The exchange's state and its HTTP server (threads; one per connection)."""

    WEIGHTS = {("GET", "/api/v3/ping"): 1, ("GET", "/api/v3/time"): 1,
               ("GET", "/api/v3/exchangeInfo"): 20, ("POST", "/api/v3/order"): 1,
               ("GET", "/api/v3/order"): 4, ("DELETE", "/api/v3/order"): 1,
               ("GET", "/api/v3/openOrders"): 6}

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *,
                 api_key: str = EXAMPLE_API_KEY, secret: str = EXAMPLE_SECRET,
                 skew_ms: float = 0.0, weight_limit: int = 6000, weight_window: float = 60.0,
                 order_limit: int = 50, order_window: float = 10.0, ban_after: int = 3,
                 ban_seconds: float = 120.0, certfile: Optional[str] = None,
                 keyfile: Optional[str] = None, clock: Callable[[], float] = time.time,
                 verbose: bool = False) -> None:
        self.api_key = api_key
        self._secret = secret.encode("ascii")
        self.skew_ms = float(skew_ms)
        self.clock = clock
        self.weight = _Window(weight_limit, weight_window)
        self.order_count = _Window(order_limit, order_window)
        self.ban_after = ban_after
        self.ban_seconds = ban_seconds
        self.verbose = verbose
        self.lock = threading.Lock()
        self.orders: dict[str, dict] = {}
        self.next_order_id = 1
        self.fail_mode: Optional[str] = None
        self.fail_count = 0
        self.violations = 0  # 429s since the last ban
        self.bans = 0
        self.banned_until = 0.0  # server seconds
        self.requests = 0
        self.connections = 0  # accepted (keep-alive shows as few connections, many requests)
        self._tls = None
        if certfile:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(certfile, keyfile)
            self._tls = ctx
        self._server = _Server((host, port), _Handler, self)
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> MockExchange:
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="mock-exchange", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.close_all()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MockExchange:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- the switches tests and users flip -------------------------------------------------

    def fail_next_order(self, mode: str = "close", count: int = 1) -> None:
        """The next ``count`` orders are placed, then answered ambiguously."""
        if mode not in ("close", "503"):
            raise ValueError("mode must be 'close' or '503'")
        with self.lock:
            self.fail_mode, self.fail_count = mode, count

    def reset(self) -> None:
        with self.lock:
            self.orders.clear()
            self.weight.index = self.order_count.index = None
            self.weight.used = self.order_count.used = 0
            self.violations = self.bans = 0
            self.banned_until = 0.0
            self.fail_mode, self.fail_count = None, 0

    def now_s(self) -> float:
        """The server's (skewed) clock, Unix seconds."""
        return self.clock() + self.skew_ms / 1000.0

    def state(self) -> dict:
        with self.lock:
            now = self.now_s()
            self.weight.roll(now)
            self.order_count.roll(now)
            return {"serverTime": int(now * 1000), "usedWeight": self.weight.used,
                    "orderCount": self.order_count.used, "orders": len(self.orders),
                    "violations": self.violations, "bans": self.bans,
                    "bannedFor": max(self.banned_until - now, 0.0),
                    "requests": self.requests, "connections": self.connections,
                    "failMode": self.fail_mode, "failCount": self.fail_count}

    # -- one request ------------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Any,
               body: bytes) -> tuple[int, dict, Optional[bytes]]:
        """(status, extra headers, JSON body); a body of None closes without answering."""
        parts = urlsplit(target)
        path, query = parts.path, parts.query
        if path.startswith("/mock/"):
            return self._admin(method, path, query)
        with self.lock:
            self.requests += 1
            now = self.now_s()
            weight = self.WEIGHTS.get((method, path), 1)
            used = self.weight.add(now, weight)
            out = {f"x-mbx-used-weight-{interval_name(self.weight.seconds)}": str(used),
                   "x-mbx-used-weight": str(used)}
            if self.banned_until > now:
                return self._ban_answer(now, out)
            if used > self.weight.limit:
                self.violations += 1
                if self.violations >= self.ban_after:
                    self.bans += 1
                    self.violations = 0
                    ban = min(self.ban_seconds * 2 ** (self.bans - 1), MAX_BAN)
                    self.banned_until = now + ban
                    return self._ban_answer(now, out)
                out["Retry-After"] = str(self.weight.retry_after(now))
                return 429, out, _error(-1003, (
                    f"Too much request weight used; current limit is {self.weight.limit} "
                    f"request weight per {interval_name(self.weight.seconds).upper()}. "
                    f"Please use WebSocket Streams for live updates to avoid polling the API."))
        try:
            status, extra, payload = self._route(method, path, query, headers, body, now)
        except ApiError as exc:
            out.update(exc.headers)
            return exc.status, out, _error(exc.code, exc.msg)
        out.update(extra)
        return status, out, payload

    def _ban_answer(self, now: float, out: dict) -> tuple[int, dict, bytes]:
        out["Retry-After"] = str(max(1, math.ceil(self.banned_until - now)))
        return 418, out, _error(-1003, (
            f"Way too much request weight used; IP banned until "
            f"{int(self.banned_until * 1000)}. Please use WebSocket Streams for live updates "
            f"to avoid bans."))

    def _route(self, method: str, path: str, query: str, headers: Any, body: bytes,
               now: float) -> tuple[int, dict, Optional[bytes]]:
        if method == "GET" and path == "/api/v3/ping":
            return 200, {}, b"{}"
        if method == "GET" and path == "/api/v3/time":
            return 200, {}, _json({"serverTime": int(self.now_s() * 1000)})
        if method == "GET" and path == "/api/v3/exchangeInfo":
            return 200, {}, _json({"timezone": "UTC", "serverTime": int(now * 1000),
                                   "rateLimits": self._rate_limits(), "symbols": []})
        if path == "/api/v3/order" and method in ("POST", "GET", "DELETE"):
            params = self._authenticate(query, headers, body)
            if method == "POST":
                return self._new_order(params, now)
            if method == "GET":
                return 200, {}, _json(self._find(params, -2013, "Order does not exist."))
            with self.lock:
                order = self._find(params, -2011, "Unknown order sent.")
                if order["status"] == "CANCELED":
                    raise ApiError(400, -2011, "Unknown order sent.")
                order["status"] = "CANCELED"
                return 200, {}, _json(order)
        if path == "/api/v3/openOrders" and method == "GET":
            self._authenticate(query, headers, body)
            with self.lock:
                return 200, {}, _json([o for o in self.orders.values() if o["status"] == "NEW"])
        raise ApiError(404, -1000, f"unknown endpoint {method} {path}")

    def _rate_limits(self) -> list:
        def one(kind: str, window: _Window) -> dict:
            name = interval_name(window.seconds)
            unit = {"s": "SECOND", "m": "MINUTE", "h": "HOUR", "d": "DAY"}.get(name[-1],
                                                                              "SECOND")
            return {"rateLimitType": kind, "interval": unit, "intervalNum": int(name[:-1])
                    if name[:-1].isdigit() else 1, "limit": window.limit}
        return [one("REQUEST_WEIGHT", self.weight), one("ORDERS", self.order_count)]

    def _authenticate(self, query: str, headers: Any, body: bytes) -> dict:
        """Binance's SIGNED checks: key, parameters, timestamp window, signature."""
        key = headers.get("X-MBX-APIKEY")
        if not key:
            raise ApiError(401, -2014, "API-key format invalid.")
        if key != self.api_key:
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        try:
            raw_body = body.decode("ascii")
        except UnicodeDecodeError:
            raise ApiError(400, -1100, "Illegal characters found in a parameter.") from None
        # "If a parameter sent in both the query string and request body, the query string
        # parameter will be used."
        params = dict(parse_qsl(raw_body, keep_blank_values=True))
        params.update(parse_qsl(query, keep_blank_values=True))
        for name in ("timestamp", "signature"):
            if not params.get(name):
                raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, "
                                           f"was empty/null, or malformed.")
        try:
            ts = float(params["timestamp"])
            recv = float(params.get("recvWindow", "5000"))
        except ValueError:
            raise ApiError(400, -1102, "Mandatory parameter 'timestamp' was not sent, was "
                                       "empty/null, or malformed.") from None
        if ts > 1e14:  # sent in microseconds
            ts /= 1000.0
        if not 0 < recv <= MAX_RECV_WINDOW:
            raise ApiError(400, -1130, "Data sent for parameter 'recvWindow' is not valid.")
        server_ms = self.now_s() * 1000.0
        if ts >= server_ms + 1000:
            raise ApiError(400, -1021, "Timestamp for this request was 1000ms ahead of the "
                                       "server's time.")
        if server_ms - ts > recv:
            raise ApiError(400, -1021, "Timestamp for this request is outside of the "
                                       "recvWindow.")
        payload = _without_signature(query, raw_body)
        if payload is None:
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        expected = hmac.new(self._secret, payload.encode("ascii"), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, params["signature"].lower()):
            raise ApiError(400, -1022, "Signature for this request is not valid.")
        return params

    def _new_order(self, params: dict, now: float) -> tuple[int, dict, Optional[bytes]]:
        for name in ("symbol", "side", "type"):
            if not params.get(name):
                raise ApiError(400, -1102, f"Mandatory parameter '{name}' was not sent, was "
                                           f"empty/null, or malformed.")
        with self.lock:
            count = self.order_count.add(now, 1)
            header = f"x-mbx-order-count-{interval_name(self.order_count.seconds)}"
            if count > self.order_count.limit:
                raise ApiError(429, -1015, (
                    f"Too many new orders; current limit is {self.order_count.limit} orders "
                    f"per {interval_name(self.order_count.seconds).upper()}."),
                    {"Retry-After": str(self.order_count.retry_after(now))})
            cid = params.get("newClientOrderId") or f"mock{self.next_order_id:012d}"
            if cid in self.orders:
                raise ApiError(400, -2010, "Duplicate order sent.")
            order = {"symbol": params["symbol"], "orderId": self.next_order_id,
                     "orderListId": -1, "clientOrderId": cid,
                     "transactTime": int(now * 1000), "price": params.get("price", "0"),
                     "origQty": params.get("quantity", "0"), "executedQty": "0",
                     "status": "NEW", "timeInForce": params.get("timeInForce", "GTC"),
                     "type": params["type"], "side": params["side"]}
            self.next_order_id += 1
            self.orders[cid] = order
            fail = None
            if self.fail_count > 0:
                fail = self.fail_mode
                self.fail_count -= 1
        if fail == "close":
            return 0, {}, None  # placed; the answer never comes
        if fail == "503":
            return 503, {}, _error(-1007, "Timeout waiting for response from backend server. "
                                          "Send status unknown; execution status unknown.")
        return 200, {header: str(count)}, _json(order)

    def _find(self, params: dict, code: int, msg: str) -> dict:
        cid = params.get("origClientOrderId")
        if cid:
            order = self.orders.get(cid)
        else:
            oid = params.get("orderId", "")
            order = next((o for o in self.orders.values() if str(o["orderId"]) == oid), None)
        if order is None or (params.get("symbol") and order["symbol"] != params["symbol"]):
            raise ApiError(400, code, msg)
        return order

    def _admin(self, method: str, path: str, query: str) -> tuple[int, dict, bytes]:
        args = dict(parse_qsl(query))
        if path == "/mock/state":
            return 200, {}, _json(self.state())
        if path == "/mock/reset" and method == "POST":
            self.reset()
            return 200, {}, _json(self.state())
        if path == "/mock/fail" and method == "POST":
            try:
                self.fail_next_order(args.get("mode", "close"), int(args.get("count", "1")))
            except ValueError as exc:
                return 400, {}, _json({"error": str(exc)})
            return 200, {}, _json(self.state())
        return 404, {}, _json({"error": f"unknown {method} {path}"})


def _without_signature(query: str, body: str) -> Optional[str]:
    """query + body with the (last) signature parameter taken out, or None if it is not
    last where it stands: Binance signs "the query string concatenated without separator
    to the HTTP body"."""
    for part in ("body", "query"):
        text = body if part == "body" else query
        if text.startswith("signature="):
            head, cut = "", text
        else:
            idx = text.rfind("&signature=")
            if idx < 0:
                continue
            head, cut = text[:idx], text[idx + 1:]
        if "&" in cut:
            return None
        return query + head if part == "body" else head + body
    return None


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _error(code: int, msg: str) -> bytes:
    return _json({"code": code, "msg": msg})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, handler, exchange: MockExchange) -> None:
        self.exchange = exchange
        self._open: set = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def get_request(self):
        sock, addr = super().get_request()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = self.exchange._tls
        if tls is not None:
            # The handshake runs in the connection's thread (finish_request), not here,
            # where a slow client would hold up every accept.
            sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._open_lock:
            self._open.add(sock)
        with self.exchange.lock:
            self.exchange.connections += 1
        return sock, addr

    def finish_request(self, request, client_address) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(10)
                request.do_handshake()
                request.settimeout(None)
            super().finish_request(request, client_address)
        except (OSError, ssl.SSLError):
            pass
        finally:
            with self._open_lock:
                self._open.discard(request)

    def close_all(self) -> None:
        with self._open_lock:
            socks = list(self._open)
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request, client_address) -> None:
        if self.exchange.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the connection stays open between requests
    server_version = "mock-exchange/1"
    sys_version = ""

    def _serve(self) -> None:
        exchange: MockExchange = self.server.exchange  # type: ignore[attr-defined]
        length = self.headers.get("Content-Length")
        body = b""
        if length:
            try:
                n = int(length)
            except ValueError:
                n = -1
            if not 0 <= n <= MAX_BODY:
                self.send_error(400, "bad Content-Length")
                self.close_connection = True
                return
            body = self.rfile.read(n)
        elif self.headers.get("Transfer-Encoding"):
            self.send_error(411, "send a Content-Length")
            self.close_connection = True
            return
        status, headers, payload = exchange.handle(self.command, self.path, self.headers, body)
        if payload is None:
            # The ambiguous failure: processed, never answered.
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.exchange.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


def main(argv: Optional[list] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8999)
    ap.add_argument("--api-key", default=EXAMPLE_API_KEY)
    ap.add_argument("--secret", default=EXAMPLE_SECRET)
    ap.add_argument("--skew-ms", type=float, default=0.0,
                    help="the server clock's offset from this machine's (ms)")
    ap.add_argument("--weight-limit", type=int, default=6000)
    ap.add_argument("--weight-window", type=float, default=60.0)
    ap.add_argument("--order-limit", type=int, default=50)
    ap.add_argument("--order-window", type=float, default=10.0)
    ap.add_argument("--ban-after", type=int, default=3, help="429s before a 418 ban")
    ap.add_argument("--ban-seconds", type=float, default=120.0)
    ap.add_argument("--cert", help="PEM certificate (chain): serve TLS")
    ap.add_argument("--key", help="PEM private key of --cert")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    exchange = MockExchange(args.host, args.port, api_key=args.api_key, secret=args.secret,
                            skew_ms=args.skew_ms, weight_limit=args.weight_limit,
                            weight_window=args.weight_window, order_limit=args.order_limit,
                            order_window=args.order_window, ban_after=args.ban_after,
                            ban_seconds=args.ban_seconds, certfile=args.cert,
                            keyfile=args.key, verbose=args.verbose)
    scheme = "https" if args.cert else "http"
    print(f"mock exchange on {scheme}://{args.host}:{exchange.port} "
          f"(weight {args.weight_limit}/{args.weight_window:g}s, orders "
          f"{args.order_limit}/{args.order_window:g}s, skew {args.skew_ms:g} ms)", flush=True)
    try:
        exchange._server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        exchange._server.close_all()
        exchange._server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
