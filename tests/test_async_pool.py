"""AsyncPool behaviours that only exist in async code: cancellation at every phase, many
tasks sharing few connections, closing under load. Both engines x {asyncio, uvloop}.

(The sync suite's cases run through AsyncPool too, via the make_pool fixture.)
"""

from __future__ import annotations

import asyncio
import os
import sys

import pytest
from support import faults

import fastpool

LOOPS = ["asyncio", "uvloop"]
BOUND = 60.0  # seconds: no test may hang longer than this


@pytest.fixture(params=LOOPS)
def arun(request):
    """arun(coroutine function) runs it on a fresh asyncio or uvloop loop, bounded in time."""
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop

    def run(fn, *args):
        async def bounded():
            return await asyncio.wait_for(fn(*args), BOUND)

        # As asyncio.Runner (3.11+) does, on every Python the package supports: leftover
        # tasks cancelled and awaited, async generators shut down, the loop closed.
        loop = factory()
        try:
            return loop.run_until_complete(bounded())
        finally:
            try:
                pending = asyncio.all_tasks(loop)
                for task in pending:
                    task.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    return run


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_runs_on_the_expected_loop(engine_name, arun, nginx):
    async def main():
        async with fastpool.AsyncPool(nginx.url("plain", ""), connections=1,
                                      engine=engine_name) as pool:
            r = await pool.get("/api/v3/ticker")
            assert r.status_code == 200 and r.json()["symbol"] == "BTCUSDT"
            return type(asyncio.get_running_loop()).__module__

    module = arun(main)
    assert module.startswith("uvloop") or module.startswith("asyncio")


def test_64_tasks_on_8_connections_every_response_matched(engine_name, arun, nginx):
    mark = nginx.access_log.mark()
    per_task = 15

    async def main():
        async with fastpool.AsyncPool(nginx.url("tls", ""), connections=8, max_connections=8,
                                      verify=str(nginx.certs.ca), engine=engine_name) as pool:
            async def task(i: int) -> None:
                for j in range(per_task):
                    tag = f"{i}-{j}"
                    r = await pool.post("/api/v3/order", params={"id": tag}, json={"i": i})
                    assert r.json()["uri"] == f"/api/v3/order?id={tag}", (tag, r.text)

            await asyncio.gather(*(task(i) for i in range(64)))
            return pool.stats()

    stats = arun(main)
    assert stats["requests"] == 64 * per_task and stats["errors"] == 0
    assert stats["connects"] == 8 and stats["open"] == 8
    nginx.access_log.wait_for(64 * per_task, since=mark)
    # Never more than the 8 connections (hottest first: under light contention a few of them
    # may carry everything, which is the point of LIFO reuse).
    assert 1 <= len(nginx.access_log.connections(since=mark)) <= 8


def test_waiters_are_served_in_arrival_order(engine_name, arun, fault_server):
    server = fault_server(faults.delay(30))

    async def main():
        async with fastpool.AsyncPool(server.url(), connections=1, engine=engine_name) as pool:
            order: list[int] = []

            async def task(i: int) -> None:
                await pool.get(f"/t{i}")
                order.append(i)

            tasks = []
            for i in range(6):
                tasks.append(asyncio.create_task(task(i)))
                await asyncio.sleep(0.005)  # arrive in a known order
            await asyncio.gather(*tasks)
            return order

    assert arun(main) == list(range(6))
    assert [r.target for r in server.requests] == [f"/t{i}" for i in range(6)]


def test_cancel_while_waiting_for_a_connection(engine_name, arun, fault_server):
    server = fault_server(faults.delay(300))

    async def main():
        async with fastpool.AsyncPool(server.url(), connections=1, engine=engine_name) as pool:
            busy = asyncio.create_task(pool.get("/busy"))
            await asyncio.sleep(0.05)
            waiting = asyncio.create_task(pool.get("/never"))
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert (await busy).status_code == 200
            r = await pool.get("/after")
            return r.status_code, pool.stats()

    status, stats = arun(main)
    assert status == 200 and stats["connects"] == 1
    assert [r.target for r in server.requests] == ["/busy", "/after"]  # /never never sent


