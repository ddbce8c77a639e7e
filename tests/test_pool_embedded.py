"""The Pool (both engines) against the embedded C server (fastpool._bench._server.EmbeddedServer): an
independent OpenSSL server whose own counters (accepted, requests, TLS handshakes and
resumptions) cross-check the pool's stats, and whose echo mode shows the exact request."""

from __future__ import annotations

import time

import pytest
from conftest import load_server
from pool_helpers import run_threads, wait_until  # noqa: F401
from support.pools import is_async

import fastpool

TLS_IDS = ["plain", "tls"]


@pytest.fixture
def embedded():
    """factory(**EmbeddedServer kwargs) -> a started server; all are stopped at teardown."""
    Server = load_server()
    started = []

    def make(**kwargs):
        server = Server(**kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.stop()


def pool_for(make_pool, server, **kwargs):
    if server.ca_pem is not None:
        kwargs.setdefault("verify", server.ca_pem)
    return make_pool(server.url, **kwargs)


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_connections_are_opened_once_and_reused(embedded, make_pool, tls):
    server = embedded(tls=tls)
    pool = pool_for(make_pool, server, connections=3)
    # before any request the server has accepted (and handshaken) exactly 3 connections
    wait_until(lambda: server.stats()["accepted"] == 3, what="3 accepted connections")
    st = server.stats()
    assert st["requests"] == 0 and st["open"] == 3
    if tls:
        wait_until(lambda: server.stats()["tls_handshakes"] == 3, what="3 handshakes")

    def work(t: int) -> None:
        for i in range(500):
            r = pool.get("/x", params={"t": t, "i": i})
            assert r.status_code == 200 and len(r.content) == 137

    run_threads(work, 3)
    for i in range(1500):
        assert pool.get("/y").status_code == 200
    st = server.stats()
    assert st["accepted"] == 3 and st["requests"] == 3000 and st["bad_requests"] == 0
    s = pool.stats()
    assert s["connects"] == 3 and s["requests"] == 3000 and s["errors"] == 0


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_reconnects_resume_sessions_server_side(embedded, make_pool, version):
    """close_after=10 (announced with Connection: close): the pool reconnects every 10
    requests; each reconnect resumes the TLS session, as the server counts them too."""
    server = embedded(tls=True, tls_min=version, tls_max=version, close_after=10)
    pool = pool_for(make_pool, server, connections=1)
    for i in range(100):
        r = pool.get(f"/r{i}")
        assert r.status_code == 200
    # the 100th response closed its connection too: let the background refill finish
    wait_until(lambda: pool.stats()["idle"] == 1, what="the refill to settle")
    s = pool.stats()
    assert s["errors"] == 0 and s["retries"] == 0 and s["requests"] == 100
    assert s["reconnects"] >= 9
    assert s["resumed"] == s["reconnects"]
    wait_until(lambda: server.stats()["tls_handshakes"] == s["connects"],
               what="the server's handshake count to settle")
    st = server.stats()
    assert st["tls_resumed"] == s["resumed"]
    assert st["requests"] == 100


def test_idle_timeout_close_is_transparent(embedded, make_pool):
    server = embedded(idle_timeout_ms=150)
    pool = pool_for(make_pool, server, connections=2)
    assert pool.get("/a").status_code == 200
    if is_async(pool):
        # Its readers see the closes at once and the refill reopens: the server's count of
        # open connections never settles at 0.
        wait_until(lambda: pool.stats()["stale"] >= 2, what="the server to close both")
    else:
        wait_until(lambda: server.stats()["open"] == 0, what="the server to close idle ones")
    for i in range(3):
        assert pool.get(f"/b{i}").status_code == 200
    s = pool.stats()
    assert s["errors"] == 0 and s["stale"] >= 1
    assert server.stats()["requests"] == 4  # nothing sent twice


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_echo_shows_the_exact_request(embedded, make_pool, tls):
    server = embedded(tls=tls, echo=True)
    pool = pool_for(make_pool, server, connections=1, headers={"X-Api-Key": "k"})
    body = b'{"symbol":"BTCUSDT","qty":"1"}'
    r = pool.post("/api/v3/order", params={"a": "1 2"}, content=body,
                  headers={"X-Sig": "s1"})
    raw = r.content
    head, sep, got_body = raw.partition(b"\r\n\r\n")
    assert sep and got_body == body
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v3/order?a=1%202 HTTP/1.1"
    fields = [line.split(b": ", 1) for line in lines[1:]]
    names = [n.lower() for n, _ in fields]
    assert sorted(names) == sorted([b"host", b"user-agent", b"x-api-key", b"x-sig",
                                    b"content-length"])
    values = {n.lower(): v for n, v in fields}
    assert values[b"host"] == f"127.0.0.1:{server.port}".encode()
    assert values[b"content-length"] == str(len(body)).encode()
    r = pool.get("/g")
    assert r.content == (b"GET /g HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: fastpool/0.1.0"
                         b"\r\nX-Api-Key: k\r\n\r\n" % server.port)


@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
def test_chunked_bodies_of_every_chunk_size(embedded, make_pool, chunk_size):
    body = bytes(range(256)) * 64  # 16 KiB
    server = embedded(body=body, chunked=True, chunk_size=chunk_size)
    pool = pool_for(make_pool, server, connections=1)
    for _ in range(3):
        r = pool.get("/c")
        assert r.headers["transfer-encoding"] == "chunked"
        assert r.content == body
    assert pool.stats()["connects"] == 1


def test_large_body_and_bodiless_statuses(embedded, make_pool):
    big = embedded(body_size=8 << 20)
    pool = pool_for(make_pool, big, connections=1)
    r = pool.get("/big")
    assert len(r.content) == 8 << 20 and r.headers["content-length"] == str(8 << 20)
    assert pool.head("/big").content == b""
    assert len(pool.get("/again").content) == 8 << 20
    empty = embedded(status=204)
    p2 = pool_for(make_pool, empty, connections=1)
    for _ in range(3):
        r = p2.get("/none")
        assert r.status_code == 204 and r.content == b""
    assert empty.stats()["accepted"] == 1


def test_status_error_is_a_response(embedded, make_pool):
    server = embedded(status=503, body=b'{"code":-1001}')
    pool = pool_for(make_pool, server, connections=1)
    r = pool.get("/x")
    assert r.status_code == 503 and r.json() == {"code": -1001}
    with pytest.raises(fastpool.HTTPStatusError) as info:
        r.raise_for_status()
    assert not isinstance(info.value, (fastpool.MaybeSentError, fastpool.NotSentError))
    assert info.value.status_code == 503 and info.value.response is r


def test_read_timeout_then_recovery(embedded, make_pool):
    server = embedded(delay_ms=300)
    pool = pool_for(make_pool, server, connections=1,
                    timeout=fastpool.Timeout(5.0, read=0.05))
    with pytest.raises(fastpool.ReadTimeout):
        pool.post("/order", content=b"once")
    r = pool.get("/next", timeout=5.0)
    assert r.status_code == 200
    wait_until(lambda: server.stats()["requests"] == 2, what="two requests at the server")
    time.sleep(0.4)  # bounded: longer than the delay, so a re-sent POST would show
    assert server.stats()["requests"] == 2
    assert server.stats()["accepted"] >= 2
