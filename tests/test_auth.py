"""Signers (HMAC-SHA256, Ed25519) against Binance's documented examples, the form and query
encoders on both engines, and the places a secret must never show up."""

from __future__ import annotations

import base64
import copy
import logging
import pickle
import sys
import traceback
import warnings
from urllib.parse import unquote

import pytest

import fastpool
from fastpool import Ed25519Signer, HmacSigner, encode_form, encode_query
from fastpool._model.errors import InvalidRequestError
from fastpool._model.request import RequestBuilder
from fastpool._model.url import parse_origin

# developers.binance.com rest-api/request-security, "SIGNED Endpoint Examples for POST
# /api/v3/order", HMAC Keys (example key and secret published there for illustration).
API_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
TS = 1499827319559
ALL = b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
SIG_ASCII = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"
SIG_MIXED = "0fd168b8ddb4876a0358a8d14d0c9f3da0e9b20c5d52b2a00fcf7d1c602f9a77"
SIG_NON_ASCII = "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"
NON_ASCII_PARAMS = {"symbol": "１２３４５６", "side": "BUY", "type": "LIMIT",
                    "timeInForce": "GTC", "quantity": 1, "price": 0.1, "recvWindow": 5000,
                    "timestamp": TS}
NON_ASCII_PAYLOAD = ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY"
                     "&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000"
                     "&timestamp=1499827319559")


@pytest.fixture
def signer():
    return HmacSigner(api_key=API_KEY, secret=SECRET, recv_window=5000)


# --- Binance's HMAC examples ---------------------------------------------------------------


def test_hmac_signature_of_the_documented_payloads(signer):
    payload = ALL + b"&recvWindow=5000&timestamp=1499827319559"
    assert signer.signature(payload) == SIG_ASCII
    assert signer.signature(NON_ASCII_PAYLOAD.encode()) == SIG_NON_ASCII
    # The prepared state is copied, never consumed: the same payload, the same signature.
    assert signer.signature(payload) == SIG_ASCII


def test_example_1_all_in_the_body(signer):
    signed = signer.sign("POST", b"/api/v3/order", b"", ALL, TS)
    assert signed.query == b""
    assert signed.body == ALL + b"&recvWindow=5000&timestamp=1499827319559&signature=" + \
        SIG_ASCII.encode()
    assert signed.headers == ((b"X-MBX-APIKEY", API_KEY.encode()),)
    assert signed.expires_ms == TS + 5000


def test_example_2_all_in_the_query(signer):
    signed = signer.sign("POST", b"/api/v3/order", ALL, None, TS)
    assert signed.body is None
    assert signed.query == ALL + b"&recvWindow=5000&timestamp=1499827319559&signature=" + \
        SIG_ASCII.encode()
    # An empty body (b"") is not a form body either: parameters go to the query.
    assert signer.sign("POST", b"/api/v3/order", ALL, b"", TS).query == signed.query


def test_example_3_mixed_query_and_body(signer):
    signed = signer.sign("POST", b"/api/v3/order",
                         b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC",
                         b"quantity=1&price=0.1", TS)
    # "There is no & between "GTC" and "quantity=1"": query and body concatenated as is.
    assert signed.query == b"symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC"
    assert signed.body == (b"quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559"
                           b"&signature=" + SIG_MIXED.encode())


def test_non_ascii_example_through_the_encoder(engine, signer):
    params = {k: v for k, v in NON_ASCII_PARAMS.items() if k not in ("recvWindow",
                                                                     "timestamp")}
    query = engine.encode_query(params)
    signed = signer.sign("POST", b"/api/v3/order", query, None, TS)
    assert signed.query == NON_ASCII_PAYLOAD.encode() + b"&signature=" + SIG_NON_ASCII.encode()
    assert engine.encode_query(NON_ASCII_PARAMS).decode() == NON_ASCII_PAYLOAD


def test_signer_options(signer):
    plain = HmacSigner(api_key="k", secret="s", recv_window=None, key_header="X-KEY",
                       timestamp_param="ts", signature_param="sig")
    signed = plain.sign("GET", b"/x", b"a=1", None, 7)
    assert signed.query.startswith(b"a=1&ts=7&sig=")
    assert signed.headers == ((b"X-KEY", b"k"),) and signed.expires_ms == 7 + 5000
    assert HmacSigner(api_key="k", secret="s", key_header="").sign(
        "GET", b"/", b"", None, 1).headers == ()
    body_signer = HmacSigner(api_key="k", secret="s", params_in="body")
    assert body_signer.sign("POST", b"/", b"a=1", None, 1).body.startswith(
        b"recvWindow=5000&timestamp=1&signature=")
    # A JSON body cannot carry form parameters: "auto" puts them in the query ...
    signed = signer.sign("POST", b"/", b"", b'{"a":1}', TS)
    assert signed.body == b'{"a":1}' and b"&signature=" in signed.query
    assert signed.query.split(b"&signature=")[1] == signer.signature(
        signed.query.split(b"&signature=")[0] + b'{"a":1}').encode()
    # ... and "body" refuses.
    with pytest.raises(ValueError, match="JSON"):
        body_signer.sign("POST", b"/", b"", b'[1]', 1)


