"""TLSContext and Connection on socket + ssl: the pure twin of csrc/fp_tls.c and fp_conn.c.

Same modes, same decisions, same errors (through fastpool._model.failures):
- blocking (sync pools): plain sockets stay blocking; a read waits in the kernel under
  SO_RCVTIMEO, a write is a send(MSG_DONTWAIT) that waits in poll() only when the socket
  buffer is full, so an exchange is one check, one send and one recv, as in C. TLS sockets
  use Python's timeout mode instead: CPython's ssl module retries SSL_read forever on a
  blocking socket whose kernel timeout expired (PySSL_select reports SOCKET_IS_BLOCKING), so
  it cannot use the kernel-timeout trick.
- steps (async pools): non-blocking sockets; step() goes as far as it can and says what to
  wait for. ssl's SSLSocket does not read ahead, so when it says "want read" no complete
  record is buffered in user space and waiting on the fd is safe.

The limits mean what fp_conn.h says: write = the longest stall while the request is written,
read = the longest silence between response bytes, deadline = a hard end. Two approximations
the stdlib imposes: under TLS a write stall counts from the start of the current record
(SSLSocket.send has no partial writes; a request is sent in records of _TLS_CHUNK bytes), so
it can only end early, by what that record's first part took; and on a plain socket a signal
whose handler returns restarts the kernel's receive timeout (CPython retries the recv,
PEP 475), where the C engine goes on with the time that was left.

Before each request the peer must have said nothing (see fp_conn.h); any exception that is not
a FastpoolError escaping an exchange (a signal handler's KeyboardInterrupt, ...) closes the
connection and is marked with fastpool._model.failures.interrupted before it propagates.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
import struct
import threading
from time import monotonic_ns
from typing import Optional

from ..._model import failures as F
from ..._model.codes import PARSE_CODES
from ..._model.errors import FastpoolError, ProtocolError, TLSError
from ..._model.limits import DEFAULT_LIMITS
from ..._model.response import RawExchange, RequestInfo, Response
from ..._model.tls_policy import TLS12_CIPHERS
from . import _pollbits
from ._http import RawResponse, ResponseParser

STEP_DONE = 0
STEP_WANT_READ = 1
STEP_WANT_WRITE = 2

_TLS_VERSIONS: dict[Optional[str], Optional[ssl.TLSVersion]] = {
    None: None, "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_RECV_SIZE = 65536
_POLLIN = _pollbits.POLLIN
_POLLOUT = _pollbits.POLLOUT
_STALE_EVENTS = _POLLIN | _pollbits.POLLERR | _pollbits.POLLHUP | _pollbits.POLLRDHUP
_MSG_DONTWAIT = _pollbits.MSG_DONTWAIT
#: A TLS request is written a record at a time, so a write stall is timed per record.
_TLS_CHUNK = 16384
_CLOSED_NO_RESPONSE = "the server closed the connection without responding"
_CLOSED_TRUNCATED = "the server closed the connection before the response was complete"
_RESET_NO_RESPONSE = "the server reset the connection without responding"
_RESET_TRUNCATED = "the server reset the connection before the response was complete"
_RESETS = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
# What the peer did while it had nothing to say (Connection._peer_state).
_PEER_QUIET, _PEER_SPOKE, _PEER_CLOSED = 0, 1, 2


class TLSContext:
    """One client TLS configuration and its resumable session (twin of fp_tls)."""

    def __init__(self, *, verify=True, ca_file=None, ca_pem=None, cert_file=None,
                 key_file=None, min_version=None, max_version=None) -> None:
        if min_version not in _TLS_VERSIONS or max_version not in _TLS_VERSIONS:
            raise ValueError("TLS versions are '1.2', '1.3' or None")
        try:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.minimum_version = _TLS_VERSIONS[min_version] or ssl.TLSVersion.TLSv1_2
            maximum = _TLS_VERSIONS[max_version]  # (None exactly when max_version is)
            if maximum is not None:
                ctx.maximum_version = maximum
            ctx.options |= (ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
                            | getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0))
            # The TLS 1.2 offer of fastpool._model.tls_policy. Python's ssl (3.9-3.13) cannot
            # set the TLS 1.3 suites or the groups: OpenSSL's defaults are offered for those
            # (the same three TLS 1.3 suites; its default group list).
            ctx.set_ciphers(TLS12_CIPHERS)
            if verify:
                if ca_pem is not None:
                    ctx.load_verify_locations(cadata=bytes(ca_pem).decode("ascii"))
                elif ca_file is not None:
                    ctx.load_verify_locations(cafile=ca_file)
                else:  # honours SSL_CERT_FILE / SSL_CERT_DIR, like fp_tls
                    ctx.set_default_verify_paths()
            else:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if cert_file:
                ctx.load_cert_chain(cert_file, key_file)
            ctx.set_alpn_protocols(["http/1.1"])
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise TLSError(f"cannot build the TLS context: {exc}") from None
        self._ctx = ctx
        self.verify = bool(verify)
        self._lock = threading.Lock()
        self._session: Optional[ssl.SSLSession] = None
        self._session_host = ""

    def session_for(self, host: str) -> Optional[ssl.SSLSession]:
        with self._lock:
            return self._session if self._session_host == host else None

    def keep(self, session: Optional[ssl.SSLSession], host: str) -> None:
        """Keeps a connection's session for resumption. Only verified handshakes get here
        (with verification on, a failed one raises), as in fp_tls's session hook. (Callers
        read ``SSLSocket.session`` once: CPython copies the session, certificates and all, on
        every read of it, ~150 us.)"""
        if session is not None and (session.has_ticket or session.id):
            with self._lock:
                self._session = session
                self._session_host = host

    def forget_session(self) -> None:
        with self._lock:
            self._session = None
            self._session_host = ""


def _wait(sock, events: int, deadline_ns: int) -> bool:
    """Waits for events on sock until deadline_ns (0 = forever). True when ready."""
    poller = select.poll()
    poller.register(sock, events)
    while True:
        if deadline_ns:
            left = deadline_ns - monotonic_ns()
            if left <= 0:
                return False
            timeout_ms = (left + 999_999) // 1_000_000
        else:
            timeout_ms = None
        if poller.poll(timeout_ms):
            return True
        if deadline_ns and monotonic_ns() >= deadline_ns:
            return False


def _timeval(us: int) -> bytes:
    return struct.pack("ll", us // 1_000_000, us % 1_000_000)


class Connection:
    """One keep-alive connection on socket + ssl (see fastpool._engine)."""

    def __init__(self, limits=None, bufsize: int = 16384) -> None:
        self._limits = DEFAULT_LIMITS if limits is None else limits
        self._sock: Optional[socket.socket] = None
        self._tls_sock: Optional[ssl.SSLSocket] = None
        self._io: Optional[socket.socket] = None  # what to send/recv on (socket or SSLSocket)
        self._tls: Optional[TLSContext] = None
        self._host = ""
        self._session_kept = False
        self.blocking = False
        self.reusable = False
        self.resumed = False
        # The pool's bookkeeping (see _core.Connection and fastpool._policy.lifecycle).
        self.lane = self.state = 0
        self.tended = False
        self.born_ns = self.retire_at_ns = self.uses = 0
        self.retire_uses = 1 << 62
        self.rtt_ns = 0
        self.address = 0
        self._rcvtimeo_us = -1
        # select.poll on the socket, for the pre-write check (kept by close(), like the fd
        # number it was registered with).
        self._poller: Optional[select.poll] = None
        self._exchanges = 0         # begun since the connection opened
        self._checked = False       # the current exchange made its pre-write check
        self._request: Optional[memoryview] = None
        self._sent = 0
        self._send_attempted = False
        self._parser: Optional[ResponseParser] = None
        self._head = False
        self._exchanging = False
        self._t_start = self._t_written = self._t_first_byte = self._t_idle = 0
        self.received = 0
        self._pipe_error: Optional[FastpoolError] = None  # take_next's, for the next step()

    # ---- opening --------------------------------------------------------------------------

    def open(self, family: int, ip: str, port: int, tls: Optional[TLSContext], host: str,
             blocking: bool, deadline_ns: int) -> None:
        self.close()
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            rc = sock.connect_ex((ip, port))
            if rc not in (0, errno.EINPROGRESS):
                raise F.failure(F.CONNECT, f"connect to {ip} port {port}: {os.strerror(rc)}")
            if rc:
                if not _wait(sock, _POLLOUT, deadline_ns):
                    raise F.failure(F.CONNECT_TIMEOUT, f"connect to {ip} port {port} timed out")
                rc = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if rc:
                    raise F.failure(F.CONNECT, f"connect to {ip} port {port}: {os.strerror(rc)}")
            io = sock
            tls_sock: Optional[ssl.SSLSocket] = None
            if tls is not None:
                # wrap_socket detaches sock: from here on the SSLSocket owns the descriptor,
                # and it is the one to close (and whose fileno() the async pool waits on).
                io = sock = tls_sock = self._handshake(sock, tls, host, deadline_ns)
            if blocking:
                if tls is None:
                    sock.setblocking(True)
                    self._rcvtimeo_us = 0
                else:
                    io.settimeout(None)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._tls_sock = tls_sock
        self._io = io
        self._tls = tls
        self._host = host
        poller = self._poller = select.poll()
        poller.register(io, _STALE_EVENTS)
        self._exchanges = 0
        self._session_kept = False
        self.blocking = blocking
        self.reusable = True
        self._exchanging = False
        self._t_idle = monotonic_ns()

    def _handshake(self, sock: socket.socket, tls: TLSContext, host: str,
                   deadline_ns: int) -> ssl.SSLSocket:
        try:
            tsock = tls._ctx.wrap_socket(sock, server_hostname=host,
                                         do_handshake_on_connect=False,
                                         session=tls.session_for(host))
        except (ssl.SSLError, ValueError) as exc:
            raise F.failure(F.TLS, f"cannot configure the TLS connection: {exc}") from None
        try:
            return self._handshake_steps(tsock, tls, host, deadline_ns)
        except BaseException:
            tsock.close()  # sock is detached: the descriptor is tsock's to close
            raise

    def _handshake_steps(self, tsock: ssl.SSLSocket, tls: TLSContext, host: str,
                         deadline_ns: int) -> ssl.SSLSocket:
        while True:
            try:
                tsock.do_handshake()
                break
            except ssl.SSLWantReadError:
                ready = _wait(tsock, _POLLIN, deadline_ns)
            except ssl.SSLWantWriteError:
                ready = _wait(tsock, _POLLOUT, deadline_ns)
            except ssl.SSLCertVerificationError as exc:
                raise F.failure(F.TLS, f"TLS handshake failed: certificate verify failed: "
                                       f"{exc.verify_message} ({host})",
                                verify=exc.verify_code) from None
            except ssl.SSLError as exc:
                raise F.failure(F.TLS, f"TLS handshake failed: {exc.reason or exc} "
                                       f"({host})") from None
            except OSError as exc:
                raise F.failure(F.TLS, f"TLS handshake with {host} failed: connection closed "
                                       f"by the server ({exc.strerror or exc})") from None
            if not ready:
                raise F.failure(F.CONNECT_TIMEOUT, f"TLS handshake with {host} timed out")
        alpn = tsock.selected_alpn_protocol()
        if alpn not in (None, "http/1.1"):
            raise F.failure(F.TLS, f"server {host} selected ALPN protocol '{alpn}', not http/1.1")
        # (None only before a handshake: typeshed's Optional does not apply here.)
        self.resumed = bool(tsock.session_reused)
        if tsock.version() != "TLSv1.3":
            tls.keep(tsock.session, host)  # TLS 1.2 sessions exist after the handshake
            self._session_kept = True
        return tsock

    # ---- state ----------------------------------------------------------------------------

    @property
    def last_used_ns(self) -> int:
        """When the connection last went idle (opened, or its last response complete)."""
        return self._t_idle

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    @property
    def tls_version(self) -> str:
        return self._tls_sock.version() or "" if self._tls_sock is not None else ""

    @property
    def sent(self) -> int:
        """Bytes of the current request that may have reached the wire. SSLSocket.send()
        reports nothing when SSL_write stops after some of its records reached the socket
        (CPython's ssl has no partial writes), so under TLS an attempted send counts as
        sent (MaybeSent, as fp_conn's wire count says) rather than a NotSent the pool
        would move to another connection."""
        if self._sent or self._tls_sock is None:
            return self._sent
        return 1 if self._send_attempted else 0

    @property
    def written(self) -> bool:
        """Whether the whole current request has been written."""
        return self._t_written != 0

    def stale(self) -> bool:
        if self._io is None or self._exchanging or not self.reusable:
            return True
        return self._peer_state() != _PEER_QUIET

    def _peer_state(self) -> int:
        """What the peer did where it had nothing to say (RFC 9112 §9.3): _PEER_QUIET,
        _PEER_SPOKE or _PEER_CLOSED; never blocks (fp_conn's peer_state)."""
        tsock = self._tls_sock
        if tsock is not None and tsock.pending():
            return _PEER_SPOKE  # decrypted bytes nobody asked for
        poller = self._poller
        if poller is None:  # closed (its fd number may already belong to another socket)
            return _PEER_CLOSED
        events = poller.poll(0)
        if not events:
            return _PEER_QUIET
        if events[0][1] & ~_POLLIN:
            return _PEER_CLOSED
        if tsock is None:
            return _PEER_SPOKE  # an idle HTTP/1.1 connection has nothing to say but EOF
        # TLS 1.3 session tickets make the socket readable without the peer having spoken.
        previous = tsock.gettimeout()
        tsock.setblocking(False)
        try:
            return _PEER_SPOKE if tsock.recv(1) else _PEER_CLOSED
        except ssl.SSLWantReadError:
            self._keep_session()
            return _PEER_QUIET
        except (ssl.SSLError, OSError):
            return _PEER_CLOSED
        finally:
            tsock.settimeout(previous)

    def _check_quiet(self) -> None:
        """Before a request is written: bytes from the peer would be taken for its response,
        so they fail it with nothing written (StaleConnection, NotSent), as in fp_conn."""
        self._checked = True
        peer = self._peer_state()
        if peer == _PEER_QUIET:
            return
        reused = self._exchanges > 1
        if peer == _PEER_CLOSED:
            message = ("the server closed the idle connection" if reused
                       else "the server closed the connection before the request")
        else:
            message = ("the server sent bytes nobody asked for on the idle connection" if reused
                       else "the server sent bytes before the request")
        self.reusable = False
        self._exchanging = False
        raise F.failure(F.WRITE, message, sent=0)

    def close(self) -> None:
        self.reusable = False
        self._exchanging = False
        self._request = None
        self._parser = None
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = self._tls_sock = self._io = None
                self._poller = None

    # ---- exchanges ------------------------------------------------------------------------

    def set_blocking(self, blocking: bool) -> None:
        """Between exchanges: the mode of the exchanges that follow (fp_conn_set_blocking).
        Plain sockets keep their SO_RCVTIMEO (a non-blocking socket ignores it); TLS sockets
        get their per-wait timeouts from exchange() itself."""
        io = self._io
        if io is None:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        if self._exchanging:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        blocking = bool(blocking)
        if blocking == self.blocking:
            return
        if self._tls_sock is None:
            io.setblocking(blocking)  # (a plain connection's _io is its _sock)
        else:
            self._tls_sock.settimeout(None if blocking else 0.0)
        self.blocking = blocking

    def begin(self, request: bytes, head: bool) -> None:
        self._request = memoryview(request)
        self._sent = 0
        self._send_attempted = False
        self._head = head
        self._parser = ResponseParser(head, self._limits)
        self._t_start = monotonic_ns()
        self._t_written = self._t_first_byte = 0
        self.received = 0
        self._exchanges += 1
        self._checked = False
        self._exchanging = True

    def _write(self, write_timeout_ns: int, deadline_ns: int) -> None:
        """Blocking: the pre-write check, then the request begun (exchange, pipeline)."""
        self._check_quiet()
        if deadline_ns and self._t_start >= deadline_ns:
            raise self._fail(F.WRITE_TIMEOUT, deadline_ns)
        if self._tls_sock is None:
            self._send_plain(write_timeout_ns, deadline_ns)
        else:
            self._send_tls(write_timeout_ns, deadline_ns)
        self._t_written = monotonic_ns()

    def exchange(self, request: bytes, head: bool, write_timeout_ns: int,
                 read_timeout_ns: int, deadline_ns: int) -> RawExchange:
        """Blocking. The pre-write check always runs (see the C engine's
        Connection.exchange)."""
        self.begin(request, head)
        try:
            self._write(write_timeout_ns, deadline_ns)
            io = self._io
            parser = self._parser
            # (the request was sent on io; begin() made the parser)
            assert io is not None and parser is not None
            try:
                while True:
                    self._arm_read(read_timeout_ns, deadline_ns)
                    data = io.recv(_RECV_SIZE)
                    if self._received(parser, data):
                        break
            except (BlockingIOError, socket.timeout):
                raise self._fail(F.READ_TIMEOUT, deadline_ns) from None
            except OSError as exc:
                raise self._fail_read(exc) from None
            return self._take(parser)
        except FastpoolError:
            raise
        except BaseException as exc:
            self._interrupted(exc)
            raise

    def _send_plain(self, timeout_ns: int, deadline_ns: int) -> None:
        """send(MSG_DONTWAIT): all of a request that fits the socket buffer in one call; the
        rest waits in poll() for exactly the time left since the socket last took bytes (a
        kernel send timeout would restart after each partial send)."""
        sock = self._sock
        view = self._request
        assert sock is not None and view is not None  # (an open connection, after begin())
        total = len(view)
        last = self._t_start
        out = None
        while True:
            try:
                self._send_attempted = True
                self._sent += sock.send(view[self._sent:] if self._sent else view, _MSG_DONTWAIT)
                if self._sent >= total:
                    return
                last = monotonic_ns()
            except BlockingIOError:
                pass
            except OSError as exc:
                raise self._fail_os(F.WRITE, exc) from None
            left = self._left(timeout_ns, last, deadline_ns)
            if left is not None and left <= 0:
                raise self._fail(F.WRITE_TIMEOUT, deadline_ns)
            if out is None:
                out = select.poll()
                out.register(sock, _POLLOUT)
            out.poll(None if left is None else left / 1e6)

    def _send_tls(self, timeout_ns: int, deadline_ns: int) -> None:
        tsock = self._tls_sock
        view = self._request
        assert tsock is not None and view is not None  # (a TLS connection, after begin())
        total = len(view)
        last = self._t_start
        try:
            while self._sent < total:
                left = self._left(timeout_ns, last, deadline_ns)
                if left is not None and left <= 0:
                    raise self._fail(F.WRITE_TIMEOUT, deadline_ns)
                tsock.settimeout(None if left is None else left / 1e9)
                self._send_attempted = True
                sent = self._sent
                self._sent += tsock.send(view if total <= _TLS_CHUNK
                                         else view[sent:sent + _TLS_CHUNK])
                last = monotonic_ns() if self._sent < total else last
        except (BlockingIOError, socket.timeout):
            raise self._fail(F.WRITE_TIMEOUT, deadline_ns) from None
        except OSError as exc:
            raise self._fail_os(F.WRITE, exc) from None

    @staticmethod
    def _left(timeout_ns: int, since_ns: int, deadline_ns: int) -> Optional[int]:
        """Nanoseconds the current wait may last (None: no limit), as fp_conn's time_left."""
        now = monotonic_ns()
        left = None if timeout_ns < 0 else since_ns + timeout_ns - now
        if deadline_ns and (left is None or deadline_ns - now < left):
            left = deadline_ns - now
        return left

    def step(self) -> int:
        try:
            return self._step()
        except FastpoolError:
            raise
        except BaseException as exc:
            self._interrupted(exc)
            raise

    def _step(self) -> int:
        if not self._exchanging:
            self.reusable = False
            error, self._pipe_error = self._pipe_error, None
            if error is not None:  # take_next found the pipeline cannot go on
                raise error
            raise F.failure(F.READ, "the connection is not in an exchange")
        io = self._io
        request_view = self._request
        if self._t_written == 0:
            if not self._checked:
                self._check_quiet()
            # (in an exchange: begin() set the request, on an opened connection)
            assert io is not None and request_view is not None
            try:
                while self._sent < len(request_view):
                    self._send_attempted = True
                    self._sent += io.send(request_view[self._sent:])
            except (BlockingIOError, ssl.SSLWantWriteError):
                return STEP_WANT_WRITE
            except ssl.SSLWantReadError:
                return STEP_WANT_READ
            except OSError as exc:
                raise self._fail_os(F.WRITE, exc) from None
            self._t_written = monotonic_ns()
            return STEP_WANT_READ  # the response cannot be here yet (see fp_conn_step)
        parser = self._parser
        # (in an exchange: begin() or take_next() set the parser, on an opened connection)
        assert io is not None and parser is not None
        if parser.complete:
            return STEP_DONE
        try:
            while True:
                data = io.recv(_RECV_SIZE)
                if self._received(parser, data):
                    return STEP_DONE
        except (BlockingIOError, ssl.SSLWantReadError):
            return STEP_WANT_READ
        except ssl.SSLWantWriteError:
            return STEP_WANT_WRITE
        except OSError as exc:
            raise self._fail_read(exc) from None

    def _interrupted(self, exc: BaseException) -> None:
        """An exception from outside the model (a signal handler's) left the exchange
        half done: the connection is closed, exc marked NotSent / MaybeSent."""
        sent = self.sent
        self.close()
        F.interrupted(exc, sent)

    def take(self) -> RawExchange:
        parser = self._parser
        assert parser is not None  # (step() completed the exchange begin() started)
        return self._take(parser)

    def _received(self, parser: ResponseParser, data: bytes) -> bool:
        """Feeds what arrived (b"" = end of input); True when the response is complete."""
        try:
            if not data:
                return parser.feed_eof()
            if not self._t_first_byte:
                self._t_first_byte = monotonic_ns()
            self.received += len(data)
            return parser.feed(data)
        except ProtocolError as exc:
            self.reusable = False
            self._exchanging = False
            code = PARSE_CODES[exc.code]
            if not data:
                message = _CLOSED_NO_RESPONSE if exc.code == "no_response" else _CLOSED_TRUNCATED
                raise F.failure(F.CLOSED, message, sent=self._sent, code=code) from None
            raise F.failure(F.PROTOCOL, "malformed response", sent=self._sent, code=code) from None

    def _take(self, parser: ResponseParser) -> RawExchange:
        t_complete = monotonic_ns()
        res = parser.result()
        raw = self._raw(res, t_complete)
        # Bytes after the response, in our buffer or decrypted in ssl's: never reused (the
        # socket will not show the latter to the next request's check).
        tsock = self._tls_sock
        self.reusable = (res.keep_alive and not res.trailing
                         and not (tsock is not None and tsock.pending()))
        self._exchanging = False
        self._t_idle = t_complete
        self._request = None
        self._parser = None
        if self._tls_sock is not None and not self._session_kept:
            self._keep_session()
        return raw

    def _raw(self, res: RawResponse, t_complete: int) -> RawExchange:
        reason_len = len(res.reason)
        return _tuple_new(RawExchange, (
            res.status_code, 1 if res.http_version == "HTTP/1.1" else 0, res.head, res.spans,
            res.body, 13 if reason_len else 12, reason_len, self._t_start, self._t_written,
            self._t_first_byte, t_complete))

    # ---- pipelining (fp_conn_next's twin) ---------------------------------------------

    def take_next(self, head: bool) -> RawExchange:
        """Step mode, pipelining: the response step() completed, as take(), and the exchange
        goes on to the next request's (see the C engine's Connection.take_next)."""
        parser = self._parser
        assert parser is not None  # (step() completed the exchange begin() started)
        res = parser.result()
        raw = self._raw(res, monotonic_ns())
        self._pipe_error = self._follow(res, head)
        if self._pipe_error is not None:
            self.reusable = False
            self._exchanging = False  # step() raises it
        return raw

    def _follow(self, res: RawResponse, head: bool) -> Optional[FastpoolError]:
        """Moves on to the next response of a burst, from the bytes received after res (the
        twin of fp_conn_next; see csrc/fp_conn.h). The failure when the pipeline cannot go
        on: res ended keep-alive, or the next response is malformed."""
        if not res.keep_alive:
            return F.failure(F.CLOSED, "the server closed the connection after an earlier "
                             "response of the pipeline", sent=self.sent,
                             code=PARSE_CODES["no_response"])
        parser = self._parser = ResponseParser(head, self._limits)
        self._head = head
        rest = res.trailing
        self._t_first_byte = monotonic_ns() if rest else 0
        if rest:
            try:
                parser.feed(rest)
            except ProtocolError as exc:
                return F.failure(F.PROTOCOL, "malformed response", sent=self.sent,
                                 code=PARSE_CODES[exc.code])
        return None

    def pipeline(self, burst: bytes, heads, write_timeout_ns: int, read_timeout_ns: int,
                 deadline_ns: int):
        """Blocking, pipelining: the twin of the C engine's Connection.pipeline (see there):
        (raws, error)."""
        count = len(heads)
        if count < 1:
            raise ValueError("a pipeline has at least one request")
        raws: list = []
        self.begin(burst, heads[0])
        try:
            try:
                self._write(write_timeout_ns, deadline_ns)
                for i in range(count):
                    parser = self._parser
                    assert parser is not None  # (begin() or _follow() set it)
                    self._receive(parser, read_timeout_ns, deadline_ns)
                    if i == count - 1:
                        raws.append(self._take(parser))
                        break
                    res = parser.result()
                    raws.append(self._raw(res, monotonic_ns()))
                    error = self._follow(res, heads[i + 1])
                    if error is not None:
                        raise error
            except FastpoolError as exc:
                self.reusable = False
                self._exchanging = False
                return raws, exc
        except BaseException as exc:
            self._interrupted(exc)
            raise
        return raws, None

    def _receive(self, parser: ResponseParser, read_timeout_ns: int, deadline_ns: int) -> None:
        """Blocking: reads until parser's response is complete (it may be already)."""
        io = self._io
        assert io is not None  # (the burst was sent on it)
        try:
            while not parser.complete:
                self._arm_read(read_timeout_ns, deadline_ns)
                self._received(parser, io.recv(_RECV_SIZE))
        except (BlockingIOError, socket.timeout):
            raise self._fail(F.READ_TIMEOUT, deadline_ns) from None
        except OSError as exc:
            raise self._fail_read(exc) from None

    def _keep_session(self) -> None:
        # TLS 1.3 tickets arrive after the handshake; by the first response they are in.
        if self._tls is not None and not self._session_kept and self._tls_sock is not None:
            if self.resumed and self._tls.session_for(self._host) is not None:
                # The context's session still resumes: keep it rather than pay for a copy
                # of this one (see TLSContext.keep). One that stops resuming (expired,
                # refused) makes a full handshake, whose session is kept.
                self._session_kept = True
                return
            session = self._tls_sock.session
            if session is not None and session.has_ticket:
                self._tls.keep(session, self._host)
                self._session_kept = True

    # ---- timeouts and failures ------------------------------------------------------------

    def _arm_read(self, timeout_ns: int, deadline_ns: int) -> None:
        if self._tls_sock is not None:
            self._tls_sock.settimeout(self._seconds(timeout_ns, deadline_ns))
        else:
            self._rcvtimeo_us = self._arm(socket.SO_RCVTIMEO, timeout_ns, deadline_ns,
                                          self._rcvtimeo_us)

    @staticmethod
    def _seconds(timeout_ns: int, deadline_ns: int) -> Optional[float]:
        t = None if timeout_ns < 0 else timeout_ns / 1e9
        if deadline_ns:
            left = (deadline_ns - monotonic_ns()) / 1e9
            if left <= 0:
                raise socket.timeout("deadline")
            if t is None or left < t:
                t = left
        return t

    def _arm(self, opt: int, timeout_ns: int, deadline_ns: int, current_us: int) -> int:
        """min(timeout, time to deadline) as a kernel timeout; a syscall only on change
        (the same rule as fp_conn's arm_timeout)."""
        us = 0 if timeout_ns < 0 else (timeout_ns + 999) // 1000
        if timeout_ns == 0:
            us = 1
        if deadline_ns:
            left = deadline_ns - monotonic_ns()
            if left <= 0:
                raise BlockingIOError("deadline")
            left_us = (left + 999) // 1000
            if us == 0 or left_us < us:
                us = left_us
        if us != current_us:
            sock = self._sock
            assert sock is not None  # (a plain connection in an exchange)
            sock.setsockopt(socket.SOL_SOCKET, opt, _timeval(us))
        return us

    def _fail(self, kind: int, deadline_ns: int) -> FastpoolError:
        self.reusable = False
        self._exchanging = False
        what = "sending the request" if kind == F.WRITE_TIMEOUT else "the response"
        if deadline_ns and monotonic_ns() >= deadline_ns:
            message = f"total deadline ran out waiting for {what}"
        else:
            message = f"timed out waiting for {what}"
        return F.failure(kind, message, sent=self.sent)

    def _fail_read(self, exc: OSError) -> FastpoolError:
        """After the request was written, a reset is the same as a close (ServerDisconnected),
        as in fp_conn; other read failures are ReadError."""
        if not isinstance(exc, _RESETS):
            return self._fail_os(F.READ, exc)
        self.reusable = False
        self._exchanging = False
        code = "truncated" if self.received else "no_response"
        message = _RESET_TRUNCATED if self.received else _RESET_NO_RESPONSE
        return F.failure(F.CLOSED, message, sent=self.sent, code=PARSE_CODES[code])

    def _fail_os(self, kind: int, exc: OSError) -> FastpoolError:
        self.reusable = False
        self._exchanging = False
        if isinstance(exc, ssl.SSLError):
            message = f"TLS {'write' if kind == F.WRITE else 'read'} failed: {exc.reason or exc}"
        else:
            verb = "send" if kind == F.WRITE else "recv"
            message = f"{verb}: {exc.strerror or exc}"
        return F.failure(kind, message, sent=self.sent)



_new = object.__new__
_tuple_new = tuple.__new__


class Lane:
    """The sync pool's success path in one engine call: the twin of _core.Lane (see there)."""

    def __init__(self, idle: list, reserved: list, wait_general, wait_priority,
                 default_timeout, hist, response_type, response_ctx, on_release,
                 settle) -> None:
        self.idle = idle
        self.reserved = reserved
        self.wait_general = wait_general
        self.wait_priority = wait_priority
        self.default_timeout = default_timeout
        self.closed = False
        self.pick = None  # None: the hottest; else pick(stack) -> the index to take
        self.hist = hist
        self.response_type = response_type
        self.response_ctx = response_ctx
        self.on_release = on_release
        self.settle = settle

    def send(self, conn: Optional[Connection], request: tuple, timeout, start: int,
             priority: bool = False) -> Optional[Response]:
        deadline = start + timeout.total_ns if timeout.total_ns else 0
        if conn is None:
            if self.wait_priority or (self.wait_general and not priority):
                return None
            stack = self.reserved if priority and self.reserved else self.idle
            if not stack:
                return None
            try:
                conn = stack.pop() if self.pick is None else stack.pop(self.pick(stack))
            except IndexError:  # taken by another thread meanwhile
                return None
        try:
            raw = conn.exchange(request[0], request[3], timeout.write_ns, timeout.read_ns,
                                deadline)
            self.hist.record(raw.t_complete - raw.t_start)
            request[4].record(raw.t_complete - raw.t_start)
            rtt = raw.t_first_byte - raw.t_written
            conn.rtt_ns = rtt if not conn.rtt_ns else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
            conn.uses += 1
            if (conn.reusable and not self.closed and not self.wait_priority
                    and not self.wait_general and conn.uses < conn.retire_uses
                    and (not conn.retire_at_ns or raw.t_complete < conn.retire_at_ns)):
                (self.reserved if conn.lane else self.idle).append(conn)
                conn = None  # given back: from here on an interrupt must not close it
                if self.closed or self.wait_priority or self.wait_general:
                    self.settle()
            else:
                if not conn.reusable:
                    conn.close()
                conn, given = None, conn
                self.on_release(given, None)
        except BaseException as exc:
            if conn is not None:  # still ours: failed, or interrupted before it was given back
                conn.close()
                self.on_release(conn, exc)
            raise
        response = _new(self.response_type)
        response.status_code = raw.status
        response.content = raw.body
        response._raw = raw
        response._ctx = _tuple_new(RequestInfo, (self.response_ctx, request[1], request[2],
                                                 start))
        return response

    # The AsyncPool's success path, around its waits (see _core.Lane).

    def take(self, priority: bool = False) -> Optional[Connection]:
        if self.closed or self.wait_priority or (self.wait_general and not priority):
            return None
        stack = self.reserved if priority and self.reserved else self.idle
        if not stack:
            return None
        return stack.pop() if self.pick is None else stack.pop(self.pick(stack))

    def start(self, conn: Connection, request: tuple, read_at_once_ns: int) -> int:
        conn.begin(request[0], request[3])
        rc = conn.step()
        if rc == STEP_WANT_READ and 0 < conn.rtt_ns < read_at_once_ns:
            rc = conn.step()
        return rc

    def finish(self, conn: Connection, request: tuple, start: int) -> Response:
        raw = conn.take()
        self.hist.record(raw.t_complete - raw.t_start)
        request[4].record(raw.t_complete - raw.t_start)
        rtt = raw.t_first_byte - raw.t_written
        conn.rtt_ns = rtt if not conn.rtt_ns else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
        conn.uses += 1
        if (conn.reusable and not self.closed and not self.wait_priority
                and not self.wait_general and conn.uses < conn.retire_uses
                and (not conn.retire_at_ns or raw.t_complete < conn.retire_at_ns)):
            (self.reserved if conn.lane else self.idle).append(conn)
            if self.closed or self.wait_priority or self.wait_general:
                self.settle()
        else:
            self.on_release(conn, None)
        response = _new(self.response_type)
        response.status_code = raw.status
        response.content = raw.body
        response._raw = raw
        response._ctx = _tuple_new(RequestInfo, (self.response_ctx, request[1], request[2],
                                                 start))
        return response