def test_cancel_while_reading_discards_the_connection(engine_name, arun, nginx):
    if not nginx.has_echo:
        pytest.skip("nginx echo module missing")

    async def main():
        async with fastpool.AsyncPool(nginx.url("plain", ""), connections=1,
                                      engine=engine_name) as pool:
            slow = asyncio.create_task(pool.get("/slow", params={"s": "0.3"}))
            await asyncio.sleep(0.1)  # written, response not yet there
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            # The slow response would arrive on the old connection: the next request must
            # get its own response on another one, never the stale bytes.
            r = await pool.get("/api/v3/order", params={"id": "next"})
            await asyncio.sleep(0.4)
            r2 = await pool.get("/api/v3/order", params={"id": "again"})
            return r.json(), r2.json(), pool.stats()

    first, second, stats = arun(main)
    assert first["uri"] == "/api/v3/order?id=next"
    assert second["uri"] == "/api/v3/order?id=again"
    assert stats["connects"] >= 2  # the cancelled one was replaced


def test_cancel_while_writing_discards_the_connection(engine_name, arun, fault_server):
    server = fault_server(faults.never_read(hold=2.0))
    body = b"x" * (8 * 1024 * 1024)  # far more than socket buffers hold

    async def main():
        async with fastpool.AsyncPool(server.url(), connections=1, timeout=10,
                                      engine=engine_name) as pool:
            post = asyncio.create_task(pool.post("/big", content=body))
            await asyncio.sleep(0.2)
            assert not post.done()  # stuck writing
            conn = pool._parked and next(iter(pool._parked))
            assert conn and conn.sent > 0 and not conn.written
            post.cancel()
            with pytest.raises(asyncio.CancelledError):
                await post
            return pool.stats()

    stats = arun(main)
    assert stats["errors"] == 0  # a cancellation is not a request failure of the pool
    assert stats["open"] <= 1


def _first_connection_only(certs_unused=None) -> faults.Behavior:
    """TLS: the first connection handshakes and is served; later ones stall in the
    handshake (so a second connection's opening can be cancelled mid-way)."""

    def run(conn: faults.FaultConnection) -> None:
        if conn.record.index == 0:
            if conn.server._handshake(conn):
                faults.respond().run(conn)
            return
        conn.read_raw()
        conn.hold(1.0)
        conn.close()

    return faults.Behavior("first-connection-only", run, auto_handshake=False)


def test_cancel_while_connecting_keeps_the_pool_consistent(engine_name, arun, certs,
                                                          fault_server):
    server = fault_server(_first_connection_only(), tls=certs.server)
    before = _fds()

    async def main():
        async with fastpool.AsyncPool(server.url(), connections=1, max_connections=2,
                                      verify=str(certs.ca),
                                      timeout=fastpool.Timeout(5, connect=0.5),
                                      engine=engine_name) as pool:
            busy = asyncio.create_task(pool.get("/busy"))  # holds the only connection...
            opening = asyncio.create_task(pool.get("/x"))  # ...so this one opens another
            await asyncio.sleep(0.2)
            opening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await opening
            await busy
            await asyncio.sleep(0.8)  # the opener's handshake times out meanwhile
            state = (pool._policy.slots.total_open, pool._policy.idle_count())
            r = await pool.get("/after")
            return state, r.status_code

    (open_, idle), status = arun(main)
    assert (open_, idle) == (1, 1)  # the failed open gave its slot back
    assert status == 200
    assert [r.target for r in server.requests] == ["/busy", "/after"]
    assert _fds() <= before + 2