@pytest.mark.parametrize("kwargs, error", [
    ({"api_key": "", "secret": "s"}, ValueError),
    ({"api_key": "has space", "secret": "s"}, ValueError),
    ({"api_key": "k\r\nX: y", "secret": "s"}, ValueError),
    ({"api_key": 5, "secret": "s"}, TypeError),
    ({"api_key": "k", "secret": ""}, ValueError),
    ({"api_key": "k", "secret": 12345}, TypeError),
    ({"api_key": "k", "secret": "sécret"}, ValueError),
    ({"api_key": "k", "secret": "s", "recv_window": 0}, ValueError),
    ({"api_key": "k", "secret": "s", "recv_window": 60001}, ValueError),
    ({"api_key": "k", "secret": "s", "recv_window": 5000.0}, ValueError),
    ({"api_key": "k", "secret": "s", "params_in": "header"}, ValueError),
    ({"api_key": "k", "secret": "s", "timestamp_param": "time stamp"}, ValueError),
    ({"api_key": "k", "secret": "s", "key_header": "X KEY"}, ValueError),
])
def test_hmac_signer_validation(kwargs, error):
    with pytest.raises(error):
        HmacSigner(**kwargs)


# --- secrets stay inside --------------------------------------------------------------------

SECRET_MARK = "s3cr3t-NEVER-SHOWN-Zq9"
KEY_MARK = "apikey-NEVER-SHOWN-Xk7"


def _assert_clean(text: str) -> None:
    assert SECRET_MARK not in text and KEY_MARK not in text, text


def test_secrets_not_in_repr_str_pickle_copy(caplog):
    s = HmacSigner(api_key=KEY_MARK, secret=SECRET_MARK)
    _assert_clean(repr(s))
    _assert_clean(str(s))
    _assert_clean(f"{s!r} {s}")
    assert "sha256" in repr(s)  # a fingerprint tells keys apart
    with pytest.raises(TypeError) as info:
        pickle.dumps(s)
    _assert_clean(str(info.value))
    assert copy.copy(s) is s and copy.deepcopy(s) is s
    assert copy.deepcopy({"auth": s})["auth"] is s
    assert not hasattr(s, "__dict__")  # nothing beyond the declared slots
    # Not even the object keeps the secret in a readable attribute.
    for name in type(s).__slots__ + type(s).__mro__[1].__slots__:
        value = getattr(s, name, None)
        if isinstance(value, (str, bytes)):
            assert SECRET_MARK.encode() not in (value if isinstance(value, bytes)
                                                else value.encode())
    signed = s.sign("POST", b"/api/v3/order", b"a=1", None, 1)
    _assert_clean(repr(signed))  # header values (the API key) are masked
    logging.getLogger("fastpool.test").warning("signed %r with %s", signed, s)
    _assert_clean(caplog.text)


def test_secrets_not_in_errors_or_warnings():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        s = HmacSigner(api_key=KEY_MARK, secret=SECRET_MARK)
        s.sign("POST", b"/", b"a=1", b"b=2", 1)
        s.sign("GET", b"/", b"", None, 2)
    assert caught == []
    for kwargs in ({"api_key": KEY_MARK + " x", "secret": SECRET_MARK},
                   {"api_key": KEY_MARK, "secret": SECRET_MARK, "recv_window": -1},
                   {"api_key": KEY_MARK, "secret": SECRET_MARK + "é"}):
        with pytest.raises((ValueError, TypeError)) as info:
            HmacSigner(**kwargs)
        _assert_clean(str(info.value))
        # three arguments: the one-argument form is 3.10+
        _assert_clean("".join(traceback.format_exception(type(info.value), info.value,
                                                         info.value.__traceback__)))
    with pytest.raises(ValueError) as info:
        HmacSigner(api_key=KEY_MARK, secret=SECRET_MARK, params_in="body").sign(
            "POST", b"/", b"", b"{}", 1)
    _assert_clean(str(info.value))


