"""Secrets kept out of reprs and messages: the values of secret query parameters, and URL
credentials.

A signed request carries its signature (and, on some exchanges, its API key or a listen
key) in the query string. Everything fastpool shows of a request — ``response.url``,
``repr(response.request)``, the message of ``raise_for_status()``, InvalidURL messages — goes
through here, so a strategy that logs them does not log a replayable signature. The values
of the parameters named in ``DEFAULT_REDACT`` (compared case-insensitively, after
percent-decoding the name) become ``[redacted]``; a pool can name more (``redact_names``).
What is sent is never changed: ``response.request.target`` is the target exactly as sent.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional
from urllib.parse import unquote

#: What a secret value is shown as.
REDACTED = "[redacted]"

#: Query parameters whose values are never shown, lower-case. Signatures (Binance, Bybit,
#: MEXC, KuCoin: "signature", "sign"), API keys and key ids passed as parameters, secrets,
#: passphrases (OKX, KuCoin, Coinbase), session and listen keys, bearer tokens.
DEFAULT_REDACT: frozenset[str] = frozenset({
    "signature", "sig", "sign",
    "apikey", "api_key", "api-key", "x-mbx-apikey", "key", "accesskey", "accesskeyid",
    "secret", "secretkey", "secret_key", "api_secret", "apisecret",
    "passphrase", "password", "passwd",
    "token", "access_token", "refresh_token", "auth", "authorization", "listenkey",
})

#: scheme "//" at the start of a URL: what follows, up to the path, is the authority.
_AUTHORITY = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:[\\/]{2}|[\\/]{2}")


def redact_names(extra: Optional[Iterable[str]] = None) -> frozenset[str]:
    """DEFAULT_REDACT plus the names in ``extra`` (any case): what a pool's ``redact=``
    parameter becomes. A str is one name, not a sequence of letters."""
    if extra is None:
        return DEFAULT_REDACT
    if isinstance(extra, str):
        extra = (extra,)
    names = set(DEFAULT_REDACT)
    for name in extra:
        if not isinstance(name, str) or not name:
            raise ValueError(f"redact: parameter names must be non-empty str, got {name!r}")
        names.add(name.lower())
    return frozenset(names)


def _redact_pairs(text: str, names: frozenset[str]) -> str:
    parts = text.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, value = part.partition("=")
        if not eq or not value:
            continue
        key = unquote(name) if "%" in name else name
        if key.lower() in names:
            parts[i] = f"{name}={REDACTED}"
            changed = True
    return "&".join(parts) if changed else text


def redact_query(query: str, names: frozenset[str] = DEFAULT_REDACT) -> str:
    """A query string (without "?") with the values of the named parameters redacted."""
    return _redact_pairs(query, names) if names and "=" in query else query


def redact_target(target: bytes, names: frozenset[str] = DEFAULT_REDACT) -> str:
    """A request target as text, the values of the named query parameters redacted."""
    text = target.decode("ascii", "replace")  # the writer sends visible ASCII only
    path, sep, query = text.partition("?")
    if not sep or not names:
        return text
    return f"{path}?{redact_query(query, names)}"


def redact_url(url: str, names: frozenset[str] = DEFAULT_REDACT) -> str:
    """A URL for a message: credentials ("user:password@") and the values of the named query
    (and fragment) parameters redacted. Meant for URLs that may be malformed, so it parses
    nothing: anything up to the last "@" before the query is taken as credentials."""
    match = _AUTHORITY.match(url)
    if match:
        start = match.end()
        stop = len(url)
        for mark in "?#":
            found = url.find(mark, start)
            if found >= 0:
                stop = min(stop, found)
        at = url.rfind("@", start, stop)
        if at >= 0:
            url = f"{url[:start]}{REDACTED}{url[at:]}"
    base, hash_, fragment = url.partition("#")
    path, sep, query = base.partition("?")
    if sep:
        base = f"{path}?{redact_query(query, names)}"
    if hash_:
        return f"{base}#{redact_query(fragment, names)}"
    return base
