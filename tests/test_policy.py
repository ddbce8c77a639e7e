"""The retry policy shared by Pool and AsyncPool (fastpool._policy.attempts), on its own."""

from __future__ import annotations

import pytest

from fastpool._engine._pure._hist import Histogram
from fastpool._model.errors import (
    ConnectError,
    PoolTimeout,
    ProtocolError,
    ReadTimeout,
    ServerDisconnected,
    StaleConnection,
)
from fastpool._policy.attempts import Attempts, should_retry
from fastpool._policy.stats import Stats


def stats() -> Stats:
    return Stats(Histogram())


@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("retries", [0, 1, 5])
def test_maybe_sent_non_idempotent_is_never_retried(method, retries):
    for exc in (ReadTimeout("t"), ServerDisconnected("d", code="no_response"),
                ProtocolError("p", code="status")):
        assert not should_retry(exc, fresh=False, attempt=0, method=method, retries=retries)


def test_maybe_sent_idempotent_only_as_allowed():
    exc = ReadTimeout("t")
    assert not should_retry(exc, fresh=False, attempt=0, method="GET", retries=0)
    assert should_retry(exc, fresh=False, attempt=0, method="GET", retries=2)
    assert should_retry(exc, fresh=False, attempt=1, method="DELETE", retries=2)
    assert not should_retry(exc, fresh=False, attempt=2, method="GET", retries=2)


def test_not_sent_retried_on_reused_connections_only():
    exc = StaleConnection("s")
    assert should_retry(exc, fresh=False, attempt=0, method="POST", retries=0)
    assert not should_retry(exc, fresh=True, attempt=0, method="POST", retries=0)


def test_a_later_not_sent_failure_surfaces_the_earlier_maybe_sent():
    s = stats()
    a = Attempts("DELETE", 1, deadline=0)
    first = ServerDisconnected("closed after the request", code="no_response")
    assert a.after(first, fresh=False, stats=s, closed=False, now=1) is None  # retried
    later = PoolTimeout("no connection")
    error = a.give_up(later, s)
    assert error is first and error.__cause__ is later  # may have been sent: still MaybeSent
    assert (s.retries, s.errors, s.timeouts) == (1, 1, 1)


def test_not_sent_throughout_stays_not_sent():
    s = stats()
    a = Attempts("POST", 0, deadline=0)
    assert a.after(StaleConnection("s"), fresh=False, stats=s, closed=False, now=1) is None
    final = ConnectError("refused")
    assert a.after(final, fresh=True, stats=s, closed=False, now=2) is final


def test_no_retry_past_the_deadline_or_after_close():
    s = stats()
    a = Attempts("GET", 3, deadline=100)
    exc = ReadTimeout("t")
    assert a.after(exc, fresh=False, stats=s, closed=False, now=100) is exc
    b = Attempts("GET", 3, deadline=0)
    assert b.after(StaleConnection("s"), fresh=False, stats=s, closed=True, now=1) is not None


def test_interruptions_are_returned_untouched():
    s = stats()
    a = Attempts("GET", 3, deadline=0)
    exc = KeyboardInterrupt()
    assert a.after(exc, fresh=False, stats=s, closed=False, now=1) is exc
    assert s.errors == 0
