"""The engine's Park (what a parked AsyncPool request awaits), on both engines and both loops:
a loop callback's wake() resumes the task before it returns, everything else wakes it as an
asyncio.Future would, and cancellation, failures and limits behave as the driver relies on."""

from __future__ import annotations

import asyncio

import pytest

LOOPS = ["asyncio", "uvloop"]


@pytest.fixture(params=LOOPS)
def loop(request):
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        lp = uvloop.new_event_loop()
    else:
        lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def _run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 10))


def _parked(engine, loop, log):
    """A task awaiting a new Park; it logs ("resumed", value) or ("raised", exception)."""
    park = engine.Park(loop, -1, 0)

    async def waiter():
        try:
            await park
        except BaseException as exc:
            log.append(("raised", exc))
            raise
        log.append(("resumed", park.result()))

    return park, loop.create_task(waiter())


def test_wake_from_a_loop_callback_resumes_the_task_before_returning(engine, loop):
    log: list = []

    async def main():
        park, task = _parked(engine, loop, log)
        await asyncio.sleep(0)  # the task is parked
        assert not log

        def callback():
            park.wake(7)
            log.append("wake returned")

        loop.call_soon(callback)
        await task

    _run(loop, main())
    assert log == [("resumed", 7), "wake returned"]


def test_wake_later_and_cancel_wake_the_task_in_a_later_iteration(engine, loop):
    log: list = []

    async def main():
        park, task = _parked(engine, loop, log)
        await asyncio.sleep(0)

        def callback():
            park.wake_later(-2)
            log.append("wake_later returned")

        loop.call_soon(callback)
        await task
        assert park.done() and not park.cancelled()

    _run(loop, main())
    assert log == ["wake_later returned", ("resumed", -2)]


def test_wake_inside_a_running_task_is_scheduled_not_entered(engine, loop):
    # A task may be entered only while no other runs (a re-entrant loop's callbacks run
    # inside one): wake() falls back to the loop's schedule instead of failing.
    log: list = []

    async def main():
        park, task = _parked(engine, loop, log)
        await asyncio.sleep(0)
        park.wake(3)
        log.append("wake returned")
        await task

    _run(loop, main())
    assert log == ["wake returned", ("resumed", 3)]


def test_fail_raises_in_the_task(engine, loop):
    log: list = []
    boom = OSError("boom")

    async def main():
        park, task = _parked(engine, loop, log)
        await asyncio.sleep(0)
        loop.call_soon(park.fail, boom)
        with pytest.raises(OSError):
            await task
        park.wake(1)  # resolved once: later outcomes are ignored
        with pytest.raises(OSError):
            park.result()

    _run(loop, main())
    assert log == [("raised", boom)]


def test_cancelling_the_task_cancels_the_park(engine, loop):
    log: list = []

    async def main():
        park, task = _parked(engine, loop, log)
        await asyncio.sleep(0)
        assert task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert park.cancelled() and park.done()
        assert not park.cancel()  # already done
        park.wake(1)  # a late wake-up of a cancelled request changes nothing
        assert park.cancelled()

    _run(loop, main())
    assert len(log) == 1 and isinstance(log[0][1], asyncio.CancelledError)


def test_cancel_requested_while_the_task_runs_cancels_the_park_it_parks_on(engine, loop):
    # Task.cancel() from inside the running task: the task cancels the future it then
    # yields (Task.__step's _must_cancel), here the Park.
    async def main():
        park = engine.Park(loop, -1, 0)

        async def waiter():
            asyncio.current_task().cancel()
            await park

        with pytest.raises(asyncio.CancelledError):
            await loop.create_task(waiter())
        assert park.cancelled()

    _run(loop, main())


def test_a_park_resolved_before_it_is_awaited(engine, loop):
    async def main():
        park = engine.Park(loop, -1, 0)
        park.wake(4)
        await park
        return park.result()

    assert _run(loop, main()) == 4


@pytest.mark.parametrize("silence,deadline,now,at", [
    (-1, 0, 100, 0),          # no timeout, no deadline: never expires
    (50, 0, 100, 150),        # the silence from now
    (-1, 120, 100, 120),      # the deadline alone
    (50, 120, 100, 120),      # the deadline comes first
    (10, 120, 100, 110),      # the silence comes first
])
def test_limit(engine, loop, silence, deadline, now, at):
    park = engine.Park(loop, silence, deadline)
    assert park.at == 0
    park.limit(now)
    assert park.at == at
