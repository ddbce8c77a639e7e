"""Hedged requests (fastpool.Hedge) through Pool, AsyncPool/asyncio and AsyncPool/uvloop, on
both engines, against scripted servers: which requests get a copy, which answer wins, what
becomes of the loser's connection, and how budgets, rate limits, deadlines and failures
bound it. Requests the test does not mean to hedge say hedge=False, so the counts are exact
however slow the machine is.
"""

from __future__ import annotations

import threading

import pytest
from pool_helpers import tls_kwargs, wait_until
from support import faults
from support.pools import is_async

import fastpool

#: Long enough that a copy sent after HEDGE_AFTER always answers first; the stalls end at
#: the server's close anyway.
STALL = 1.0
HEDGE_AFTER = 0.05


def _first_of_each_target(first, then=None) -> faults.Behavior:
    """Each target's first request (over all connections) runs ``first(conn, req)``; every
    later one ``then(conn, req)`` (default: answered at once). The body echoes the target, so
    a response read off the wrong request shows."""
    seen: set = set()
    lock = threading.Lock()

    def answer(conn, req, status=200, body=None):
        conn.send(faults.http_response(status, body if body is not None
                                       else req.target.encode(),
                                       [("X-Request-Target", req.target)],
                                       head=req.method == "HEAD"))

    def run(conn: faults.FaultConnection) -> None:
        while (req := conn.read_request()) is not None:
            with lock:
                is_first = req.target not in seen
                seen.add(req.target)
            step = first if is_first else then
            if step is None:
                answer(conn, req)
            elif step(conn, req, answer) is False:
                return
        conn.close()

    return faults.Behavior("first_of_each_target", run)


def _stall_then_answer(seconds=STALL, status=200, body=None):
    def step(conn, req, answer):
        if "stall" in req.target:
            conn.sleep(seconds)
        answer(conn, req, status, body)
    return step


def _hedge(**kw) -> fastpool.Hedge:
    kw.setdefault("after", HEDGE_AFTER)
    kw.setdefault("budget", 1.0)
    return fastpool.Hedge(**kw)


def _targets(server, method="GET") -> list:
    return [r.target for r in server.requests if r.method == method]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_stalled_request_is_answered_by_its_copy(fault_server, make_pool, certs, tls):
    server = fault_server(_first_of_each_target(_stall_then_answer()),
                          tls=certs.server if tls else None)
    pool = make_pool(server.url(), connections=3, hedge=_hedge(), **tls_kwargs(certs, tls))
    r = pool.get("/stall")
    assert r.status_code == 200 and r.content == b"/stall"
    stats = pool.stats()
    assert stats["hedges"] == 1 and stats["hedge_wins"] == 1, stats
    assert stats["requests"] == 1 and stats["errors"] == 0
    assert _targets(server).count("/stall") == 2
    # The stalled connection's late answer is never read as another request's: every next
    # request gets its own (the async pool drains the loser in the background, the sync one
    # closes it), before and after the late answer came.
    for i in range(6):
        assert pool.get(f"/a{i}", hedge=False).content == f"/a{i}".encode()
    wait_until(lambda: pool.stats()["idle"] == 3 and pool.stats()["open"] == 3,
               timeout=10, what="the loser's connection drained or replaced")
    for i in range(6):
        assert pool.get(f"/b{i}", hedge=False).content == f"/b{i}".encode()
    assert pool.stats()["hedges"] == 1


def test_a_request_answered_in_time_sends_no_copy(fault_server, make_pool):
    server = fault_server(faults.respond())
    pool = make_pool(server.url(), connections=2, hedge=fastpool.Hedge(after=5.0, budget=1))
    for _ in range(5):
        assert pool.get("/q").status_code == 200
        assert pool.head("/q").status_code == 200
    stats = pool.stats()
    assert stats["hedges"] == 0 and stats["requests"] == 10
    assert len(server.requests) == 10


def test_a_post_is_never_hedged_by_the_pools_hedge(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer(0.3)))
    pool = make_pool(server.url(), connections=3, hedge=_hedge())
    r = pool.post("/stall-order", content=b"x")
    assert r.content == b"/stall-order"
    assert pool.stats()["hedges"] == 0
    assert _targets(server, "POST") == ["/stall-order"]
    # Its own Hedge without deduplicated=True: refused, nothing sent.
    with pytest.raises(fastpool.InvalidRequestError, match="deduplicated") as info:
        pool.post("/order", content=b"x", hedge=_hedge())
    assert isinstance(info.value, fastpool.NotSentError)
    with pytest.raises(fastpool.InvalidRequestError):
        pool.get("/x", hedge=0.002)
    assert _targets(server, "POST") == ["/stall-order"]


