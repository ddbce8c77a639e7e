"""pool.pipeline(): GET/HEAD bursts as one HTTP/1.1 pipeline, through Pool, AsyncPool/asyncio
and AsyncPool/uvloop, on both engines.

One connection, one write, the responses in order; any framing doubt ends the pipeline, the
connection is discarded, each item learns whether it may have been processed, and only what
the retry rule allows is sent again.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest
from pool_helpers import tls_kwargs, wait_until
from support import faults
from support.pools import is_async, open_count

import fastpool

TLS_IDS = ["plain", "tls"]


def _targets(results) -> list:
    return [r.headers.get("x-request-target") if isinstance(r, fastpool.Response) else None
            for r in results]


def _answer_together(n: int) -> faults.Behavior:
    """Reads n requests before answering them all in one write; then answers one by one."""

    def run(conn: faults.FaultConnection) -> None:
        reqs = []
        while len(reqs) < n and (req := conn.read_request()) is not None:
            reqs.append(req)
        conn.send(b"".join(faults.http_response(200, r.target.encode(),
                                                [("X-Request-Target", r.target)],
                                                head=r.method == "HEAD") for r in reqs))
        while (req := conn.read_request()) is not None:
            conn.send(faults.http_response(200, req.target.encode(),
                                           [("X-Request-Target", req.target)],
                                           head=req.method == "HEAD"))
        conn.close()

    return faults.Behavior(f"answer_together[{n}]", run)


def _first_connection(fail: faults.Behavior) -> faults.Behavior:
    """Connection 0 runs ``fail``; every later one answers correctly."""
    ok = faults.respond()

    def run(conn: faults.FaultConnection) -> None:
        (fail if conn.record.index == 0 else ok)(conn)

    return faults.Behavior(f"first[{fail.name}]", run)


def _answer_then(k: int, then: bytes = b"", close: bool = True) -> faults.Behavior:
    """Answers k requests (all read first, answered in one write), then sends ``then`` and
    closes (or holds the connection silent)."""

    def run(conn: faults.FaultConnection) -> None:
        reqs = [conn.read_request() for _ in range(k)]
        conn.send(b"".join(faults.http_response(200, r.target.encode(),
                                                [("X-Request-Target", r.target)])
                           for r in reqs if r is not None) + then)
        if not close:
            conn.hold(10.0)
        conn.close()

    return faults.Behavior(f"answer_then[{k}]", run)


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_pipeline_answers_in_order_on_one_connection(fault_server, certs, make_pool, tls):
    server = fault_server(_answer_together(10), tls=certs.server if tls else None)
    pool = make_pool(server.url("/api"), connections=2, **tls_kwargs(certs, tls))
    items = [("GET", "/ticker", {"symbol": f"S{i}"}) for i in range(10)]
    results = pool.pipeline(items)
    assert _targets(results) == [f"/api/ticker?symbol=S{i}" for i in range(10)]
    assert [r.content for r in results] == [f"/api/ticker?symbol=S{i}".encode()
                                            for i in range(10)]
    reqs = [q for q in server.requests if q.target.startswith("/api/ticker")]
    assert len(reqs) == 10 and len({q.connection for q in reqs}) == 1
    s = pool.stats()
    assert s["requests"] == 10 and s["errors"] == 0 and s["retries"] == 0
    # the connection went back to the pool and serves an ordinary request
    assert pool.get("/after").status_code == 200


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_head_mixed_with_get(fault_server, certs, make_pool, tls):
    server = fault_server(faults.respond(body=b"quote"), tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    results = pool.pipeline([("GET", "/a"), ("head", "/b"), ("HEAD", "/c"), ("get", "/d")])
    assert [r.status_code for r in results] == [200] * 4
    assert [r.content for r in results] == [b"quote", b"", b"", b"quote"]
    assert _targets(results) == ["/a", "/b", "/c", "/d"]
    assert [q.method for q in server.requests] == ["GET", "HEAD", "HEAD", "GET"]


def test_empty_pipeline(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url("/"), connections=1)
    assert pool.pipeline([]) == []


@pytest.mark.parametrize("items", [
    [("GET", "/a"), ("POST", "/order")],
    [("DELETE", "/order")],
    [("PUT", "/a"), ("GET", "/b")],
    [("GET",)],
    ["GET /a"],
    [("GET", "/a", {"k": object()})],
    [("GET", "http://elsewhere.example/a")],
])
def test_refused_items_send_nothing(fault_server, make_pool, items):
    server = fault_server(faults.respond())
    pool = make_pool(server.url("/"), connections=1)
    with pytest.raises(fastpool.NotSentError) as info:
        pool.pipeline(items)
    assert isinstance(info.value, (fastpool.InvalidRequestError, fastpool.InvalidURL))
    assert pool.get("/probe").status_code == 200
    assert [q.target for q in server.requests] == ["/probe"]  # nothing of the pipeline


# --- framing doubts ------------------------------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_server_closes_after_k_of_n(fault_server, certs, make_pool, tls):
    server = fault_server(_first_connection(_answer_then(3)), tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=1, retries=0, **tls_kwargs(certs, tls))
    results = pool.pipeline([("GET", f"/{i}") for i in range(6)])
    assert _targets(results) == ["/0", "/1", "/2", None, None, None]
    assert isinstance(results[3], fastpool.ServerDisconnected)
    assert all(isinstance(r, fastpool.PipelineAborted) for r in results[4:])
    assert all(isinstance(r, fastpool.MaybeSentError) for r in results[3:])
    assert results[4].__cause__ is results[3]
    assert results[5].request.target == b"/5"
    s = pool.stats()
    assert s["requests"] == 3 and s["errors"] == 3 and s["retries"] == 0
    # discarded: the pool still works, on a new connection
    assert pool.get("/after").status_code == 200
    assert server.requests[-1].connection == 1


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_unanswered_items_are_retried_when_allowed(fault_server, certs, make_pool, tls):
    server = fault_server(_first_connection(_answer_then(2)), tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=1, **tls_kwargs(certs, tls))
    results = pool.pipeline([("GET", f"/{i}") for i in range(5)], retries=1)
    assert _targets(results) == ["/0", "/1", "/2", "/3", "/4"]
    by_conn = [(q.connection, q.target) for q in server.requests]
    # (the first connection's server read the two it answered; the rest went again on a new one)
    assert by_conn == [(0, "/0"), (0, "/1")] + [(1, f"/{i}") for i in range(2, 5)]
    s = pool.stats()
    assert s["requests"] == 5 and s["retries"] == 3 and s["errors"] == 0


@pytest.mark.parametrize("close", ["connection-close", "http/1.0"])
def test_response_ending_keep_alive_ends_the_pipeline(fault_server, make_pool, close):
    last = (faults.http_response(200, b"bye", keep_alive=False) if close == "connection-close"
            else b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye")
    server = fault_server(_first_connection(_answer_then(1, last, close=False)))
    pool = make_pool(server.url("/"), connections=1)
    results = pool.pipeline([("GET", f"/{i}") for i in range(4)])
    assert [r.content for r in results[:2]] == [b"/0", b"bye"]
    assert isinstance(results[2], fastpool.ServerDisconnected)
    assert isinstance(results[3], fastpool.PipelineAborted)
    assert pool.get("/after").status_code == 200
    assert server.requests[-1].connection == 1  # the first was discarded


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_malformed_response_in_the_middle(fault_server, certs, make_pool, tls):
    bad = faults.MALFORMED_RESPONSES["bad-status-line"]
    server = fault_server(_first_connection(_answer_then(2, bad, close=False)),
                          tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=1, timeout=fastpool.Timeout(5.0, read=2.0),
                     **tls_kwargs(certs, tls))
    results = pool.pipeline([("GET", f"/{i}") for i in range(4)])
    assert _targets(results)[:2] == ["/0", "/1"]
    assert isinstance(results[2], fastpool.ProtocolError)
    assert isinstance(results[3], fastpool.PipelineAborted)
    assert pool.get("/after").status_code == 200
    assert server.requests[-1].connection == 1


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_deadline_during_the_burst(fault_server, certs, make_pool, tls):
    server = fault_server(_first_connection(_answer_then(2, close=False)),
                          tls=certs.server if tls else None)
    pool = make_pool(server.url("/"), connections=1, retries=3, **tls_kwargs(certs, tls))
    results = pool.pipeline([("GET", f"/{i}") for i in range(4)],
                            timeout=fastpool.Timeout(5.0, total=0.5))
    assert _targets(results)[:2] == ["/0", "/1"]
    assert isinstance(results[2], fastpool.ReadTimeout)
    assert isinstance(results[3], fastpool.PipelineAborted)
    # the deadline bounds the retries too: nothing was sent again (a connection the refill
    # opened meanwhile carries nothing)
    assert [q.target for q in server.requests] == ["/0", "/1"]
    assert pool.stats()["retries"] == 0
    assert pool.stats()["timeouts"] == 1
    assert pool.get("/after").status_code == 200


def test_stale_idle_connection_moves_the_whole_burst(fault_server, make_pool):
    """A connection the server closed while idle: nothing of the burst is written on it
    (NotSent), so all of it goes on another connection, whatever retries says."""
    server = fault_server(_first_connection(faults.stale_after(1)))
    pool = make_pool(server.url("/"), connections=1, retries=0)
    assert pool.get("/warm").status_code == 200
    wait_until(lambda: server.connections[0].done.is_set(), what="the server's close")
    results = pool.pipeline([("GET", f"/{i}") for i in range(3)])
    assert _targets(results) == ["/0", "/1", "/2"]
    assert [(q.connection, q.target) for q in server.requests] == [
        (0, "/warm"), (1, "/0"), (1, "/1"), (1, "/2")]
    assert server.connections[0].received.count(b"GET") == 1  # not a byte of the burst
    s = pool.stats()
    assert s["requests"] == 4 and s["errors"] == 0


# --- the exchange gate ---------------------------------------------------------------------


def test_rate_limits_admit_every_item(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url("/"), connections=1,
                     rate_limits=[fastpool.RateLimit(10, per=60, window="sliding")])
    results = pool.pipeline([("GET", f"/{i}") for i in range(4)], weight=2)
    assert all(isinstance(r, fastpool.Response) for r in results)
    (state,) = pool.stats()["rate_limits"]
    assert state["used"] == 8
    # 2 units left: a burst of 3 × 1 gets 2 answers and a refusal, with nothing sent for it
    results = pool.pipeline([("GET", "/a"), ("GET", "/b"), ("GET", "/c")], on_limit="raise")
    assert _targets(results)[:2] == ["/a", "/b"]
    assert isinstance(results[2], fastpool.RateLimitedError)
    assert isinstance(results[2], fastpool.NotSentError)
    assert "/c" not in [q.target for q in server.requests]


def test_rate_limit_refuses_the_whole_burst(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url("/"), connections=1,
                     rate_limits=[fastpool.RateLimit(1, per=60, window="sliding")], on_limit="raise")
    assert isinstance(pool.pipeline([("GET", "/a")])[0], fastpool.Response)
    results = pool.pipeline([("GET", "/b"), ("GET", "/c")])
    assert all(isinstance(r, fastpool.RateLimitedError) for r in results)
    assert results[0] is not results[1] and results[1].retry_after > 0
    # a weight no budget could ever admit: refused too, typed, nothing sent
    (too_heavy,) = pool.pipeline([("GET", "/d")], weight=[2])
    assert isinstance(too_heavy, fastpool.InvalidRequestError)
    assert [q.target for q in server.requests] == ["/a"]
    s = pool.stats()
    assert s["rate_limits"][0]["used"] == 1 and s["rate_limited"] == 2


def test_admitted_items_that_never_left_get_their_weight_back(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url("/"), connections=1,
                     rate_limits=[fastpool.RateLimit(10, per=60, window="sliding")])
    pool.close()
    results = pool.pipeline([("GET", f"/{i}") for i in range(3)], weight=2)
    assert all(isinstance(r, fastpool.PoolClosed) for r in results)
    assert len({id(r) for r in results}) == 3
    assert pool.stats()["rate_limits"][0]["used"] == 0
    assert server.requests == []


def test_a_429_in_the_burst_starts_the_cooldown(fault_server, make_pool):
    def run(conn: faults.FaultConnection) -> None:
        while (req := conn.read_request()) is not None:
            status = 429 if req.target == "/1" else 200
            conn.send(faults.http_response(status, b"{}", [("Retry-After", "30")]))
        conn.close()

    server = fault_server(faults.Behavior("429-on-1", run))
    pool = make_pool(server.url("/"), connections=1)
    results = pool.pipeline([("GET", f"/{i}") for i in range(3)])
    assert isinstance(results[0], fastpool.Response)
    assert isinstance(results[1], fastpool.RateLimitedError)
    assert results[1].response.status_code == 429
    assert isinstance(results[2], fastpool.Response)  # answered before the cooldown began
    later = pool.pipeline([("GET", "/x"), ("GET", "/y")])
    assert all(isinstance(r, fastpool.RateLimitedError) for r in later)
    assert "/x" not in [q.target for q in server.requests]


def test_signed_items_are_signed(fault_server, make_pool):
    server = fault_server(faults.respond())
    signer = fastpool.HmacSigner(api_key="k", secret="s")
    pool = make_pool(server.url("/"), connections=1, auth=signer)
    results = pool.pipeline([("GET", "/acct", {"a": "1"}), ("GET", "/acct", {"a": "2"})],
                            signed=True)
    assert all(isinstance(r, fastpool.Response) for r in results)
    for q in server.requests:
        assert "signature=" in q.target and "timestamp=" in q.target
        assert q.header("X-MBX-APIKEY") == "k"


# --- the pool around it --------------------------------------------------------------------


def test_pipeline_waits_for_a_connection_and_keeps_the_pool_whole(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url("/"), connections=2, max_connections=2)
    for _ in range(5):
        results = pool.pipeline([("GET", f"/{i}") for i in range(3)], priority=True)
        assert _targets(results) == ["/0", "/1", "/2"]
    assert open_count(pool) == 2
    assert len(server.connections) == 2
    assert pool.stats()["requests"] == 15


# --- a real server -------------------------------------------------------------------------


@pytest.mark.parametrize("listener", ["plain", "tls13"])
def test_nginx_answers_a_mixed_burst_in_order(nginx, certs, make_pool, listener):
    tls = listener != "plain"
    pool = make_pool(nginx.url(listener, ""), connections=1, **tls_kwargs(certs, tls))
    items = [("GET", "/api/v3/ticker"), ("GET", "/chunked/ticker"), ("GET", "/204"),
             ("HEAD", "/static/64k.bin"), ("GET", "/static/64k.bin"),
             ("GET", "/chunked/64k.bin"), ("GET", "/api/v3/order", {"id": "7"}),
             ("HEAD", "/api/v3/ticker")]
    results = pool.pipeline(items)
    assert all(isinstance(r, fastpool.Response) for r in results), results
    uris = [r.headers["x-request-uri"] for r in results]
    assert uris == ["/api/v3/ticker", "/chunked/ticker", "/204", "/static/64k.bin",
                    "/static/64k.bin", "/chunked/64k.bin", "/api/v3/order?id=7",
                    "/api/v3/ticker"]
    assert len({r.headers["x-connection"] for r in results}) == 1
    assert [r.status_code for r in results] == [200, 200, 204, 200, 200, 200, 200, 200]
    assert results[0].content == results[1].content
    assert results[3].content == b"" and len(results[4].content) == 64 * 1024
    assert results[5].content == results[4].content
    assert results[6].json()["uri"] == "/api/v3/order?id=7"
    assert pool.stats()["requests"] == len(items)


def test_nginx_close_in_the_middle_is_retried(nginx, make_pool):
    pool = make_pool(nginx.url("plain", ""), connections=1)
    items = [("GET", "/api/v3/order", {"id": "0"}), ("GET", "/close"),
             ("GET", "/api/v3/order", {"id": "2"}), ("GET", "/api/v3/order", {"id": "3"})]
    unretried = pool.pipeline(items, retries=0)
    assert isinstance(unretried[0], fastpool.Response)
    assert isinstance(unretried[1], fastpool.Response)
    assert unretried[1].headers.get("connection") == "close"
    assert isinstance(unretried[2], fastpool.ServerDisconnected)
    assert isinstance(unretried[3], fastpool.PipelineAborted)
    retried = pool.pipeline(items, retries=1)
    assert [r.headers["x-request-uri"] for r in retried] == [
        "/api/v3/order?id=0", "/close", "/api/v3/order?id=2", "/api/v3/order?id=3"]
    assert retried[2].headers["x-connection"] != retried[1].headers["x-connection"]


# --- async only: cancellation ---------------------------------------------------------------


def test_cancelled_pipeline_discards_its_connection(fault_server, make_pool):
    server = fault_server(_first_connection(_answer_then(1, close=False)))
    pool = make_pool(server.url("/"), connections=1)
    if not is_async(pool):
        pytest.skip("cancellation is the async driver's")
    apool = pool.pool

    async def cancel_mid_burst():
        task = asyncio.ensure_future(apool.pipeline([("GET", "/0"), ("GET", "/1")]))
        deadline = time.monotonic() + 10
        while len(server.requests) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # written, one response in, the second never comes
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    pool._lt.run(cancel_mid_burst())
    assert pool.get("/after").status_code == 200
    assert server.requests[-1].connection == 1  # never the half-read connection again


# --- sync only: a signal handler's exception ------------------------------------------------


class _Interrupt(KeyboardInterrupt):
    pass


def test_interrupted_pipeline_is_marked_and_discards_its_connection(fault_server, make_pool):
    server = fault_server(_first_connection(_answer_then(1, close=False)))
    pool = make_pool(server.url("/"), connections=1)
    if is_async(pool):
        pytest.skip("signal handlers interrupt the sync driver's blocking reads")

    def handler(signum, frame):
        raise _Interrupt()

    previous = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(_Interrupt) as info:
            pool.pipeline([("GET", "/0"), ("GET", "/1")], timeout=5.0)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert isinstance(info.value.fastpool_error, fastpool.InterruptedMaybeSent)
    assert pool.get("/after").status_code == 200
    assert server.requests[-1].connection == 1
    assert open_count(pool) == 1
