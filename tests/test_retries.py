"""Retries through every driver (Pool, AsyncPool on asyncio and uvloop), both engines."""

from __future__ import annotations

import pytest
from support import faults

import fastpool


def _read_then_close_then_stall() -> faults.Behavior:
    """TLS: the first connection reads one request and closes without answering (the request
    may have been acted on); later connections stall in the handshake."""

    def run(conn: faults.FaultConnection) -> None:
        if conn.record.index == 0:
            if conn.server._handshake(conn):
                conn.read_request()
                conn.close()
            return
        conn.read_raw()
        conn.hold(3.0)
        conn.close()

    return faults.Behavior("read-then-close-then-stall", run, auto_handshake=False)


def test_a_retry_failing_before_sending_still_reports_maybe_sent(make_pool, certs,
                                                                  fault_server):
    server = fault_server(_read_then_close_then_stall(), tls=certs.server)
    pool = make_pool(server.url(), connections=1, verify=str(certs.ca),
                     timeout=fastpool.Timeout(5, connect=0.5, pool=0.5))
    with pytest.raises(fastpool.MaybeSentError) as info:
        pool.delete("/api/v3/order", params={"orderId": 1}, retries=1)
    exc = info.value
    # The first attempt reached the server; the retry never sent a byte (a pool timeout or
    # a connect timeout): the caller must still hear "may have been sent".
    assert isinstance(exc, fastpool.ServerDisconnected) and exc.code == "no_response"
    assert isinstance(exc.__cause__, fastpool.NotSentError)
    assert [r.target for r in server.requests] == ["/api/v3/order?orderId=1"]
    assert pool.stats()["errors"] == 1 and pool.stats()["retries"] == 1
