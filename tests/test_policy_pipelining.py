"""fastpool._policy.pipelining: what each request of a burst learns when the pipeline ends
early, and which are sent again (sans-IO, a fake clock)."""

from __future__ import annotations

import copy

import pytest

from fastpool._engine import _pure
from fastpool._model.errors import (
    MaybeSentError,
    NotSentError,
    PipelineAborted,
    PipelineNotSent,
    PoolTimeout,
    ReadTimeout,
    ServerDisconnected,
    StaleConnection,
    WriteError,
)
from fastpool._policy.pipelining import PIPELINE_METHODS, Burst, reached, unanswered
from fastpool._policy.stats import Stats

OFFSETS = [0, 100, 200, 300]


def test_only_get_and_head():
    assert PIPELINE_METHODS == {"GET", "HEAD"}


@pytest.mark.parametrize("sent, written, tls, expect", [
    (0, False, False, [False, False, False, False]),
    (0, False, True, [False, False, False, False]),
    (150, False, False, [True, True, False, False]),
    (100, False, False, [True, False, False, False]),
    (1, False, True, [True, True, True, True]),      # wire bytes: every request may be out
    (400, True, False, [True, True, True, True]),
])
def test_reached(sent, written, tls, expect):
    assert [reached(o, sent=sent, written=written, tls=tls) for o in OFFSETS] == expect


def test_unanswered_after_the_write():
    error = ServerDisconnected("closed")
    out = unanswered(error, OFFSETS, 1, sent=400, written=True, tls=False)
    assert out[0] is error and len(out) == 3
    assert all(isinstance(e, PipelineAborted) and e.__cause__ is error for e in out[1:])


def test_unanswered_during_a_partial_write():
    error = WriteError("reset")
    out = unanswered(error, OFFSETS, 0, sent=150, written=False, tls=False)
    assert [type(e) for e in out] == [WriteError, PipelineAborted, PipelineNotSent,
                                      PipelineNotSent]
    assert isinstance(out[2], NotSentError) and isinstance(out[1], MaybeSentError)


def test_nothing_written_is_not_sent_for_all():
    error = StaleConnection("closed while idle")
    out = unanswered(error, OFFSETS, 0, sent=0, written=False, tls=True)
    assert all(isinstance(e, NotSentError) for e in out)


def _stats() -> Stats:
    return Stats(_pure.Histogram())


def test_maybe_sent_items_retried_within_retries_then_given_up():
    stats = _stats()
    burst = Burst(["GET"] * 4, allowed=1, deadline=0)
    error = ReadTimeout("slow")
    errors = unanswered(error, OFFSETS, 2, sent=400, written=True, tls=False)
    burst.attempted([0, 1, 2, 3], ["r0", "r1"], errors, fresh=False, stats=stats,
                    closed=False, now=10)
    assert burst.results[:2] == ["r0", "r1"] and burst.todo == [2, 3]
    assert stats.retries == 2
    errors = unanswered(ServerDisconnected("again"), [0, 100], 0, sent=200, written=True,
                        tls=False)
    burst.attempted([2, 3], [], errors, fresh=True, stats=stats, closed=False, now=20)
    assert burst.todo == []
    assert isinstance(burst.results[2], ServerDisconnected)
    assert isinstance(burst.results[3], PipelineAborted)
    assert stats.errors == 2 and stats.retries == 2


def test_no_retries_no_resend_but_not_sent_on_an_idle_connection_always():
    stats = _stats()
    burst = Burst(["GET", "HEAD"], allowed=0, deadline=0)
    errors = unanswered(StaleConnection("idle close"), [0, 50], 0, sent=0, written=False,
                        tls=False)
    burst.attempted([0, 1], [], errors, fresh=False, stats=stats, closed=False, now=1)
    assert burst.todo == [0, 1] and stats.retries == 2
    errors = unanswered(ReadTimeout("slow"), [0, 50], 0, sent=80, written=True, tls=False)
    burst.attempted([0, 1], [], errors, fresh=True, stats=stats, closed=False, now=2)
    assert burst.todo == [] and stats.errors == 2


def test_deadline_stops_the_retries():
    stats = _stats()
    burst = Burst(["GET"], allowed=5, deadline=100)
    burst.attempted([0], [], [ReadTimeout("slow")], fresh=False, stats=stats, closed=False,
                    now=100)
    assert burst.todo == [] and isinstance(burst.results[0], ReadTimeout)


def test_give_up_keeps_the_worst_case_and_copies():
    stats = _stats()
    burst = Burst(["GET"] * 3, allowed=1, deadline=0)
    errors = unanswered(ReadTimeout("slow"), [0, 10, 20], 0, sent=30, written=True, tls=False)
    burst.attempted([0, 1, 2], [], errors, fresh=False, stats=stats, closed=False, now=1)
    assert burst.todo == [0, 1, 2]
    burst.give_up(PoolTimeout("no connection"), stats, copy.copy)
    # each may have been processed by the first attempt: that MaybeSent error is the answer
    assert [type(r) for r in burst.results] == [ReadTimeout, PipelineAborted, PipelineAborted]
    assert all(isinstance(r.__cause__, PoolTimeout) for r in burst.results)
    assert len({id(r.__cause__) for r in burst.results}) == 3


def test_refused_items_leave_the_todo_list():
    burst = Burst(["GET"] * 3, allowed=0, deadline=0)
    burst.refuse(2, PoolTimeout("x"))
    assert burst.todo == [0, 1] and isinstance(burst.results[2], PoolTimeout)
