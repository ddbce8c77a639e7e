"""One case, three drivers: the sync Pool, AsyncPool on asyncio, AsyncPool on uvloop.

Pool tests take the ``make_pool`` fixture and call it like ``fastpool.Pool(url, **kw)``; for
the async modes they get a synchronous facade whose every call runs as a coroutine on an
event loop in its own thread, so the very same test body exercises the async API (several
test threads calling it at once become concurrent tasks on that loop).
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

import fastpool
from fastpool._policy import lifecycle

MODES = ["sync", "asyncio", "uvloop"]
#: Set by `make test` / CI: uvloop is installed there, a skip would hide it missing.
EXPECT_UVLOOP = os.environ.get("FASTPOOL_EXPECT_C") == "1"


class LoopThread:
    """An event loop (asyncio's or uvloop's) running in a daemon thread."""

    def __init__(self, kind: str) -> None:
        if kind == "uvloop":
            import uvloop

            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.kind = kind
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name=f"test-{kind}-loop")
        self._thread.start()

    def run(self, coro, timeout: float = 120.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


async def _call(fn, *args, **kwargs):
    return fn(*args, **kwargs)


class AsyncPoolFacade:
    """fastpool.Pool's synchronous API over an AsyncPool living on a LoopThread."""

    def __init__(self, loop_thread: LoopThread, *args: Any, **kwargs: Any) -> None:
        self._lt = loop_thread

        async def make():
            pool = fastpool.AsyncPool(*args, **kwargs)
            try:
                return await pool.open()
            except BaseException:
                await pool.aclose()
                raise

        self.pool = loop_thread.run(make())

    def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._lt.run(getattr(self.pool, name)(*args, **kwargs))

    def request(self, *a, **kw):
        return self._run("request", *a, **kw)

    def get(self, *a, **kw):
        return self._run("get", *a, **kw)

    def head(self, *a, **kw):
        return self._run("head", *a, **kw)

    def options(self, *a, **kw):
        return self._run("options", *a, **kw)

    def delete(self, *a, **kw):
        return self._run("delete", *a, **kw)

    def post(self, *a, **kw):
        return self._run("post", *a, **kw)

    def put(self, *a, **kw):
        return self._run("put", *a, **kw)

    def patch(self, *a, **kw):
        return self._run("patch", *a, **kw)

    def pipeline(self, *a, **kw):
        return self._run("pipeline", *a, **kw)

    def stats(self, *a, **kw) -> dict:
        return self._lt.run(_call(self.pool.stats, *a, **kw))

    def rotate(self) -> None:
        self._lt.run(_call(self.pool.rotate))

    def reset_stats(self) -> None:
        self._lt.run(_call(self.pool.reset_stats))

    def latency_histograms(self) -> dict:
        return self._lt.run(_call(self.pool.latency_histograms))

    def calibrate(self, *a, **kw):
        return self._run("calibrate", *a, **kw)

    def resolve(self, error, lookup, **kw):
        # lookup is the test's synchronous function: it calls the facade, which runs on the
        # loop thread, so the AsyncPool gets an async lookup that runs it in a thread.
        async def async_lookup():
            return await asyncio.get_running_loop().run_in_executor(None, lookup)
        return self._run("resolve", error, async_lookup, **kw)

    def close(self) -> None:
        self._lt.run(self.pool.aclose())

    def __enter__(self) -> AsyncPoolFacade:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:  # the AsyncPool's own ("<AsyncPool ...>")
        return repr(self.pool)

    def __getattr__(self, name: str) -> Any:  # engine, url, closed, _policy, ...
        return getattr(self.pool, name)


def is_async(pool) -> bool:
    """An AsyncPool behind the facade. Its connections' readers watch idle connections, so
    a server's close is seen (and the connection replaced, counted stale) while idle,
    where the sync Pool finds it when a request takes the connection."""
    return isinstance(pool, AsyncPoolFacade)


def on_pool_thread(pool, fn: Any) -> Any:
    """fn() where the pool's connections live: on an AsyncPool's loop (its connections are
    stepped there, and reading one from another thread races with e.g. OpenSSL handling a
    session ticket), directly for a sync Pool."""
    if isinstance(pool, AsyncPoolFacade):
        return pool._lt.run(_call(fn))
    return fn()


def _policy(pool):
    return pool.pool._policy if isinstance(pool, AsyncPoolFacade) else pool._policy


def waiting_requests(pool) -> int:
    """How many requests wait for a connection to come free (the policy's wait queue, read
    where the pool's connections live)."""
    return on_pool_thread(pool, lambda: len(_policy(pool).queue))


def idle_connections(pool) -> list:
    """The pool's idle engine connections (read where they live)."""
    return on_pool_thread(pool, lambda: _policy(pool).connections())


def serving_count(pool) -> int:
    """Connections that serve requests now or within microseconds: the idle ones plus those
    the maintenance schedule holds for a keep-warm request or a new connection's check (they
    go back idle when it is done). Read under the pool's lock (a sync Pool's maintenance
    thread moves connections between the two), so a connection is never counted twice or
    missed on its way."""

    def count() -> int:
        policy = _policy(pool)
        held = sum(1 for c in list(policy.live) if c.state == lifecycle.PINGING)
        return len(policy.connections()) + held

    if isinstance(pool, AsyncPoolFacade):
        return on_pool_thread(pool, count)
    with pool._lock:
        return count()


def open_count(pool) -> int:
    """Connections open or being opened (the policy's slots)."""
    return on_pool_thread(pool, lambda: _policy(pool).slots.total_open)


@pytest.fixture(params=MODES)
def pool_mode(request) -> str:
    """"sync", "asyncio" or "uvloop": which driver make_pool builds."""
    if request.param == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError as exc:
            if EXPECT_UVLOOP:
                pytest.fail(f"uvloop expected (FASTPOOL_EXPECT_C=1) but missing: {exc}")
            pytest.skip("uvloop not installed")
    return request.param


@pytest.fixture
def make_pool(engine_name: str, pool_mode: str):
    """``make_pool(url, **Pool kwargs)`` -> a pool on this test's engine and driver; all
    are closed at teardown. For the async modes the loop thread starts here, before the
    test body, so a test counting threads or descriptors around its pools does not count
    the loop's own."""
    made: list = []
    loops: list[LoopThread] = [] if pool_mode == "sync" else [LoopThread(pool_mode)]

    def make(*args: Any, **kwargs: Any):
        kwargs.setdefault("engine", engine_name)
        if pool_mode == "sync":
            pool = fastpool.Pool(*args, **kwargs)
        else:
            pool = AsyncPoolFacade(loops[0], *args, **kwargs)
        made.append(pool)
        assert pool.engine == kwargs["engine"]
        return pool

    yield make
    for pool in made:
        try:
            pool.close()
        except Exception:  # noqa: BLE001 - a test may have closed or broken it on purpose
            pass
    for lt in loops:
        lt.stop()
