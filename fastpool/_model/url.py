"""The pool's origin (one scheme, host and port) and request targets built against it.

What ``pool.get(url)`` accepts, and why (a request can only ever go to the pool's origin:
its connections are open to that host and no other, and the Host header is the pool's):

* a path, "/api/v3/order" or "api/v3/order", joined to the pool's base path; spaces and
  non-ASCII characters are percent-encoded (as httpx does); a fragment is dropped;
* an absolute URL on the pool's own origin, "https://api.example.com/api/v3/order" (the
  scheme and host in any case, the port explicit or default): it names the whole target,
  the base path is not prepended;
* nothing else, refused with InvalidURL (NotSent) saying why: an absolute URL on another
  origin or with another scheme, "http:" or "https:" without "//" (a typo, or an attempt),
  a network-path reference "//host/path" (it names another host: RFC 3986 §4.2),
  credentials "user:pass@" in the URL, and any control character (CR, LF, NUL, TAB, DEL,
  ...) anywhere in it: never sent and never silently dropped (urlsplit() drops CR, LF and
  TAB, which would turn a header-injection attempt into a different, valid request).

Messages never show credentials or secret query values (fastpool._model.redact).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence, Tuple, Union
from urllib.parse import quote, urlsplit

from .errors import InvalidRequestError
from .redact import redact_target, redact_url

#: Bytes allowed verbatim in a request target: visible ASCII (fp_check_target's rule).
_VISIBLE = frozenset(range(0x21, 0x7F))
#: What quote() may leave alone in a path: RFC 3986 pchar, '/', '?', and existing escapes.
_PATH_SAFE = "/%:@!$&'()*+,;=?~-._"

#: C0 controls and DEL: refused anywhere in a URL (RFC 3986 §2 has no place for them).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: RFC 3986 §3.1 scheme followed by ":".
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")

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

    def url(self, target: bytes, redact: frozenset[str] = frozenset()) -> str:
        """The absolute URL of a target on this origin; the values of the query parameters
        named in ``redact`` (lower-case) replaced (fastpool._model.redact)."""
        path = redact_target(target, redact) if redact else target.decode("ascii", "replace")
        return f"{self.scheme}://{self.netloc}{path}"


def _refuse_controls(url: str, shown: str) -> None:
    control = _CONTROL.search(url)
    if control is not None:
        raise InvalidURL(f"invalid URL {shown!r}: control character {control.group()!r} at "
                         f"position {control.start()} (CR, LF, NUL, TAB and other controls "
                         "are neither sent nor dropped)")


def _why(exc: ValueError) -> str:
    """urlsplit's complaint, without the text it quotes (which can be part of a password:
    "https://user:pa/ss@host" has the port "pa")."""
    text = str(exc)
    if "'" not in text and '"' not in text:
        return text  # "Port out of range 0-65535", "Invalid IPv6 URL"
    if "Port" in text or "port" in text:
        return "the port is not a number"
    return "the host part cannot be parsed"


def _normal_host(host: str) -> str:
    """A host as Origin keeps it: an IP literal compressed, a name IDNA-encoded, lower-case;
    ValueError (with the reason) when it is neither."""
    try:
        return ipaddress.ip_address(host).compressed
    except ValueError:
        pass
    try:
        name = host.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(f"host {host!r} is not a valid name ({exc})") from None
    if any(c in name for c in " /\\%@"):
        raise ValueError(f"host {host!r} is not a valid name")
    return name


def parse_origin(url: str) -> Origin:
    """The origin of the pool's base URL; InvalidURL with the reason when it cannot be used.
    Surrounding whitespace is ignored (a URL read from a file); credentials, a query, a
    fragment and control characters are refused."""
    if not isinstance(url, str):
        raise InvalidURL(f"the URL must be a str, got {type(url).__name__}")
    url = url.strip()
    shown = redact_url(url)
    _refuse_controls(url, shown)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {shown!r}: {_why(exc)}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise InvalidURL(f"invalid URL {shown!r}: the scheme must be http or https")
    if parts.username is not None or parts.password is not None:
        raise InvalidURL(f"invalid URL {shown!r}: credentials in the URL are not supported; "
                         "pass an Authorization header")
    if parts.query or parts.fragment:
        raise InvalidURL(f"invalid URL {shown!r}: the base URL cannot carry a query or fragment")
    host = parts.hostname or ""
    if not host:
        raise InvalidURL(f"invalid URL {shown!r}: no host")
    try:
        host = _normal_host(host)
    except ValueError as exc:
        raise InvalidURL(f"invalid URL {shown!r}: {exc}") from None
    if port is None:
        port = 443 if scheme == "https" else 80
    if not 0 < port < 65536:
        raise InvalidURL(f"invalid URL {shown!r}: port {port} out of range")
    base_path = parts.path.rstrip("/")
    return Origin(scheme, host, port, _encode_path(base_path).decode("ascii") if base_path else "")


def _encode_path(path: str) -> bytes:
    raw = path.encode("utf-8")
    if _VISIBLE.issuperset(raw):
        return raw
    return quote(raw, safe=_PATH_SAFE).encode("ascii")


def build_target(origin: Origin, url: str) -> bytes:
    """The request target (origin-form, RFC 9112 §3.2.1) for url relative to the origin, or
    InvalidURL (NotSent) for a URL that names another origin or cannot be sent as it is
    (see the module docstring)."""
    if not isinstance(url, str):
        raise InvalidURL(f"the URL must be a str, got {type(url).__name__}")
    if _CONTROL.search(url) is not None:
        _refuse_controls(url, redact_url(url))
    if url.startswith("//"):
        raise InvalidURL(f"{redact_url(url)!r} is a network-path reference (it names a host, "
                         "RFC 3986 §4.2): pass a path, or an absolute URL on this pool's origin "
                         f"{origin.scheme}://{origin.netloc}")
    scheme = _SCHEME.match(url)
    if scheme is not None:
        name = scheme.group()[:-1].lower()
        if url.startswith("//", scheme.end()):
            return _absolute_target(origin, url, name)
        if name in ("http", "https"):
            raise InvalidURL(f"{redact_url(url)!r} is neither a path nor an absolute URL "
                             f"({name}: without //)")
        # Otherwise a relative path with a colon in its first segment ("v1/orders:cancel").
    if not url.startswith("/"):
        url = "/" + url
    if "#" in url:
        url = url.split("#", 1)[0]
    return _encode_path(origin.base_path + url) if origin.base_path else _encode_path(url)


def _absolute_target(origin: Origin, url: str, scheme: str) -> bytes:
    shown = redact_url(url)
    elsewhere = f"{shown!r} is not on this pool's origin {origin.scheme}://{origin.netloc}"
    if scheme not in ("http", "https"):
        raise InvalidURL(f"{elsewhere}: the scheme must be http or https")
    try:
        other = urlsplit(url)
        port = other.port
    except ValueError as exc:
        raise InvalidURL(f"{elsewhere}: {_why(exc)}") from None
    if other.username is not None or other.password is not None:
        raise InvalidURL(f"{shown!r}: credentials in the URL are not supported; pass an "
                         "Authorization header")
    try:
        host = _normal_host(other.hostname or "")
    except ValueError:
        raise InvalidURL(elsewhere) from None
    if port is None:
        port = 443 if scheme == "https" else 80
    if (scheme, host, port) != (origin.scheme, origin.host, origin.port):
        raise InvalidURL(elsewhere)
    # An absolute URL names the whole target: the base path is for relative URLs only.
    return _encode_path((other.path or "/") + (f"?{other.query}" if other.query else ""))
