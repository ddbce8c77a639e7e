"""Secrets stay out of everything fastpool shows: a signed request's signature and API key
in ``response.url``, ``repr(response.request)``, ``repr(response)``, the message of
``raise_for_status()``; credentials in InvalidURL messages. What is sent is unchanged."""

from __future__ import annotations

import pytest
from support.faults import respond

import fastpool
from fastpool._model.redact import (
    DEFAULT_REDACT,
    REDACTED,
    redact_names,
    redact_target,
    redact_url,
)
from fastpool._model.response import RawExchange, ResponseContext, make_response, request_info
from fastpool._model.url import parse_origin

SIGNATURE = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"


def test_redact_target():
    target = f"/api/v3/order?symbol=BTCUSDT&timestamp=1&signature={SIGNATURE}".encode()
    assert redact_target(target) == \
        f"/api/v3/order?symbol=BTCUSDT&timestamp=1&signature={REDACTED}"
    # any case, percent-encoded names, every listed name, empty values left alone
    assert redact_target(b"/x?SIGNATURE=a&apiKey=b&api%5Fkey=c&Token=d&passphrase=e&sig=") == \
        f"/x?SIGNATURE={REDACTED}&apiKey={REDACTED}&api%5Fkey={REDACTED}&Token={REDACTED}" \
        f"&passphrase={REDACTED}&sig="
    assert redact_target(b"/x?listenKey=abc&symbol=signature") == \
        f"/x?listenKey={REDACTED}&symbol=signature"
    assert redact_target(b"/x") == "/x" and redact_target(b"/x?a=1") == "/x?a=1"
    assert redact_target(b"/x?signature=s", frozenset()) == "/x?signature=s"
    assert {"signature", "apikey", "api_key", "secret", "token", "passphrase",
            "x-mbx-apikey"} <= DEFAULT_REDACT


def test_redact_names():
    assert redact_names() is DEFAULT_REDACT
    names = redact_names(["recvToken", "OK-ACCESS-SIGN"])
    assert {"recvtoken", "ok-access-sign"} <= names and DEFAULT_REDACT <= names
    assert "listenkey2" in redact_names("listenKey2")  # a str is one name
    with pytest.raises(ValueError):
        redact_names([""])
    with pytest.raises(ValueError):
        redact_names([b"bytes"])


@pytest.mark.parametrize("url,shown", [
    ("https://user:hunter2@api.example.com/x", f"https://{REDACTED}@api.example.com/x"),
    ("https://user:hun/ter2@api.example.com/x", f"https://{REDACTED}@api.example.com/x"),
    ("https://hunter2@api.example.com", f"https://{REDACTED}@api.example.com"),
    ("//user:hunter2@api.example.com/x", f"//{REDACTED}@api.example.com/x"),
    ("https://api.example.com/x?a=1&signature=hunter2#token=hunter2",
     f"https://api.example.com/x?a=1&signature={REDACTED}#token={REDACTED}"),
    ("https://api.example.com/users/@me?x=@", f"https://{REDACTED}@me?x=@"),  # over, never under
    ("https://api.example.com/x", "https://api.example.com/x"),
    ("not a url", "not a url"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


@pytest.mark.parametrize("url", [
    "https://user:hunter2@127.0.0.1:1/",
    "http://user:hunter2@127.0.0.1:1/",
    "https://hunter2@127.0.0.1/",
    "https://user:hun/ter2@127.0.0.1/x",     # urlsplit reads "hun" as the port
    "https://user:hunter2:x@127.0.0.1/",
    "https://127.0.0.1/?signature=hunter2",
    "https://127.0.0.1/#token=hunter2",
    "https://user:hunter2@127.0.0.1/\r\n/x",
])
def test_invalid_url_messages_hide_secrets(url):
    with pytest.raises(fastpool.InvalidURL) as info:
        parse_origin(url)
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value)


def test_invalid_request_url_messages_hide_secrets(fault_server, make_pool):
    server = fault_server(respond())
    pool = make_pool(server.url("/"), connections=1)
    for url in (f"http://127.0.0.2:{server.port}/x?signature={SIGNATURE}",
                f"http://user:{SIGNATURE}@127.0.0.1:{server.port}/x",
                f"//evil.example/x?apiKey={API_KEY}",
                f"/x?apiKey={API_KEY}\r\nX: 1"):
        with pytest.raises(fastpool.InvalidURL) as info:
            pool.get(url)
        assert SIGNATURE not in str(info.value) and API_KEY not in str(info.value)
    assert server.requests == []


@pytest.mark.parametrize("status", [200, 400, 503])
def test_responses_and_errors_hide_the_signature(fault_server, make_pool, status):
    server = fault_server(respond(status=status, body=b'{"code":-1022}'))
    pool = make_pool(server.url("/"), connections=1)
    r = pool.post("/api/v3/order", params={"symbol": "BTCUSDT", "timestamp": 1,
                                           "apiKey": API_KEY, "signature": SIGNATURE})
    shown = [r.url, repr(r), repr(r.request), r.request.url, str(r.request.method)]
    assert r.url == (f"http://127.0.0.1:{server.port}/api/v3/order?symbol=BTCUSDT&timestamp=1"
                     f"&apiKey={REDACTED}&signature={REDACTED}")
    assert repr(r.request) == f"<Request [POST {r.url}]>"
    if status >= 400:
        with pytest.raises(fastpool.HTTPStatusError) as info:
            r.raise_for_status()
        shown += [str(info.value), repr(info.value)]
        assert r.url in str(info.value)
    for text in shown:
        assert SIGNATURE not in text and API_KEY not in text, text
    # what was sent is the real request, and the caller can still have it
    assert r.request.target == (f"/api/v3/order?symbol=BTCUSDT&timestamp=1&apiKey={API_KEY}"
                                f"&signature={SIGNATURE}").encode()
    server.wait_for_requests(1)
    assert server.requests[0].target == r.request.target.decode()


def test_a_pool_can_name_more_parameters(engine):
    """What the pool's ``redact=`` becomes: a ResponseContext with more names."""
    origin = parse_origin("https://api.example.com")
    ctx = ResponseContext(engine.decode_headers, engine.header_values, origin,
                          redact_names(["recvToken"]))
    head = b"HTTP/1.1 401 Unauthorized\r\n\r\n"
    raw = RawExchange(401, 1, head, b"", b"", 13, 12, 1, 2, 3, 4)
    r = make_response(raw, request_info(ctx, "GET", b"/x?recvToken=abc&signature=def&q=1", 0))
    assert r.url == f"https://api.example.com/x?recvToken={REDACTED}&signature={REDACTED}&q=1"
    with pytest.raises(fastpool.HTTPStatusError) as info:
        r.raise_for_status()
    assert "abc" not in str(info.value) and "def" not in str(info.value)
    assert info.value.status_code == 401