def test_close_under_load_lets_sent_requests_finish(engine_name, arun, nginx):
    """aclose() with 32 tasks on 4 connections: requests already sent get their responses
    (an order placed is not lost track of), every later one fails PoolClosed (NotSent), and
    every connection ends closed."""
    outcomes: list = []

    async def main():
        pool = fastpool.AsyncPool(nginx.url("plain", ""), connections=4, engine=engine_name)
        await pool.open()

        async def task(i: int) -> None:
            for j in range(200):
                try:
                    r = await pool.get("/api/v3/order", params={"id": f"{i}-{j}"})
                    assert r.json()["uri"].endswith(f"{i}-{j}")
                    outcomes.append("ok")
                except fastpool.FastpoolError as exc:
                    assert isinstance(exc, (fastpool.NotSentError, fastpool.MaybeSentError))
                    outcomes.append(type(exc).__name__)
                    return

        tasks = [asyncio.create_task(task(i)) for i in range(32)]
        await asyncio.sleep(0.05)
        await pool.aclose()
        await asyncio.gather(*tasks)
        return pool.stats()

    stats = arun(main)
    assert "ok" in outcomes
    assert outcomes.count("PoolClosed") == 32 and len(outcomes) == stats["requests"] + 32
    assert stats["open"] == 0 and stats["idle"] == 0 and stats["errors"] == 32


def test_stale_idle_connection_is_replaced_not_surfaced(engine_name, arun, fault_server):
    server = fault_server(faults.stale_after(2, when="after_response"))

    async def main():
        async with fastpool.AsyncPool(server.url(), connections=1, engine=engine_name) as pool:
            codes = []
            for i in range(6):
                codes.append((await pool.get(f"/s{i}")).status_code)
                await asyncio.sleep(0.02)  # let the server's FIN arrive
            return codes, pool.stats()

    codes, stats = arun(main)
    assert codes == [200] * 6
    assert stats["errors"] == 0 and stats["stale"] >= 2
    assert [r.target for r in server.requests] == [f"/s{i}" for i in range(6)]


def test_a_failure_read_by_the_reader_is_not_left_as_the_tasks_handled_exception(
        engine_name, arun, fault_server):
    # The connection's reader resumes the parked task inside its own call: once the task
    # has handled the failure, nothing of the reader's own handling may show through
    # (sys.exc_info(), the implicit __context__ of the task's next exception).
    server = fault_server(faults.close_after_request())

    async def main():
        async with fastpool.AsyncPool(server.url(), connections=1, engine=engine_name) as pool:
            with pytest.raises(fastpool.MaybeSentError):
                await pool.post("/order", content=b"1")
            return sys.exc_info()

    assert arun(main) == (None, None, None)


def test_an_open_cancelled_mid_fill_closes_what_the_fill_opens_later(engine_name, arun,
                                                                     certs):
    """open() cancelled while its initial connections are still handshaking (a server
    that starts answering only later): the fill goes on in its threads, and every
    connection it opens then is closed, not left open with nobody to use it."""
    import socket
    import ssl
    import threading
    import time

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs.server.chain), str(certs.server.key))
    lsock = socket.create_server(("127.0.0.1", 0), backlog=16)
    port = lsock.getsockname()[1]
    start, closed = threading.Event(), []

    def serve_one(raw: socket.socket) -> None:
        raw.settimeout(10)
        try:
            with ctx.wrap_socket(raw, server_side=True) as tls:
                closed.append(tls.recv(1) == b"")  # the client's close: EOF
        except OSError:
            closed.append(True)  # (a close during the handshake counts too)

    def serve() -> None:
        start.wait(10)  # connects complete in the backlog; handshakes wait for this
        for _ in range(4):
            raw, _ = lsock.accept()
            threading.Thread(target=serve_one, args=(raw,), daemon=True).start()

    server = threading.Thread(target=serve, daemon=True)
    server.start()

    async def main() -> None:
        pool = fastpool.AsyncPool(f"https://127.0.0.1:{port}", connections=4,
                                  verify=str(certs.ca), engine=engine_name, timeout=10)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.open(), 0.2)
        start.set()  # now the handshakes complete, and the fill ends
        deadline = time.monotonic() + 10
        while len(closed) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        await pool.aclose()

    try:
        arun(main)
    finally:
        start.set()
        lsock.close()
    assert closed == [True] * 4
