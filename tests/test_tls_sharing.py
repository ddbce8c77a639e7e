"""Pools with the same TLS configuration share one TLS context: the second pool's first
handshakes resume the sessions the first pool got. A different configuration never does."""

from __future__ import annotations

import pytest
from conftest import load_server
from pool_helpers import sync_pool, wait_until  # noqa: F401  (fixture)

import fastpool


@pytest.fixture(params=["1.2", "1.3"])
def tls_server(request, tmp_path):
    Server = load_server()  # the embedded server is C (both engines are tested against it)
    with Server(tls=True, tls_min=request.param, tls_max=request.param) as srv:
        ca = tmp_path / "ca.pem"
        srv.write_ca(str(ca))
        yield srv, str(ca)


def test_second_pool_resumes_the_first_pools_sessions(tls_server, sync_pool):
    srv, ca = tls_server
    first = sync_pool(srv.url, connections=2, verify=ca)
    first.get("/")  # TLS 1.3 tickets arrive with the first response
    assert first.stats()["resumed"] == 0
    second = sync_pool(srv.url, connections=2, verify=ca)
    assert second.stats()["resumed"] == 2
    assert second.get("/").status_code == 200
    # The server counts a TLS 1.3 handshake when it reads the client's Finished, which for a
    # connection that has not sent a request yet can come a little later.
    wait_until(lambda: srv.stats()["tls_handshakes"] == 4, what="server handshake count")
    assert srv.stats()["tls_resumed"] == 2


def test_different_configuration_does_not_share(tls_server, sync_pool):
    srv, ca = tls_server
    first = sync_pool(srv.url, connections=1, verify=ca)
    first.get("/")
    with pytest.warns(fastpool.InsecureWarning):
        unverified = sync_pool(srv.url, connections=1, verify=False)
    pinned = sync_pool(srv.url, connections=1, verify=ca, tls_max="1.3", tls_min="1.2")
    assert unverified.stats()["resumed"] == 0
    assert pinned.stats()["resumed"] == 0
    assert srv.stats()["tls_resumed"] == 0


#: Threads that open a Pool's / an AsyncPool's initial connections (fastpool._drivers).
_SYNC_OPENERS, _ASYNC_OPENERS = 16, 8


@pytest.mark.parametrize("driver", ["sync", "asyncio"])
def test_a_pools_own_initial_fill_resumes_its_sessions(tls_server, sync_pool, engine_name,
                                                       driver):
    """A fresh context (no session yet): each opener's first two connections make full
    handshakes; before each later open it reads the tickets its connection two back got, so
    the rest resume (fastpool._drivers.connect.open_all). Every connection still works."""
    import asyncio

    srv, ca = tls_server
    n = 48
    if driver == "sync":
        pool = sync_pool(srv.url, connections=n, verify=ca)
        resumed = pool.stats()["resumed"]
        answers = [pool.get("/").status_code for _ in range(n)]
    else:
        async def run() -> tuple:
            async with fastpool.AsyncPool(srv.url, connections=n, verify=ca,
                                          engine=engine_name) as apool:
                got = await asyncio.gather(*(apool.get("/") for _ in range(n)))
                return apool.stats()["resumed"], [r.status_code for r in got]

        resumed, answers = asyncio.run(run())
    openers = _SYNC_OPENERS if driver == "sync" else _ASYNC_OPENERS
    assert n - 2 * openers <= resumed <= n
    assert answers == [200] * n
