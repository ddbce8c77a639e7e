"""Retry-After parsing and the pool-wide cooldown after 429 / 418 (fake clock)."""

from __future__ import annotations

import email.utils

import pytest

from fastpool._policy.cooldown import (
    DEFAULT_ORDER_429,
    DEFAULTS,
    MAX_COOLDOWN,
    Cooldown,
    banned_until_ms,
    parse_retry_after,
)

S = 1_000_000_000
WALL = 1_700_000_000.0  # a wall clock, Unix seconds
T0 = 5_000 * S  # a monotonic clock


@pytest.mark.parametrize("value, expected", [
    ("120", 120.0),
    ("0", 0.0),
    (" 7 ", 7.0),
    (b"30", 30.0),
    ("1.5", 1.5),  # not in the grammar, sent by some servers: accepted
    ("0000000000000000000000012", 12.0),
    ("99999999999999999999999", MAX_COOLDOWN),  # huge: clamped, still "very long"
    ("1e400", MAX_COOLDOWN),
    ("inf", MAX_COOLDOWN),
    ("-5", None),  # negative: unusable, the status's default applies
    ("-0.5", None),
    ("-inf", None),
    ("nan", None),
    ("", None),
    ("   ", None),
    (None, None),
    ("soon", None),
    ("12 seconds", None),
    ("१२", None),  # non-ASCII digits are not DIGIT
    ("9" * 100, None),  # longer than any real value: not parsed
])
def test_parse_retry_after_delay_seconds_and_garbage(value, expected):
    assert parse_retry_after(value, WALL) == expected


def test_parse_retry_after_http_dates():
    future = email.utils.formatdate(WALL + 90, usegmt=True)  # IMF-fixdate
    assert future.endswith("GMT")
    assert parse_retry_after(future, WALL) == pytest.approx(90.0)
    past = email.utils.formatdate(WALL - 3600, usegmt=True)
    assert parse_retry_after(past, WALL) == 0.0
    far = email.utils.formatdate(WALL + 30 * 86400, usegmt=True)
    assert parse_retry_after(far, WALL) == MAX_COOLDOWN
    # The obsolete forms RFC 9110 §5.6.7 says recipients must accept.
    base = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110's example
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", base - 10) == 10.0
    assert parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", base - 10) == 10.0
    assert parse_retry_after("Sun Nov  6 08:49:37 1994", base - 10) == 10.0
    assert parse_retry_after("Sun, 99 Nov 1994 08:49:37 GMT", base) is None
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 XYZ", base - 10) == 10.0


def test_banned_until_from_binance_body():
    body = (b'{"code":-1003,"msg":"Way too much request weight used; IP banned until '
            b'1620286253180. Please use WebSocket Streams for live updates to avoid bans."}')
    assert banned_until_ms(body) == 1620286253180
    assert banned_until_ms(b'{"code":-1003,"msg":"Too much request weight used"}') is None
    assert banned_until_ms(None) is None and banned_until_ms(b"") is None


def test_429_with_retry_after_cools_the_whole_pool():
    cd = Cooldown()
    assert cd.check(T0) == 0
    assert cd.on_response(T0, 200, None, WALL) is None
    assert cd.on_response(T0, 429, "12", WALL) == 12.0
    assert cd.check(T0) == 12 * S
    assert cd.check(T0 + 5 * S, order=True) == 7 * S
    assert cd.check(T0 + 12 * S) == 0
    info = cd.info(T0 + 2 * S)
    assert info.status == 429 and info.remaining == 10.0 and not info.orders_only
    assert cd.count == 1


def test_418_ban_and_its_fallbacks():
    cd = Cooldown()
    assert cd.on_response(T0, 418, "7200", WALL) == 7200.0
    cd.clear()
    assert cd.check(T0) == 0
    # No header: Binance's -1003 message says when the ban ends (server clock).
    body = b'{"code":-1003,"msg":"Way too much request weight used; IP banned until %d."}'
    until_ms = int(WALL * 1000) + 300_000
    assert cd.on_response(T0, 418, None, WALL, body=body % until_ms) == 300.0
    # ... on the calibrated server clock when given.
    cd.clear()
    assert cd.on_response(T0, 418, None, WALL, body=body % until_ms,
                          server_now_ms=WALL * 1000 + 100_000) == 200.0
    cd.clear()
    assert cd.on_response(T0, 418, "garbage", WALL) == DEFAULTS[418] == 120.0
    assert cd.check(T0) == 120 * S


def test_429_without_retry_after_defaults():
    cd = Cooldown()
    assert cd.on_response(T0, 429, None, WALL) == DEFAULTS[429] == 60.0
    cd.clear()
    # On an order request: the order count, counted per 10 s; other requests go on.
    assert cd.on_response(T0, 429, None, WALL, order=True) == DEFAULT_ORDER_429 == 10.0
    assert cd.check(T0) == 0
    assert cd.check(T0, order=True) == 10 * S
    assert cd.info(T0).orders_only
    cd.clear()
    # Binance's -1015 TOO_MANY_ORDERS body makes it order-only even with a header.
    body = b'{"code":-1015,"msg":"Too many new orders; current limit is 50 orders per 10 SECOND."}'
    assert cd.on_response(T0, 429, "3", WALL, body=body) == 3.0
    assert cd.check(T0) == 0 and cd.check(T0, order=True) == 3 * S
    assert cd.on_response(T0, 429, None, WALL, body=body) == 10.0


def test_a_shorter_cooldown_never_shortens_a_longer_one():
    cd = Cooldown()
    cd.on_response(T0, 418, "600", WALL)
    cd.on_response(T0 + S, 429, "5", WALL)
    assert cd.check(T0 + 10 * S) == 590 * S
    assert cd.info(T0 + 10 * S).status == 418
    cd.on_response(T0 + 20 * S, 429, "1000", WALL)
    assert cd.check(T0 + 20 * S) == 1000 * S


def test_configurable_statuses_and_validation():
    cd = Cooldown({403: 600.0})  # Bybit: "403, access too frequent": wait 10 minutes
    assert cd.on_response(T0, 403, None, WALL) == 600.0
    assert Cooldown().on_response(T0, 403, None, WALL) is None  # Binance 403 is the WAF
    with pytest.raises(ValueError):
        Cooldown({99: 1.0})
    with pytest.raises(ValueError):
        Cooldown({429: -1.0})
    with pytest.raises(ValueError):
        Cooldown({429: MAX_COOLDOWN * 2})
    with pytest.raises(ValueError):
        Cooldown(order_default=-1)