def test_a_deduplicated_post_is_hedged_and_its_duplicates_refusal_is_not_the_outcome(
        fault_server, make_pool):
    # The first copy is placed (slowly); the second is refused as a duplicate at once. The
    # refusal comes first, but only a 2xx settles a deduplicated request.
    refused = b'{"code":-2010,"msg":"Duplicate order sent."}'

    def duplicate(conn, req, answer):
        answer(conn, req, 400, refused)

    server = fault_server(_first_of_each_target(
        _stall_then_answer(0.5, 200, b'{"status":"NEW"}'), duplicate))
    pool = make_pool(server.url(), connections=3,
                     auth=fastpool.HmacSigner(api_key="k", secret="s"))
    r = pool.post("/stall-order", data={"newClientOrderId": "a1"}, signed=True,
                  hedge=_hedge(deduplicated=True))
    assert r.status_code == 200 and r.content == b'{"status":"NEW"}'
    posts = [req for req in server.requests if req.method == "POST"]
    assert [req.target.split("?")[0] for req in posts] == ["/stall-order"] * 2
    assert posts[0].raw == posts[1].raw  # the very same request: same id, same signature
    stats = pool.stats()
    assert stats["hedges"] == 1 and stats["hedge_wins"] == 0


def test_a_deduplicated_request_whose_copies_both_refuse_gets_the_first_answer(
        fault_server, make_pool):
    def refuse(conn, req, answer):
        if "stall" in req.target:
            conn.sleep(0.3)
        answer(conn, req, 409, b"first")

    def refuse_later(conn, req, answer):
        answer(conn, req, 400, b"second")

    server = fault_server(_first_of_each_target(refuse, refuse_later))
    pool = make_pool(server.url(), connections=3)
    r = pool.delete("/stall-cancel", hedge=_hedge(deduplicated=True))
    assert r.status_code == 400 and r.content == b"second"  # the copy answered first
    assert pool.stats()["hedges"] == 1 and pool.stats()["hedge_wins"] == 1


def test_the_budget_caps_hedges(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer(0.3)))
    pool = make_pool(server.url(), connections=3,
                     hedge=fastpool.Hedge(after=HEDGE_AFTER, budget=0.5, burst=1))
    for i in range(4):  # each earns half a hedge: the 2nd and the 4th may have one
        assert pool.get(f"/stall-{i}").content == f"/stall-{i}".encode()
    stats = pool.stats()
    assert stats["hedges"] == 2 and stats["hedge_wins"] == 2, stats
    assert len(_targets(server)) == 6


def test_no_idle_connection_means_no_hedge_and_the_primary_answers(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer(0.3)))
    pool = make_pool(server.url(), connections=1, hedge=_hedge())
    assert pool.get("/stall").content == b"/stall"
    stats = pool.stats()
    assert stats["hedges"] == 0 and stats["connects"] == 1  # none opened for a copy
    assert _targets(server) == ["/stall"]


def test_a_non_priority_hedge_never_takes_the_reserved_lane(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer(0.3)))
    pool = make_pool(server.url(), connections=1, reserved=1, hedge=_hedge())
    assert pool.get("/stall").content == b"/stall"
    assert pool.stats()["hedges"] == 0
    # A priority request may use it: its copy goes on the general connection.
    assert pool.get("/stall-p", priority=True).content == b"/stall-p"
    assert pool.stats()["hedges"] == 1


def test_the_copy_counts_in_the_rate_limits(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer()))
    pool = make_pool(server.url(), connections=3, hedge=_hedge(),
                     rate_limits=[fastpool.RateLimit(100, per=60, window="sliding")])
    assert pool.get("/stall", weight=3).content == b"/stall"
    stats = pool.stats()
    assert stats["hedges"] == 1
    assert stats["rate_limits"][0]["used"] == 6  # the request and its copy


def test_no_copy_when_the_rate_limit_has_no_room(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer(0.3)))
    pool = make_pool(server.url(), connections=3, hedge=_hedge(),
                     rate_limits=[fastpool.RateLimit(5, per=60, window="sliding")])
    assert pool.get("/stall", weight=3).content == b"/stall"  # 3 + 3 > 5: no copy
    stats = pool.stats()
    assert stats["hedges"] == 0 and stats["rate_limited"] == 0
    assert stats["rate_limits"][0]["used"] == 3
    assert _targets(server) == ["/stall"]


def test_the_deadline_holds_for_both_copies(fault_server, make_pool):
    stall = _stall_then_answer(STALL * 5)  # "/stall" every time, the others at once
    server = fault_server(_first_of_each_target(stall, stall))
    pool = make_pool(server.url(), connections=3, hedge=_hedge(),
                     timeout=fastpool.Timeout(10, total=0.4))
    with pytest.raises(fastpool.ReadTimeout) as info:
        pool.get("/stall")
    assert isinstance(info.value, fastpool.MaybeSentError)
    assert "total deadline" in str(info.value)
    assert pool.stats()["hedges"] == 1
    wait_until(lambda: len(_targets(server)) == 2, what="both copies at the server")
    # Both connections were closed: the pool refills and serves the next request.
    assert pool.get("/next", hedge=False, timeout=5).content == b"/next"