# --- Ed25519 --------------------------------------------------------------------------------

# RFC 8032 §7.1, TEST 2 (a one-byte message) and TEST 1 (empty).
RFC8032 = [
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", b"\x72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
     "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", b"",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555"
     "fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
]


@pytest.mark.parametrize("seed, message, expected", RFC8032)
def test_ed25519_rfc8032_vectors(seed, message, expected):
    signer = Ed25519Signer(api_key="k", private_key=bytes.fromhex(seed))
    assert base64.b64decode(signer.signature(message)).hex() == expected


def test_ed25519_binance_format_and_key_forms():
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    locked = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.BestAvailableEncryption(b"pw"))
    signers = [Ed25519Signer("k", key), Ed25519Signer("k", pem),
               Ed25519Signer("k", pem.decode()), Ed25519Signer("k", locked, password=b"pw")]
    query = b"symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=1&price=0.2"
    for s in signers:
        signed = s.sign("POST", b"/api/v3/order", query, None, 1668481559918)
        head, sig = signed.query.split(b"&signature=")
        assert head == query + b"&recvWindow=5000&timestamp=1668481559918"
        assert all(c not in sig for c in b"+/=")  # percent-encoded base64
        raw = base64.b64decode(unquote(sig.decode()))
        key.public_key().verify(raw, head)  # raises if the payload is not exactly that
        assert signed.headers == ((b"X-MBX-APIKEY", b"k"),)
    assert b"BEGIN PUBLIC KEY" in signers[0].public_key_pem()
    # Mixed: the signature covers query + body, and sits at the end of the body.
    signed = signers[0].sign("POST", b"/api/v3/order", b"symbol=X", b"quantity=1", 5)
    head, sig = signed.body.split(b"&signature=")
    key.public_key().verify(base64.b64decode(unquote(sig.decode())), b"symbol=X" + head)

    rsa_pem = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    with pytest.raises(ValueError, match="not an Ed25519"):
        Ed25519Signer("k", rsa_pem)
    with pytest.raises(ValueError) as info:
        Ed25519Signer("k", locked, password=b"wrong")
    assert b"pw" not in str(info.value).encode()
    with pytest.raises(ValueError):
        Ed25519Signer("k", b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    with pytest.raises(TypeError):
        Ed25519Signer("k", 12345)
    s = signers[1]
    _assert_clean(repr(s))
    assert pem.decode().splitlines()[1] not in repr(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert copy.deepcopy(s) is s


def test_ed25519_without_cryptography_says_what_to_install(monkeypatch):
    for name in list(sys.modules):
        if name == "cryptography" or name.startswith("cryptography."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "cryptography", None)  # import fails
    with pytest.raises(ImportError, match=r"fastpool\[ed25519\]"):
        Ed25519Signer("k", b"\x00" * 32)
    # HMAC needs nothing beyond the standard library.
    assert HmacSigner("k", "s").signature(b"x")


# --- encode_query / encode_form -------------------------------------------------------------


def test_encode_query_is_what_the_pool_puts_in_the_target(engine):
    builder = RequestBuilder(parse_origin("https://api.example.com"), engine)
    for params in ({"symbol": "BTCUSDT", "price": 0.1, "qty": 3, "flag": True, "x": None},
                   [("a", "x y"), ("a", "é/&=")], {"ids": [1, 2, 3]}, "already=encoded"):
        target = builder.target("/api/v3/order", params)
        assert target.split(b"?", 1)[1] == engine.encode_query(params)
    assert fastpool.encode_query({"a": "b c"}) == "a=b%20c"
    with pytest.raises(InvalidRequestError):
        encode_query("non-ascii=é")


def test_encode_form(engine):
    assert encode_form({"quantity": 1, "price": 0.1, "post": False, "note": None}) == \
        b"quantity=1&price=0.1&post=false&note="
    assert encode_form([("a", 1), ("a", "x y")]) == b"a=1&a=x%20y"
    assert encode_form("a=1&b=%20") == b"a=1&b=%20"
    assert encode_form(b"?raw") == b"?raw"  # bytes as given (a body has no "?" to strip)
    assert encode_form(None) == b""
    assert encode_form({"ids": (1, 2)}) == b"ids=1&ids=2"
    # The same rules as the query, on this engine too.
    assert engine.encode_query({"quantity": 1, "price": 0.1}) == encode_form(
        {"quantity": 1, "price": 0.1})
    with pytest.raises(InvalidRequestError):
        encode_form("é")
    with pytest.raises(InvalidRequestError):
        encode_form({"a": object()})
