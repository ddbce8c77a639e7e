"""The pool's origin (one scheme, host and port) and request targets built against it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Tuple, Union
from urllib.parse import quote, urlsplit

from .errors import InvalidRequestError

#: Bytes allowed verbatim in a request target: visible ASCII (fp_check_target's rule).
_VISIBLE = frozenset(range(0x21, 0x7F))
#: What quote() may leave alone in a path: RFC 3986 pchar, '/', '?', and existing escapes.
_PATH_SAFE = "/%:@!$&'()*+,;=?~-._"

ParamValue = Union[str, int, float, bool, None]
ParamsTypes = Union[Mapping[str, Any], Sequence[Tuple[str, Any]], str, bytes, None]


class InvalidURL(InvalidRequestError):
    """The URL cannot be used: scheme, host, port, or a different origin than the pool's."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="url_invalid")


@dataclass(frozen=True)
class Origin:
    scheme: str      # "http" or "https"
    host: str        # ASCII: IDNA-encoded name or IP literal without brackets
    port: int
    base_path: str   # "" or a prefix like "/api" (no trailing slash)

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    @property
    def is_ip(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
            return True
        except ValueError:
            return False

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.tls else 80
        return host if self.port == default else f"{host}:{self.port}"

    @property
    def host_header(self) -> bytes:
        return self.netloc.encode("ascii")

    def url(self, target: bytes) -> str:
        return f"{self.scheme}://{self.netloc}{target.decode('ascii')}"


def parse_origin(url: str) -> Origin:
    """The origin of the pool's base URL; InvalidURL with the reason when it cannot be used."""
    if not isinstance(url, str):
        raise InvalidURL(f"the URL must be a str, got {type(url).__name__}")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(f"invalid URL {url!r}: the scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL(f"invalid URL {url!r}: credentials in the URL are not supported; "
                         "pass an Authorization header")
    if parts.query or parts.fragment:
        raise InvalidURL(f"invalid URL {url!r}: the base URL cannot carry a query or fragment")
    host = parts.hostname or ""
    if not host:
        raise InvalidURL(f"invalid URL {url!r}: no host")
    try:
        host = ipaddress.ip_address(host).compressed
    except ValueError:
        try:
            host = host.encode("idna").decode("ascii").lower()
        except UnicodeError as exc:
            raise InvalidURL(f"invalid URL {url!r}: host {host!r} is not a valid name "
                             f"({exc})") from None
        if any(c in host for c in " /\\%@"):
            raise InvalidURL(f"invalid URL {url!r}: host {host!r} is not a valid name")
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 0 < port < 65536:
        raise InvalidURL(f"invalid URL {url!r}: port {port} out of range")
    base_path = parts.path.rstrip("/")
    return Origin(scheme, host, port, _encode_path(base_path).decode("ascii") if base_path else "")


def _encode_path(path: str) -> bytes:
    raw = path.encode("utf-8")
    if _VISIBLE.issuperset(raw):
        return raw
    return quote(raw, safe=_PATH_SAFE).encode("ascii")


def build_target(origin: Origin, url: str) -> bytes:
    """The request target (origin-form, RFC 9112 §3.2.1) for url relative to the origin."""
    if url.startswith(("http://", "https://")):
        other = urlsplit(url)
        try:
            same = (other.scheme == origin.scheme and (other.hostname or "").lower() == origin.host
                    and (other.port or (443 if other.scheme == "https" else 80)) == origin.port)
        except ValueError:
            same = False
        if not same:
            raise InvalidURL(f"{url!r} is not on this pool's origin {origin.scheme}://{origin.netloc}")
        # An absolute URL names the whole target: the base path is for relative URLs only.
        return _encode_path((other.path or "/") + (f"?{other.query}" if other.query else ""))
    elif not url.startswith("/"):
        url = "/" + url
    if "#" in url:
        url = url.split("#", 1)[0]
    return _encode_path(origin.base_path + url) if origin.base_path else _encode_path(url)
