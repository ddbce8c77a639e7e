"""examples/mock_exchange.py, exercised with http.client on loopback (plain and TLS)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pool_helpers import room_in_window

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))

from mock_exchange import (  # noqa: E402
    EXAMPLE_API_KEY,
    EXAMPLE_SECRET,
    MockExchange,
    _without_signature,
    interval_name,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "mock_exchange.py"


def sign(payload: str, secret: str = EXAMPLE_SECRET) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


class Client:
    """One keep-alive connection, Binance-style signing by hand (no fastpool involved)."""

    def __init__(self, exchange: MockExchange, skew_ms: float = 0.0, tls=None) -> None:
        if tls is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", exchange.port, timeout=10)
        else:
            self.conn = http.client.HTTPSConnection("localhost", exchange.port, timeout=10,
                                                    context=tls)
        self.skew_ms = skew_ms

    def call(self, method, path, query="", body="", key=EXAMPLE_API_KEY):
        headers = {"X-MBX-APIKEY": key} if key else {}
        if body:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        target = path + ("?" + query if query else "")
        self.conn.request(method, target, body=body.encode() if body else None,
                          headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data)

    def signed(self, method, path, params: str, in_body=False, ts=None, recv=5000,
               secret=EXAMPLE_SECRET, **kw):
        ts = int(time.time() * 1000 + self.skew_ms) if ts is None else ts
        params = f"{params}&recvWindow={recv}&timestamp={ts}".lstrip("&")
        sig = sign(params, secret)
        if in_body:
            return self.call(method, path, body=f"{params}&signature={sig}", **kw)
        return self.call(method, path, query=f"{params}&signature={sig}", **kw)

    def close(self):
        self.conn.close()


@pytest.fixture
def exchange():
    with MockExchange() as ex:
        yield ex


@pytest.fixture
def client(exchange):
    c = Client(exchange)
    yield c
    c.close()


ORDER = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"


def test_helpers():
    assert [interval_name(s) for s in (60, 10, 86400, 3600, 0.5)] == ["1m", "10s", "1d", "1h",
                                                                     "500ms"]
    assert _without_signature("a=1&signature=x", "") == "a=1"
    assert _without_signature("a=1", "b=2&signature=x") == "a=1b=2"
    assert _without_signature("signature=x&a=1", "") is None  # not last: refused
    assert _without_signature("a=1", "b=2") is None


def test_ping_time_and_weight_headers_on_one_keep_alive_connection(exchange, client):
    status, headers, body = client.call("GET", "/api/v3/ping")
    assert status == 200 and body == {}
    assert headers["x-mbx-used-weight-1m"] == "1"
    status, headers, body = client.call("GET", "/api/v3/time")
    assert abs(body["serverTime"] - time.time() * 1000) < 5000
    assert headers["x-mbx-used-weight-1m"] == "2"
    status, headers, body = client.call("GET", "/api/v3/exchangeInfo")
    assert headers["x-mbx-used-weight-1m"] == "22"  # exchangeInfo weighs 20
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
            "limit": 6000} in body["rateLimits"]
    assert exchange.state()["connections"] == 1 and exchange.state()["requests"] == 3


def test_server_clock_skew():
    with MockExchange(skew_ms=-7000) as ex:
        c = Client(ex)
        _, _, body = c.call("GET", "/api/v3/time")
        assert abs(body["serverTime"] - (time.time() * 1000 - 7000)) < 2000
        # A timestamp from our (unskewed) clock is 7 s ahead of the server's: refused.
        status, _, err = c.signed("POST", "/api/v3/order", ORDER)
        assert status == 400 and err["code"] == -1021 and "ahead" in err["msg"]
        status, _, _ = Client(ex, skew_ms=-7000).signed("POST", "/api/v3/order", ORDER)
        assert status == 200
        c.close()


def test_signed_order_lifecycle(exchange, client):
    status, headers, order = client.signed("POST", "/api/v3/order",
                                           ORDER + "&newClientOrderId=abc-1")
    assert status == 200 and order["clientOrderId"] == "abc-1" and order["status"] == "NEW"
    assert headers["x-mbx-order-count-10s"] == "1"
    # Signed in the body, and mixed query + body ("no & between" them).
    status, _, _ = client.signed("POST", "/api/v3/order", ORDER + "&newClientOrderId=abc-2",
                                 in_body=True)
    assert status == 200
    ts = int(time.time() * 1000)
    body = f"quantity=1&price=0.1&newClientOrderId=abc-3&timestamp={ts}"
    query = "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC"
    status, _, _ = client.call("POST", "/api/v3/order", query=query,
                               body=f"{body}&signature={sign(query + body)}")
    assert status == 200
    # Duplicate client order id.
    status, _, err = client.signed("POST", "/api/v3/order", ORDER + "&newClientOrderId=abc-1")
    assert status == 400 and err == {"code": -2010, "msg": "Duplicate order sent."}
    # Look up, cancel, cancel again.
    status, headers, found = client.signed("GET", "/api/v3/order",
                                           "symbol=BTCUSDT&origClientOrderId=abc-1")
    assert status == 200 and found["orderId"] == order["orderId"]
    status, _, err = client.signed("GET", "/api/v3/order", "symbol=BTCUSDT&origClientOrderId=no")
    assert status == 400 and err["code"] == -2013
    status, _, canceled = client.signed("DELETE", "/api/v3/order",
                                        "symbol=BTCUSDT&origClientOrderId=abc-1")
    assert status == 200 and canceled["status"] == "CANCELED"
    status, _, err = client.signed("DELETE", "/api/v3/order",
                                   "symbol=BTCUSDT&origClientOrderId=abc-1")
    assert status == 400 and err["code"] == -2011
    _, _, open_orders = client.signed("GET", "/api/v3/openOrders", "symbol=BTCUSDT")
    assert sorted(o["clientOrderId"] for o in open_orders) == ["abc-2", "abc-3"]


def test_authentication_failures(client):
    now = int(time.time() * 1000)
    cases = [
        ({"key": None}, 401, -2014),
        ({"key": "wrong"}, 401, -2015),
        ({"secret": "other"}, 400, -1022),
        ({"ts": now + 1500}, 400, -1021),  # ahead of the server by more than 1 s
        ({"ts": now - 6000}, 400, -1021),  # older than recvWindow
        ({"ts": now - 6000, "recv": 10000}, 200, None),  # within a wider recvWindow
        ({"recv": 60001}, 400, -1130),
        ({"ts": now * 1000}, 200, None),  # microseconds are accepted
    ]
    for i, (kw, status, code) in enumerate(cases):
        got, _, body = client.signed("POST", "/api/v3/order",
                                     ORDER + f"&newClientOrderId=auth-{i}", **kw)
        assert got == status, (kw, body)
        if code is not None:
            assert body["code"] == code
    got, _, body = client.call("POST", "/api/v3/order", query=ORDER)
    assert got == 400 and body["code"] == -1102
    got, _, body = client.signed("POST", "/api/v3/order", "symbol=BTCUSDT&side=BUY")
    assert got == 400 and body["code"] == -1102 and "type" in body["msg"]


def test_weight_limit_429_then_418():
    room_in_window(60, 5)  # six requests inside one of the exchange's minutes
    with MockExchange(weight_limit=5, ban_after=2, ban_seconds=120) as ex:
        c = Client(ex)
        for _i in range(5):
            assert c.call("GET", "/api/v3/ping")[0] == 200
        status, headers, body = c.call("GET", "/api/v3/ping")
        assert status == 429 and body["code"] == -1003
        assert 1 <= int(headers["retry-after"]) <= 60
        assert headers["x-mbx-used-weight-1m"] == "6"
        status, headers, body = c.call("GET", "/api/v3/ping")  # did not back off
        assert status == 418 and 119 <= int(headers["retry-after"]) <= 120
        assert "IP banned until" in body["msg"]
        until = int(body["msg"].split("until ")[1].split(".")[0])
        assert abs(until - (time.time() * 1000 + 120_000)) < 5000
        assert c.call("GET", "/api/v3/time")[0] == 418  # everything, while banned
        assert ex.state()["bans"] == 1
        c.close()


def test_order_count_limit():
    room_in_window(10, 3)  # three orders inside one of the exchange's 10-s windows
    with MockExchange(order_limit=2) as ex:
        c = Client(ex)
        for i in range(2):
            assert c.signed("POST", "/api/v3/order", ORDER + f"&newClientOrderId=o{i}")[0] == 200
        status, headers, body = c.signed("POST", "/api/v3/order", ORDER + "&newClientOrderId=o9")
        assert status == 429 and body["code"] == -1015 and "retry-after" in headers
        assert c.call("GET", "/api/v3/ping")[0] == 200  # other requests still go
        c.close()


def test_ambiguous_failures_place_the_order(exchange, client):
    exchange.fail_next_order("close")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        client.signed("POST", "/api/v3/order", ORDER + "&newClientOrderId=amb-1")
    client.close()
    again = Client(exchange)
    status, _, order = again.signed("GET", "/api/v3/order",
                                    "symbol=BTCUSDT&origClientOrderId=amb-1")
    assert status == 200 and order["status"] == "NEW"  # it was placed
    # 503 "execution status unknown", switched on over HTTP.
    again.conn.request("POST", "/mock/fail?mode=503&count=1")
    assert json.loads(again.conn.getresponse().read())["failMode"] == "503"
    status, _, body = again.signed("POST", "/api/v3/order", ORDER + "&newClientOrderId=amb-2")
    assert status == 503 and body["code"] == -1007
    status, _, order = again.signed("GET", "/api/v3/order",
                                    "symbol=BTCUSDT&origClientOrderId=amb-2")
    assert status == 200
    assert again.signed("POST", "/api/v3/order", ORDER + "&newClientOrderId=amb-3")[0] == 200
    again.conn.request("POST", "/mock/reset")
    assert json.loads(again.conn.getresponse().read())["orders"] == 0
    again.close()


def test_tls(certs):
    with MockExchange(certfile=str(certs.server.chain), keyfile=str(certs.server.key)) as ex:
        assert ex.url.startswith("https://")
        ctx = ssl.create_default_context(cafile=str(certs.ca))
        c = Client(ex, tls=ctx)
        for _ in range(3):
            assert c.call("GET", "/api/v3/ping")[0] == 200
        assert c.signed("POST", "/api/v3/order", ORDER)[0] == 200
        assert ex.state()["connections"] == 1  # kept alive under TLS too
        c.close()


def test_runs_as_a_script():
    proc = subprocess.Popen([sys.executable, str(EXAMPLE), "--port", "0", "--skew-ms", "250"],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert "mock exchange on http://127.0.0.1:" in line and "skew 250 ms" in line
        port = int(line.split("127.0.0.1:")[1].split()[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/api/v3/ping")
        assert conn.getresponse().status == 200
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
