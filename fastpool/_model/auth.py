"""Request signers: HMAC-SHA256 and Ed25519, with Binance's conventions as defaults.

A signer is called with the final method, path, encoded query and body and the timestamp
(the calibrated server time in ms) just before the request is written, and returns the
query and body to send plus the headers to add: the signature covers exactly those bytes.

Binance (developers.binance.com rest-api/request-security): "The signature payload of your
request is the query string concatenated without separator to the HTTP body"; the
``signature`` parameter comes last; HMAC signatures are hex (case-insensitive), Ed25519 ones
base64 and percent-encoded; the key goes in ``X-MBX-APIKEY``; ``timestamp`` and
``recvWindow`` (default 5000 ms, at most 60000) are parameters like the others.

Secrets never leave the object: not in repr/str, not in exception messages, not in a
pickle (pickling raises), not in a copy (copy/deepcopy return the same immutable object).
The HMAC signer does not even keep the secret: only the HMAC state keyed once
(``hmac.new`` at construction, ``.copy()`` per request instead of re-keying).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any, NamedTuple, Optional, Protocol, Union

MAX_RECV_WINDOW = 60_000  # ms: "The max cannot go beyond 60,000!"

SecretTypes = Union[str, bytes, bytearray]


class Signed(NamedTuple):
    """What a signer returns: the query and body to send (signature included) and the
    headers to add. ``expires_ms``: the server time after which the exchange refuses the
    request (timestamp + recvWindow), or None when the scheme has none: after it a
    MaybeSent order can be looked up knowing it will not execute any more."""

    query: bytes
    body: Optional[bytes]
    headers: tuple[tuple[bytes, bytes], ...]
    expires_ms: Optional[int]

    def __repr__(self) -> str:
        # Header values carry the API key: a logged Signed must not.
        names = ", ".join(n.decode("latin-1") for n, _ in self.headers)
        return (f"Signed(query={self.query!r}, body={self.body!r}, headers=[{names}], "
                f"expires_ms={self.expires_ms})")


class Signer(Protocol):
    """What ``auth=`` takes."""

    def sign(self, method: str, path: bytes, query: bytes, body: Optional[bytes],
             timestamp_ms: int) -> Signed:
        """The query and body to send for this request (signature included) and the headers
        to add, called just before the request is written with the final method, path,
        encoded query and body, and the server time in ms."""
        ...


def _fingerprint(api_key: bytes) -> str:
    # Tells two keys apart in a repr or a log without revealing either.
    return hashlib.sha256(api_key).hexdigest()[:8]


def _key_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, str):
        try:
            return value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"{what} must be ASCII") from None
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    raise TypeError(f"{what} must be str or bytes, got {type(value).__name__}")


def _param_name(value: Any, what: str) -> bytes:
    raw = _key_bytes(value, what)
    # Sent as is in the query: only RFC 3986 unreserved characters need no encoding.
    if not raw or not all(c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                          b"0123456789-._~" for c in raw):
        raise ValueError(f"{what} must be a non-empty name of unreserved characters")
    return raw


def _header_name(value: Any) -> bytes:
    raw = _key_bytes(value, "key_header")
    if not raw or not all(c in b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          b"abcdefghijklmnopqrstuvwxyz" for c in raw):
        raise ValueError("key_header must be a header field name (RFC 9110 token)")
    return raw


def _header_value(raw: bytes) -> bytes:
    if not raw or any(c < 0x21 or c > 0x7E for c in raw):
        # The message names the rule, never the value.
        raise ValueError("api_key must be non-empty visible ASCII (it is sent in a header)")
    return raw


class _ParamSigner:
    """The shared part: where timestamp/recvWindow/signature go, and what is signed.

    ``params_in``: "query", "body", or "auto" (the default): into the body when it is a
    non-empty form body (not JSON), else into the query, so that ``signature`` is the last
    parameter of query+body, as in Binance's three examples."""

    __slots__ = ("_key_header", "_api_key", "_fingerprint", "_recv", "_ts_name", "_rw_name",
                 "_sig_name", "_where", "recv_window")

    recv_window: Optional[int]  #: ms the exchange accepts a signed request for (None: unsent)

    def __init__(self, api_key: SecretTypes, recv_window: Optional[int], key_header: str,
                 timestamp_param: str, recv_window_param: str, signature_param: str,
                 params_in: str) -> None:
        key = _header_value(_key_bytes(api_key, "api_key"))
        if recv_window is not None:
            if isinstance(recv_window, bool) or not isinstance(recv_window, int) or not (
                    1 <= recv_window <= MAX_RECV_WINDOW):
                raise ValueError(f"recv_window must be milliseconds in [1, "
                                 f"{MAX_RECV_WINDOW}] or None, got {recv_window!r}")
        if params_in not in ("auto", "query", "body"):
            raise ValueError(f"params_in must be 'auto', 'query' or 'body', "
                             f"got {params_in!r}")
        self._key_header = ((_header_name(key_header), key),) if key_header else ()
        self._api_key = key
        self._fingerprint = _fingerprint(key)
        self.recv_window = recv_window
        self._ts_name = _param_name(timestamp_param, "timestamp_param")
        rw_name = _param_name(recv_window_param, "recv_window_param")
        self._rw_name = rw_name
        self._recv = (b"" if recv_window is None
                      else b"%s=%d&" % (rw_name, recv_window))
        self._sig_name = _param_name(signature_param, "signature_param")
        self._where = params_in

    def _signature(self, payload: bytes) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def sign(self, method: str, path: bytes, query: bytes, body: Optional[bytes],
             timestamp_ms: int) -> Signed:
        """The request with timestamp, recvWindow and signature added (see the class)."""
        params = b"%s%s=%d" % (self._recv, self._ts_name, timestamp_ms)
        where = self._where
        json_body = body is not None and body[:1] in (b"{", b"[")
        in_body = where == "body" or (where == "auto" and bool(body) and not json_body)
        if in_body:
            if json_body:
                raise ValueError("params_in='body' puts the signing parameters into a form "
                                 "body, and this body looks like JSON")
            body = body + b"&" + params if body else params
            payload = query + body
            body = body + b"&" + self._sig_name + b"=" + self._signature(payload)
        else:
            query = query + b"&" + params if query else params
            payload = query + body if body else query
            query = query + b"&" + self._sig_name + b"=" + self._signature(payload)
        rw = self.recv_window
        return Signed(query, body, self._key_header,
                      timestamp_ms + (5000 if rw is None else rw))

    # -- secrets stay inside ----------------------------------------------------------------

    def __reduce__(self) -> Any:
        raise TypeError(f"{type(self).__name__} holds a secret and cannot be pickled: "
                        f"build it in the process that uses it")

    def __copy__(self) -> _ParamSigner:
        return self  # immutable: a copy would only duplicate the key in memory

    def __deepcopy__(self, memo: dict[int, object]) -> _ParamSigner:
        return self

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(api_key=<sha256 {self._fingerprint}...>, "
                f"recv_window={self.recv_window})")

    __str__ = __repr__