def _fail_after_the_copy(then_answer: bool):
    """The primary's connection closes once its copy reached the server (whatever the
    machine's speed); the copy then answers (or closes too) once the primary is gone."""
    copy_arrived, primary_gone = threading.Event(), threading.Event()

    def first(conn, req, answer):
        copy_arrived.wait(10)
        conn.close()
        primary_gone.set()
        return False

    def then(conn, req, answer):
        copy_arrived.set()
        primary_gone.wait(10)
        conn.sleep(0.1)  # the client reads the primary's end first
        if not then_answer:
            conn.close()
            return False
        answer(conn, req)

    return _first_of_each_target(first, then)


def test_the_primary_fails_while_its_copy_answers(fault_server, make_pool):
    server = fault_server(_fail_after_the_copy(then_answer=True))
    pool = make_pool(server.url(), connections=3, hedge=_hedge())
    r = pool.get("/x")
    assert r.content == b"/x"
    stats = pool.stats()
    assert stats["hedges"] == 1 and stats["hedge_wins"] == 1 and stats["errors"] == 0


def test_both_copies_fail_with_the_maybe_sent_truth(fault_server, make_pool):
    server = fault_server(_fail_after_the_copy(then_answer=False))
    pool = make_pool(server.url(), connections=3, hedge=_hedge())
    with pytest.raises(fastpool.MaybeSentError) as info:
        pool.get("/x")
    assert isinstance(info.value, fastpool.ServerDisconnected)
    stats = pool.stats()
    assert stats["hedges"] == 1 and stats["errors"] == 1
    assert _targets(server) == ["/x", "/x"]


def test_a_pool_wide_deduplicated_hedge_is_refused(fault_server, make_pool):
    server = fault_server(faults.respond())
    with pytest.raises(ValueError, match="per request"):
        make_pool(server.url(), hedge=fastpool.Hedge(deduplicated=True))
    with pytest.raises(TypeError, match="Hedge"):
        make_pool(server.url(), hedge=0.002)
    assert server.connection_count == 0  # refused before a connection was opened


def test_a_quantile_delay_waits_for_its_samples(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer(0.3)))
    pool = make_pool(server.url(), connections=3)
    hedge = fastpool.Hedge(after="p95", min_samples=5, budget=1.0)
    # No latency measured yet: the request goes unhedged, as hedging.delay_ns decides.
    assert pool.get("/stall-0", hedge=hedge).content == b"/stall-0"
    assert pool.stats()["hedges"] == 0
    for i in range(40):  # the stalled one is now under 5 % of the samples
        pool.get(f"/w{i}", hedge=False)
    # Now the pool's p95 (the endpoint has too few samples of its own) sets the delay.
    assert pool.get("/stall-1", hedge=hedge).content == b"/stall-1"
    # (Which copy wins is the server threads' race: the delay is microseconds, so the copy
    # may reach the script first and be the one it stalls.)
    assert pool.stats()["hedges"] == 1


def test_hedged_requests_under_concurrency_each_get_their_own_answer(fault_server, make_pool):
    server = fault_server(_first_of_each_target(_stall_then_answer(0.2)))
    pool = make_pool(server.url(), connections=4, max_connections=4, hedge=_hedge())
    errors: list = []

    def worker(k: int) -> None:
        try:
            for i in range(6):
                target = f"/stall-{k}-{i}" if i % 3 == 0 else f"/q-{k}-{i}"
                assert pool.get(target).content == target.encode()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    stats = pool.stats()
    assert stats["requests"] == 18 and stats["errors"] == 0
    if not is_async(pool):
        assert stats["hedges"] >= 1


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_connection_switches_between_blocking_and_step_mode(fault_server, engine_name,
                                                              certs, tls):
    # What the sync pool's race relies on (Connection.set_blocking, both engines): steps on
    # a connection opened blocking, then blocking exchanges again; never inside an exchange.
    import select

    server = fault_server(faults.respond(), tls=certs.server if tls else None)
    with fastpool.Pool(server.url(), connections=1, engine=engine_name,
                       **tls_kwargs(certs, tls)) as pool:
        from fastpool._engine import get_engine

        engine = get_engine(engine_name)
        conn = pool._policy.idle[0].pop()
        request = b"GET /s HTTP/1.1\r\nHost: x\r\n\r\n"
        assert conn.blocking
        conn.set_blocking(False)
        assert not conn.blocking
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        conn.begin(request, False)
        rc = conn.step()
        with pytest.raises(OSError):
            conn.set_blocking(True)  # inside an exchange
        for _ in range(1000):
            if rc == engine.STEP_DONE:
                break
            poller.poll(1000)
            rc = conn.step()
        assert rc == engine.STEP_DONE and conn.take().status == 200
        conn.set_blocking(True)
        raw = conn.exchange(request, False, -1, 5_000_000_000, 0)
        assert raw.status == 200 and conn.reusable
        conn.close()
        with pytest.raises(OSError):
            conn.set_blocking(False)
