"""fastpool.Timeout: phases, validation, and the cache behind per-request numbers."""

from __future__ import annotations

import math

import pytest

import fastpool
from fastpool import Timeout


def test_default_and_overrides():
    t = Timeout(5.0, connect=1.0, total=3)
    assert (t.connect, t.write, t.read, t.pool, t.total) == (1.0, 5.0, 5.0, 5.0, 3.0)
    assert (t.connect_ns, t.read_ns, t.total_ns) == (10**9, 5 * 10**9, 3 * 10**9)
    none = Timeout(None)
    assert none.read_ns == -1 and none.total_ns == 0
    assert Timeout(t) == t and hash(Timeout(t)) == hash(t)


@pytest.mark.parametrize("bad", [-1, -0.5, True, "1", math.nan, math.inf, [1]])
def test_invalid_seconds_are_value_errors(bad):
    with pytest.raises(ValueError):
        Timeout(bad)
    with pytest.raises(ValueError):
        Timeout.of(bad)


def test_missing_phases_without_a_default():
    with pytest.raises(ValueError, match="missing: write, read, pool"):
        Timeout(connect=1.0)


def test_of_numbers_is_cached_and_keeps_types_apart():
    assert Timeout.of(0.5) is Timeout.of(0.5)
    assert Timeout.of(None) is Timeout.of(None) and Timeout.of(None).read is None
    assert Timeout.of(1).read == 1.0
    with pytest.raises(ValueError):
        Timeout.of(True)  # equal to 1 as a dict key, but not a number of seconds
    t = Timeout(2.0)
    assert Timeout.of(t) is t
    assert isinstance(Timeout.of(7), fastpool.Timeout)