class HmacSigner(_ParamSigner):
    """HMAC-SHA256 over query+body, hex, Binance's conventions by default.

    ``HmacSigner(api_key=..., secret=..., recv_window=5000)``; every name is configurable
    (``key_header``, ``timestamp_param``, ``recv_window_param``, ``signature_param``; a
    None/"" key_header sends no key header, recv_window=None sends no recvWindow)."""

    __slots__ = ("_mac",)

    def __init__(self, api_key: SecretTypes, secret: SecretTypes, recv_window: Optional[int]
                 = 5000, *, key_header: str = "X-MBX-APIKEY", timestamp_param: str =
                 "timestamp", recv_window_param: str = "recvWindow",
                 signature_param: str = "signature", params_in: str = "auto") -> None:
        super().__init__(api_key, recv_window, key_header, timestamp_param,
                         recv_window_param, signature_param, params_in)
        raw = _key_bytes(secret, "secret")
        if not raw:
            raise ValueError("secret must not be empty")
        # Keyed once: the inner and outer pads are hashed here, and each request copies
        # that state (hmac's .copy()) instead of re-deriving it from the key.
        self._mac = hmac.new(raw, digestmod=hashlib.sha256)
        del raw, secret

    def _signature(self, payload: bytes) -> bytes:
        mac = self._mac.copy()
        mac.update(payload)
        return mac.hexdigest().encode("ascii")

    def signature(self, payload: bytes) -> str:
        """The hex HMAC-SHA256 of payload (the value of the signature parameter)."""
        return self._signature(payload).decode("ascii")


