"""fastpool._drivers.connect.open_all, the initial fill of both pools, with fake connections
(no sockets): which connection an opener checks for session tickets before each open, what
happens to one that turns out stale, and how a failure or an interrupt stops the rest and
closes what was opened."""

from __future__ import annotations

import threading

import pytest

from fastpool._drivers.connect import open_all
from fastpool._model.errors import ConnectError


class FakeConn:
    def __init__(self, i: int, log: list, stale: bool = False) -> None:
        self.i, self.log, self.is_stale, self.closed = i, log, stale, False

    def stale(self) -> bool:
        self.log.append(("stale", self.i))
        return self.is_stale

    def close(self) -> None:
        self.closed = True


def _opener(log: list, stale_once=(), fail_at=None):
    """open_one(i): logs ("open", i); connections in stale_once come out stale the first
    time they are opened; fail_at raises ConnectError."""
    seen: set = set()
    lock = threading.Lock()

    def open_one(i: int) -> FakeConn:
        with lock:
            log.append(("open", i))
            first = i not in seen
            seen.add(i)
        if i == fail_at:
            raise ConnectError(f"refused {i}")
        return FakeConn(i, log, stale=first and i in stale_once)

    return open_one


def test_an_opener_checks_the_connection_two_back_before_each_open():
    log: list = []
    results = open_all(_opener(log), 5, threads=1)
    assert [r.i for r in results] == [0, 1, 2, 3, 4]
    assert log == [("open", 0), ("open", 1), ("stale", 0), ("open", 2), ("stale", 1),
                   ("open", 3), ("stale", 2), ("open", 4)]


def test_plain_pools_check_nothing():
    log: list = []
    open_all(_opener(log), 5, threads=1, harvest=False)
    assert all(what == "open" for what, _ in log)


def test_a_connection_found_stale_is_closed_and_opened_again():
    log: list = []
    results = open_all(_opener(log, stale_once={1}), 5, threads=1)
    assert [r.i for r in results] == [0, 1, 2, 3, 4]
    assert not any(r.closed for r in results)  # the stale one was replaced
    assert log.count(("open", 1)) == 2
    assert log.index(("stale", 1)) < log.index(("open", 1), 2) < log.index(("open", 3))


def _opener_keeping(log: list, made: list, fail_at=None, fail_with=ConnectError):
    """As _opener, keeping every connection made in ``made``."""
    inner = _opener(log)

    def open_one(i: int) -> FakeConn:
        if i == fail_at:
            log.append(("open", i))
            raise fail_with(f"refused {i}")
        conn = inner(i)
        made.append(conn)
        return conn

    return open_one


def test_a_failure_stops_the_openers_closes_what_they_opened_and_is_raised():
    log: list = []
    made: list = []
    with pytest.raises(ConnectError, match="refused 2"):
        open_all(_opener_keeping(log, made, fail_at=2), 6, threads=1)
    assert [c.i for c in made] == [0, 1] and all(c.closed for c in made)
    assert ("open", 3) not in log


def test_an_interrupt_wins_over_another_openers_error():
    """Ctrl-C during a fill must not be swallowed by a connect error of another opener
    (which has the lower index)."""
    from fastpool._drivers.connect import _first_failure

    error, interrupt = ConnectError("refused 1"), KeyboardInterrupt()
    assert _first_failure([FakeConn(0, []), error, interrupt]) is interrupt
    assert _first_failure([error, ConnectError("refused 2")]) is error
    assert _first_failure([FakeConn(0, [])]) is None
    log: list = []
    made: list = []
    with pytest.raises(KeyboardInterrupt):
        open_all(_opener_keeping(log, made, fail_at=1, fail_with=KeyboardInterrupt), 4,
                 threads=1)
    assert all(c.closed for c in made)


def test_an_interrupt_between_opens_closes_everything_opened():
    """A signal handler's exception while an opener checks an earlier connection (outside
    any open) stops the fill the same way."""
    log: list = []
    made: list = []

    class Interrupted(FakeConn):
        def stale(self) -> bool:
            raise KeyboardInterrupt()

    def open_one(i: int) -> FakeConn:
        conn = (Interrupted if i == 0 else FakeConn)(i, log)
        made.append(conn)
        return conn

    with pytest.raises(KeyboardInterrupt):
        open_all(open_one, 5, threads=1)
    assert [c.i for c in made] == [0, 1] and all(c.closed for c in made)


@pytest.mark.parametrize("threads", [2, 8, 32])
def test_every_connection_is_opened_once_from_several_threads(threads):
    log: list = []
    results = open_all(_opener(log), 40, threads=threads)
    assert sorted(r.i for r in results) == list(range(40))
    assert sorted(i for what, i in log if what == "open") == list(range(40))
    checked = [i for what, i in log if what == "stale"]
    assert len(checked) == len(set(checked))  # each at most once
