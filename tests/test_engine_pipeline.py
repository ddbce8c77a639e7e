"""The engines' pipelining primitives, on both engines, in both modes: Connection.pipeline()
(blocking) and begin() / step() / take_next() / take() (steps), over plain TCP and TLS.

A burst of requests is written at once; the responses are read in order, the bytes after one
response being the start of the next. Whatever makes the framing doubtful ends the pipeline:
the responses before it are kept, the failure says what happened, the connection is not
reusable.
"""

from __future__ import annotations

import select
import socket
from time import monotonic_ns

import pytest
from support import faults

import fastpool

TLS_IDS = ["plain", "tls"]
MODES = ["blocking", "steps"]
SECOND = 1_000_000_000


def _connect(engine, server, certs, tls: bool, blocking: bool):
    ctx = engine.TLSContext(verify=True, ca_file=str(certs.ca)) if tls else None
    conn = engine.Connection()
    conn.open(socket.AF_INET, server.host, server.port, ctx, server.host, blocking,
              monotonic_ns() + 5 * SECOND)
    return conn


def _burst(items) -> tuple[bytes, list[bool]]:
    """(method, target) pairs as one buffer, and which are HEAD."""
    data = b"".join(f"{m} {t} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for m, t in items)
    return data, [m == "HEAD" for m, _ in items]


def _run_steps(conn, burst: bytes, heads: list[bool], timeout: float = 5.0):
    """The step-mode twin of Connection.pipeline(): (raws, error), waiting in poll()."""
    raws: list = []
    end = monotonic_ns() + int(timeout * SECOND)
    conn.begin(burst, heads[0])
    i = 0
    try:
        rc = conn.step()
        while True:
            if rc == 0:  # STEP_DONE
                if i == len(heads) - 1:
                    raws.append(conn.take())
                    return raws, None
                i += 1
                raws.append(conn.take_next(heads[i]))
                rc = conn.step()
                continue
            left = end - monotonic_ns()
            if left <= 0:
                return raws, TimeoutError("the test's own bound")
            p = select.poll()
            p.register(conn.fileno(), select.POLLIN if rc == 1 else select.POLLOUT)
            p.poll(left / 1e6)
            rc = conn.step()
    except fastpool.FastpoolError as exc:
        return raws, exc


def _pipeline(engine, server, certs, tls, mode, items, *, read: float = 5.0,
              total: float = 0.0):
    conn = _connect(engine, server, certs, tls, blocking=mode == "blocking")
    burst, heads = _burst(items)
    if mode == "blocking":
        deadline = monotonic_ns() + int(total * SECOND) if total else 0
        raws, error = conn.pipeline(burst, heads, 5 * SECOND, int(read * SECOND), deadline)
    else:
        raws, error = _run_steps(conn, burst, heads, timeout=total or read)
    return conn, raws, error


def _header(raw, engine, name: bytes) -> str:
    values = engine.header_values(raw.head, raw.spans, name)
    return values[0] if values else ""


def _answer_together(n: int) -> faults.Behavior:
    """Reads n requests, then writes their n responses in one send: the client's reads hold
    several responses at once (and, over TLS, one record carries them)."""

    def run(conn: faults.FaultConnection) -> None:
        reqs = [conn.read_request() for _ in range(n)]
        if all(r is not None for r in reqs):
            conn.send(b"".join(
                faults.http_response(200, r.target.encode(),
                                     [("X-Request-Target", r.target)], head=r.method == "HEAD")
                for r in reqs))
        while (req := conn.read_request()) is not None:  # then one by one
            conn.send(faults.http_response(200, req.target.encode(),
                                           [("X-Request-Target", req.target)]))
        conn.close()

    return faults.Behavior(f"answer_together[{n}]", run)


def _script(*responses: bytes, then: str = "hold") -> faults.Behavior:
    """Reads one request per response and answers it with that response; then holds the
    connection open (or closes it)."""

    def run(conn: faults.FaultConnection) -> None:
        for data in responses:
            if conn.read_request() is None:
                break
            conn.send(data)
        if then == "hold":
            conn.hold(10.0)
        conn.close()

    return faults.Behavior("script", run)


# --- the happy path ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "together"])
def test_responses_in_order(engine, fault_server, certs, tls, mode, together):
    items = [("GET", f"/q/{i}") for i in range(10)]
    behavior = _answer_together(10) if together else faults.respond()
    server = fault_server(behavior, tls=certs.server if tls else None)
    conn, raws, error = _pipeline(engine, server, certs, tls, mode, items)
    assert error is None
    assert [_header(r, engine, b"x-request-target") for r in raws] == [t for _, t in items]
    assert all(r.status == 200 for r in raws)
    assert conn.reusable
    # the connection carries an ordinary request afterwards
    raw = conn.exchange(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n", False, SECOND, 5 * SECOND,
                        0) if mode == "blocking" else _run_steps(conn, *_burst(
                            [("GET", "/after")]))[0][0]
    assert _header(raw, engine, b"x-request-target") == "/after"
    conn.close()
    # one write: the server found every request of the burst in its buffer at once
    assert [q.target for q in server.requests] == [t for _, t in items] + ["/after"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_head_mixed_with_get(engine, fault_server, certs, tls, mode):
    items = [("GET", "/a"), ("HEAD", "/b"), ("HEAD", "/c"), ("GET", "/d")]
    server = fault_server(_answer_together(4), tls=certs.server if tls else None)
    conn, raws, error = _pipeline(engine, server, certs, tls, mode, items)
    assert error is None
    assert [r.body for r in raws] == [b"/a", b"", b"", b"/d"]
    assert [_header(r, engine, b"content-length") for r in raws] == ["2"] * 4
    assert conn.reusable
    conn.close()


#: A burst's answers in every framing a response may have: Content-Length, HEAD (a length but
#: no body), chunked with a trailer, an interim 100 before a 204, an empty body.
MIXED = [("GET", "/len"), ("HEAD", "/head"), ("GET", "/chunked"), ("GET", "/interim"),
         ("GET", "/empty")]
MIXED_RESPONSES = (
    b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n2;x=1\r\nuv\r\n"
    b"0\r\nX-Trailer: t\r\n\r\n"
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")


def _drip(data: bytes, n: int, piece: int) -> faults.Behavior:
    """Reads n requests, then sends data in pieces of `piece` bytes, a millisecond apart: the
    boundaries between responses fall anywhere in the client's reads."""

    def run(conn: faults.FaultConnection) -> None:
        if all(conn.read_request() is not None for _ in range(n)):
            for i in range(0, len(data), piece):
                conn.send(data[i:i + piece])
                conn.sleep(0.001)
        conn.hold(10.0)
        conn.close()

    return faults.Behavior(f"drip[{piece}]", run)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
@pytest.mark.parametrize("piece", [1, 7, 64, len(MIXED_RESPONSES)])
def test_every_framing_split_anywhere(engine, fault_server, certs, tls, mode, piece):
    server = fault_server(_drip(MIXED_RESPONSES, len(MIXED), piece),
                          tls=certs.server if tls else None)
    conn, raws, error = _pipeline(engine, server, certs, tls, mode, MIXED)
    assert error is None
    assert [(r.status, r.body) for r in raws] == [(200, b"abc"), (200, b""), (200, b"xyzuv"),
                                                  (204, b""), (200, b"")]
    assert conn.reusable
    conn.close()


# --- framing doubts end the pipeline -------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_server_closes_after_k_responses(engine, fault_server, certs, tls, mode):
    server = fault_server(faults.stale_after(3), tls=certs.server if tls else None)
    conn, raws, error = _pipeline(engine, server, certs, tls, mode,
                                  [("GET", f"/{i}") for i in range(6)])
    assert len(raws) == 3
    assert isinstance(error, fastpool.ServerDisconnected)  # MaybeSent: it was written
    assert not conn.reusable
    conn.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
@pytest.mark.parametrize("close", ["connection-close", "http/1.0"])
def test_response_that_ends_keep_alive_ends_the_pipeline(engine, fault_server, certs, tls,
                                                         mode, close):
    ok = faults.http_response(200, b"ok")
    last = (faults.http_response(200, b"bye", keep_alive=False) if close == "connection-close"
            else b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nbye")
    server = fault_server(_script(ok, last, ok, ok), tls=certs.server if tls else None)
    conn, raws, error = _pipeline(engine, server, certs, tls, mode,
                                  [("GET", f"/{i}") for i in range(4)])
    assert [r.body for r in raws] == [b"ok", b"bye"]
    assert isinstance(error, fastpool.ServerDisconnected)
    assert "after an earlier response" in str(error)
    assert not conn.reusable
    conn.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
@pytest.mark.parametrize("together", [False, True], ids=["one-by-one", "together"])
def test_malformed_response_in_the_middle(engine, fault_server, certs, tls, mode, together):
    ok = faults.http_response(200, b"ok")
    bad = faults.MALFORMED_RESPONSES["header-no-colon"]
    behavior = (_script(ok + bad + ok) if together else _script(ok, bad, ok))
    server = fault_server(behavior, tls=certs.server if tls else None)
    conn, raws, error = _pipeline(engine, server, certs, tls, mode,
                                  [("GET", f"/{i}") for i in range(3)], read=2.0)
    assert [r.body for r in raws] == [b"ok"]
    assert isinstance(error, fastpool.ProtocolError)
    assert not conn.reusable
    conn.close()


@pytest.mark.parametrize("mode", MODES)
def test_bytes_after_the_last_response_make_the_connection_unusable(engine, fault_server,
                                                                    certs, mode):
    ok = faults.http_response(200, b"ok")
    server = fault_server(_script(ok, ok + b"HTTP/1.1 200 OK\r\n"))
    conn, raws, error = _pipeline(engine, server, certs, False, mode,
                                  [("GET", "/0"), ("GET", "/1")])
    assert error is None and len(raws) == 2
    assert not conn.reusable  # unsolicited bytes: never carries another request
    conn.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_read_timeout_in_the_burst(engine, fault_server, certs, tls, mode):
    ok = faults.http_response(200, b"ok")
    server = fault_server(_script(ok, ok), tls=certs.server if tls else None)  # then silent
    conn, raws, error = _pipeline(engine, server, certs, tls, mode,
                                  [("GET", f"/{i}") for i in range(4)], read=0.3, total=0.6)
    assert len(raws) == 2
    if mode == "blocking":
        assert isinstance(error, fastpool.ReadTimeout)
    else:  # the test's own poll bound (a driver maps it to its phase's timeout)
        assert isinstance(error, TimeoutError)
    conn.close()


@pytest.mark.parametrize("mode", MODES)
def test_stale_connection_sends_nothing(engine, fault_server, certs, mode):
    """The pre-write check covers the burst: a server that spoke first gets no byte."""
    def run(conn: faults.FaultConnection) -> None:
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        conn.hold(5.0)
        conn.close()

    server = fault_server(faults.Behavior("speaks-first", run))
    conn = _connect(engine, server, certs, False, blocking=mode == "blocking")
    deadline = monotonic_ns() + 5 * SECOND
    while not conn.stale() and monotonic_ns() < deadline:  # until its bytes arrived
        select.select([], [], [], 0.01)
    burst, heads = _burst([("GET", "/0"), ("GET", "/1")])
    if mode == "blocking":
        raws, error = conn.pipeline(burst, heads, SECOND, SECOND, 0)
    else:
        raws, error = _run_steps(conn, burst, heads)
    assert raws == [] and isinstance(error, fastpool.StaleConnection)
    assert conn.sent == 0
    conn.close()
    server.close()
    assert server.connections[0].received == b""


def test_a_pipeline_has_one_request_at_least(engine, fault_server, certs):
    server = fault_server(faults.respond())
    conn = _connect(engine, server, certs, False, blocking=True)
    with pytest.raises(ValueError):
        conn.pipeline(b"", [], SECOND, SECOND, 0)
    conn.close()


@pytest.mark.parametrize("tls", [False, True], ids=TLS_IDS)
def test_timings_of_pipelined_responses(engine, fault_server, certs, tls):
    server = fault_server(_answer_together(3), tls=certs.server if tls else None)
    conn, raws, error = _pipeline(engine, server, certs, tls, "blocking",
                                  [("GET", f"/{i}") for i in range(3)])
    assert error is None
    for raw in raws:  # one burst: one start, one end of the write
        assert raw.t_start == raws[0].t_start and raw.t_written == raws[0].t_written
        assert raw.t_start <= raw.t_written <= raw.t_first_byte <= raw.t_complete
    conn.close()