_ED25519_MISSING = ("Ed25519Signer needs the 'cryptography' package: "
                    "pip install 'fastpool[ed25519]' (or pip install cryptography)")
# Base64 uses + / =, which must be percent-encoded in a query or form value.
_B64_ESCAPES = {ord("+"): "%2B", ord("/"): "%2F", ord("="): "%3D"}


class Ed25519Signer(_ParamSigner):
    """Ed25519 over query+body, base64 then percent-encoded (Binance's Ed25519 API keys).

    ``private_key``: a PEM (PKCS#8) private key as str/bytes, the raw 32-byte seed, or a
    cryptography Ed25519PrivateKey; ``password`` for an encrypted PEM. Needs the
    ``cryptography`` package (the ``ed25519`` extra)."""

    __slots__ = ("_key",)

    def __init__(self, api_key: SecretTypes, private_key: Any, recv_window: Optional[int]
                 = 5000, *, password: Optional[bytes] = None, key_header: str =
                 "X-MBX-APIKEY", timestamp_param: str = "timestamp", recv_window_param: str
                 = "recvWindow", signature_param: str = "signature",
                 params_in: str = "auto") -> None:
        super().__init__(api_key, recv_window, key_header, timestamp_param,
                         recv_window_param, signature_param, params_in)
        try:
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
            from cryptography.hazmat.primitives.serialization import load_pem_private_key
        except ImportError:
            raise ImportError(_ED25519_MISSING) from None
        if isinstance(private_key, Ed25519PrivateKey):
            key = private_key
        elif isinstance(private_key, (bytes, bytearray)) and len(private_key) == 32:
            key = Ed25519PrivateKey.from_private_bytes(bytes(private_key))
        elif isinstance(private_key, (str, bytes, bytearray)):
            pem = private_key.encode("ascii") if isinstance(private_key, str) else bytes(
                private_key)
            try:
                loaded = load_pem_private_key(pem, password=password)
            except (ValueError, TypeError):
                # cryptography's own messages do not echo the key, but say nothing that
                # could: only what is wrong.
                raise ValueError("private_key is not a readable PEM private key (or the "
                                 "password is wrong)") from None
            if not isinstance(loaded, Ed25519PrivateKey):
                raise ValueError(f"private_key is a {type(loaded).__name__}, not an Ed25519 "
                                 f"key")
            key = loaded
        else:
            raise TypeError(f"private_key must be PEM str/bytes, a 32-byte seed or an "
                            f"Ed25519PrivateKey, got {type(private_key).__name__}")
        self._key = key
        del private_key

    def _signature(self, payload: bytes) -> bytes:
        raw = base64.b64encode(self._key.sign(payload)).decode("ascii")
        return raw.translate(_B64_ESCAPES).encode("ascii")

    def signature(self, payload: bytes) -> str:
        """The base64 Ed25519 signature of payload (before percent-encoding)."""
        return base64.b64encode(self._key.sign(payload)).decode("ascii")

    def public_key_pem(self) -> bytes:
        """The public key to register with the exchange (PEM, SubjectPublicKeyInfo)."""
        from cryptography.hazmat.primitives import serialization

        return self._key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.
                                                   SubjectPublicKeyInfo)
