"""A closed engine Connection, on both engines: every later call fails typed and NotSent, and
none of them touches the descriptor number it once had (the kernel hands that number to the
next socket the process opens: polling or writing it would read another connection's state
or write a request into it)."""

from __future__ import annotations

import os
import socket
from time import monotonic_ns

import pytest
from support import faults

import fastpool

SECOND = 1_000_000_000
REQUEST = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("pending", [False, True], ids=["quiet", "pending"])
def test_a_closed_connection_leaves_its_old_descriptor_number_alone(engine, fault_server,
                                                                    pending):
    server = fault_server(faults.respond())
    conn = engine.Connection()
    conn.open(socket.AF_INET, server.host, server.port, None, server.host, True,
              monotonic_ns() + 5 * SECOND)
    assert conn.exchange(REQUEST, False, SECOND, SECOND, 0).status == 200
    old = conn.fileno()
    conn.close()
    assert conn.fileno() == -1 and not conn.reusable
    # Another socket now holds the old number, with bytes pending from its peer.
    mine, peer = socket.socketpair()
    try:
        if mine.fileno() != old:  # (often the kernel gave it the very number)
            os.dup2(mine.fileno(), old)
        if pending:
            peer.sendall(b"someone else's bytes")
        assert conn.stale()
        try:
            conn.exchange(REQUEST, False, SECOND, SECOND, 0)
        except fastpool.NotSentError:
            pass
        else:
            raise AssertionError("an exchange on a closed connection succeeded")
        assert conn.sent == 0
        # Nothing was read from, or written to, the socket that now has the number.
        peer.setblocking(False)
        try:
            leaked = peer.recv(100)
        except BlockingIOError:
            leaked = b""
        assert leaked == b""
        if pending:
            other = socket.socket(fileno=os.dup(old))
            try:
                assert other.recv(100) == b"someone else's bytes"
            finally:
                other.close()
    finally:
        if mine.fileno() != old:
            os.close(old)
        mine.close()
        peer.close()
