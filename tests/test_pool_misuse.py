"""Misuse a user can fall into: an AsyncPool used from another (or a closed) event loop, and
pools used in a child process after fork(). Both engines; every failure is NotSent, and no
connection is ever shared by two loops or two processes."""

from __future__ import annotations

import asyncio
import faulthandler
import multiprocessing
import os
import threading
import warnings

import pytest
from conftest import load_server

import fastpool

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


@pytest.fixture
def echo():
    """An embedded server answering each request with its own bytes (so a response can be
    matched to the request it answers), plain HTTP."""
    server = load_server()(echo=True).start()
    yield server
    server.stop()


def _new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_async_pool_moves_to_a_second_loop_when_the_first_closed(echo, engine_name, loop_kind):
    pool = fastpool.AsyncPool(echo.url, connections=2, engine=engine_name)

    async def first():
        await pool.open()
        return (await pool.get("/one")).content

    async def second():
        r = await pool.get("/two")
        rs = await asyncio.gather(*(pool.get(f"/many/{i}") for i in range(8)))
        return r.content, [x.content for x in rs]

    loop1, loop2 = _new_loop(loop_kind), _new_loop(loop_kind)
    try:
        assert b"GET /one " in loop1.run_until_complete(first())
        loop1.close()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "coroutine was never awaited", no resource leak
            two, many = loop2.run_until_complete(second())
        assert b"GET /two " in two
        assert all(f"GET /many/{i} ".encode() in body for i, body in enumerate(many))
        stats = pool.stats()
        assert stats["errors"] == 0 and stats["requests"] == 10
        assert stats["connects"] == 2  # the same connections, moved to the new loop
    finally:
        loop2.run_until_complete(pool.aclose())
        loop2.close()
        if not loop1.is_closed():
            loop1.close()


def test_async_pool_used_from_a_loop_in_another_thread_is_not_sent(echo, engine_name):
    pool = fastpool.AsyncPool(echo.url, connections=1, engine=engine_name)
    home = asyncio.new_event_loop()
    thread = threading.Thread(target=home.run_forever, daemon=True)
    thread.start()
    try:
        asyncio.run_coroutine_threadsafe(pool.open(), home).result(10)
        requests_before = echo.stats()["requests"]

        async def elsewhere():
            return await pool.post("/order", content=b"x")

        with pytest.raises(fastpool.EventLoopError) as info:
            asyncio.run(elsewhere())
        assert isinstance(info.value, fastpool.NotSentError)
        assert echo.stats()["requests"] == requests_before  # nothing reached the server
        # The pool still works where it lives.
        r = asyncio.run_coroutine_threadsafe(pool.get("/home"), home).result(10)
        assert b"GET /home " in r.content
    finally:
        asyncio.run_coroutine_threadsafe(pool.aclose(), home).result(10)
        home.call_soon_threadsafe(home.stop)
        thread.join(10)
        home.close()


# ---- fork ------------------------------------------------------------------------------------


def _hammer(pool, tag: str, n: int) -> int:
    """n requests whose answers must echo this process's own request; returns mismatches."""
    bad = 0
    for i in range(n):
        path = f"/{tag}/{i}"
        r = pool.get(path)
        if f"GET {path} ".encode() not in r.content:
            bad += 1
    return bad


def _child_exit(code_fn) -> None:
    """Runs code_fn in the forked child and exits with its code; a hung child prints its
    threads' stacks and exits after 30 s instead of hanging the suite."""
    faulthandler.dump_traceback_later(30, exit=True)
    try:
        code = code_fn()
    except BaseException:  # noqa: BLE001 - reported through the exit code
        import traceback

        traceback.print_exc()
        code = 99
    os._exit(code)


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_sync_pool_after_fork_never_shares_a_connection(engine_name, tls, tmp_path):
    server = load_server()(echo=True, tls=tls).start()
    try:
        verify = server.write_ca(str(tmp_path / "ca.pem")) if tls else True
        pool = fastpool.Pool(server.url, connections=2, engine=engine_name, verify=verify,
                             timeout=10)
        _hammer(pool, "warm", 4)
        parent_sockets = {c.fileno() for c in pool._policy.connections()}
        pid = os.fork()
        if pid == 0:
            def child() -> int:
                mismatches = _hammer(pool, "child", 200)
                stats = pool.stats()
                ok = stats["errors"] == 0 and stats["requests"] == 200
                pool.close()
                return 1 if mismatches else (0 if ok else 2)
            _child_exit(child)
        parent_bad = _hammer(pool, "parent", 200)  # at the same time as the child
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert parent_bad == 0
        assert {c.fileno() for c in pool._policy.connections()} <= parent_sockets | {-1}
        assert pool.stats()["errors"] == 0
        pool.close()
    finally:
        server.stop()


def _mp_worker(args) -> int:
    tag, n = args
    return _hammer(_MP_POOL[0], tag, n)


_MP_POOL: list = []


def test_sync_pool_in_multiprocessing_fork_workers(echo, engine_name):
    pool = fastpool.Pool(echo.url, connections=2, engine=engine_name, timeout=10)
    _MP_POOL[:] = [pool]
    try:
        _hammer(pool, "warm", 4)
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(3) as workers:
            mismatches = workers.map(_mp_worker, [(f"w{i}", 50) for i in range(6)])
        assert mismatches == [0] * 6
        assert _hammer(pool, "after", 20) == 0 and pool.stats()["errors"] == 0
    finally:
        _MP_POOL.clear()
        pool.close()


@pytest.mark.parametrize("loop_kind", ["asyncio", "uvloop"])
def test_async_pool_after_fork(echo, engine_name, loop_kind):
    pool = fastpool.AsyncPool(echo.url, connections=2, engine=engine_name)

    async def use(tag: str, n: int) -> int:
        bad = 0
        for i in range(n):
            path = f"/{tag}/{i}"
            r = await pool.get(path)
            bad += f"GET {path} ".encode() not in r.content
        return bad

    loop = _new_loop(loop_kind)
    try:
        loop.run_until_complete(pool.open())
        assert loop.run_until_complete(use("warm", 4)) == 0
        pid = os.fork()
        if pid == 0:
            def child() -> int:
                child_loop = _new_loop(loop_kind)
                bad = child_loop.run_until_complete(use("child", 100))
                child_loop.run_until_complete(pool.aclose())
                return 1 if bad else 0
            _child_exit(child)
        assert loop.run_until_complete(use("parent", 100)) == 0
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert pool.stats()["errors"] == 0
    finally:
        loop.run_until_complete(pool.aclose())
        loop.close()


def test_a_pool_closed_before_fork_stays_closed_in_the_child(echo, engine_name):
    pool = fastpool.Pool(echo.url, connections=1, engine=engine_name)
    pool.close()
    pid = os.fork()
    if pid == 0:
        def child() -> int:
            try:
                pool.get("/x")
            except fastpool.PoolClosed:
                return 0
            return 1
        _child_exit(child)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
