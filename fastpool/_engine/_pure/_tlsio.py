"""TLS for the pure engine over ssl.MemoryBIO + SSLObject on a plain socket (replaces SSLSocket).

Why not SSLSocket (measured by bench/pure_tls.py):
- CPython's ssl retries SSL_read forever on a blocking socket whose kernel timeout
  (SO_RCVTIMEO) expired, so a blocking SSLSocket needs Python's timeout mode: settimeout()
  (an fcntl) per phase and a poll() before every read.
- OpenSSL reads through a socket BIO without read-ahead: a record costs two recv() calls (its
  5-byte header, then the rest).
- SSLSocket.recv() turns a reset into b"" (suppress_ragged_eofs), so the pure engine reported
  ServerDisconnected where fp_conn reports a read error.
Here the socket stays a plain blocking one with kernel timeouts armed only when they change
(fp_conn's arm_timeout), a response costs one recv_into() of everything the kernel holds, and
the request one send() of all its records. OpenSSL never touches the socket, so it can never
write on it either: closing sends no close_notify (a dead peer is never written to).

Sessions: every read of SSLObject.session leaks one SSL_SESSION (~6 KB, its peer certificate
included) on CPython versions with gh-116810 (3.11 here; bench/ssl_session_leak.py proves it
with socket + ssl only). So the session is read at most twice per connection, and never on a
resumed one: TLS 1.2 at the end of the handshake, TLS 1.3 once post-handshake bytes (the
tickets) were read, and once more if those held no ticket yet. A resumed connection keeps
offering the session it resumed with (servers with stateless tickets, OpenSSL's and nginx's
default, accept it again; when one refuses, the full handshake that follows refreshes it).

Interface (what fastpool._engine._pure.Connection uses; failures are raised through
fastpool._model.failures with the same kinds as fp_conn):

    t = TLSTransport(sock, ssl_context, host, session=None)
        sock: a connected TCP socket (non-blocking during the handshake); the transport owns
        it from here on: t.close() closes it.
    t.handshake(deadline_ns)      raises TLS / CONNECT_TIMEOUT failures; refuses an ALPN
                                  other than http/1.1. Then t.resumed, t.version.
    t.setblocking(flag)           sync pools: True (one fcntl, once), then kernel timeouts:
    t.arm_read(us), t.arm_write(us)   SO_RCVTIMEO / SO_SNDTIMEO in microseconds (0: none); a
                                  syscall only when the value changes.
    t.write(data)                 encrypts all of data into the pending ciphertext (no I/O);
                                  t.wire_sent = 0.
    t.flush() -> bool             one send() of the pending ciphertext: True once none is
                                  left. BlockingIOError when the socket takes nothing (EAGAIN,
                                  or the kernel send timeout expired), OSError on failure.
                                  t.wire_sent counts the ciphertext bytes that reached the
                                  socket since write(): 0 means NotSent.
    t.recv() -> bytes | None      decrypted bytes; b"" at end of input (FIN, reset-free close,
                                  close_notify); None when one socket read brought no whole
                                  record (call again, after re-arming the timeout). At most
                                  one socket read per call. BlockingIOError: nothing to read
                                  (EAGAIN, or the kernel receive timeout expired);
                                  ssl.SSLError / OSError: the connection failed.
    t.pending() -> bool           bytes already held (decrypted, or ciphertext not yet
                                  decrypted): check before waiting on the fd.
    t.idle_stale() -> bool        for an idle connection: True when the peer sent data, EOF,
                                  or an error; post-handshake records (tickets, key updates)
                                  are processed, not mistaken for data. One poll() when
                                  nothing is held and nothing arrived.
    t.wants_session               True while take_session() may find a new session.
    t.take_session() -> SSLSession | None   a resumable session to keep, or None (see above).
    t.fileno(), t.close(), t.sock
"""

from __future__ import annotations

import select
import socket
import ssl
import struct
from time import monotonic_ns
from typing import Optional

from ..._model import failures as F
from ..._model.tls_policy import TLS12_CIPHERS
from . import _pollbits

__all__ = ["TLSTransport", "client_context"]

_READ_SIZE = 65536
# One recv_into() takes what the kernel holds, up to this: a few 16 KB records.
_RBUF_SIZE = 65536 + 1024
_SO_RCVTIMEO = socket.SO_RCVTIMEO
_SO_SNDTIMEO = socket.SO_SNDTIMEO
_SOL_SOCKET = socket.SOL_SOCKET
_MSG_DONTWAIT = _pollbits.MSG_DONTWAIT
_TLS_VERSIONS = {None: None, "1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}
_WantRead = ssl.SSLWantReadError
_ZeroReturn = ssl.SSLZeroReturnError
# Post-handshake records an idle check processes before it calls the connection stale.
_IDLE_READS = 8
_POLLIN = _pollbits.POLLIN
_POLLOUT = _pollbits.POLLOUT
_IDLE_EVENTS = (_POLLIN | _pollbits.POLLPRI | _pollbits.POLLERR | _pollbits.POLLHUP
                | _pollbits.POLLRDHUP)


def client_context(*, verify=True, ca_file=None, ca_pem=None, cert_file=None, key_file=None,
                   min_version=None, max_version=None) -> ssl.SSLContext:
    """An SSLContext with fastpool's TLS offer (fastpool._model.tls_policy): TLS 1.2+, the
    RFC 9325 TLS 1.2 suites, OpenSSL's TLS 1.3 suites, ALPN http/1.1. (Python's ssl cannot set
    the TLS 1.3 suites or the groups; OpenSSL's defaults for both are what the policy names,
    except that OpenSSL also offers X448 and the FFDHE groups.) Raises ssl.SSLError,
    OSError or ValueError as SSLContext does."""
    if min_version not in _TLS_VERSIONS or max_version not in _TLS_VERSIONS:
        raise ValueError("TLS versions are '1.2', '1.3' or None")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = _TLS_VERSIONS[min_version] or ssl.TLSVersion.TLSv1_2
    maximum = _TLS_VERSIONS[max_version]  # (None exactly when max_version is)
    if maximum is not None:
        ctx.maximum_version = maximum
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= (ssl.OP_NO_RENEGOTIATION | ssl.OP_NO_COMPRESSION
                    | getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0))
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
    return ctx


def _timeval(us: int) -> bytes:
    return struct.pack("ll", us // 1_000_000, us % 1_000_000)


def _wait(sock: socket.socket, events: int, deadline_ns: int) -> bool:
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


class TLSTransport:
    """One client TLS connection over memory BIOs on a plain socket (see the module doc)."""

    __slots__ = (
        "_in",
        "_obj",
        "_out",
        "_pending_out",
        "_poller",
        "_rbuf",
        "_rcvtimeo",
        "_rview",
        "_session_reads",
        "_sndtimeo",
        "_ssl",
        "host",
        "resumed",
        "sock",
        "version",
        "wants_session",
        "wire_sent",
    )

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, host: str,
                 session: Optional[ssl.SSLSession] = None) -> None:
        self.sock = sock
        self.host = host
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        try:
            self._obj = context.wrap_bio(self._in, self._out, server_hostname=host,
                                         session=session)
        except (ssl.SSLError, ValueError) as exc:
            raise F.failure(F.TLS, f"cannot configure the TLS connection: {exc}") from None
        # The C object under ssl.SSLObject: its read/write/pending without the Python-level
        # wrapper frame each call (the hot path makes three such calls per exchange).
        self._ssl = getattr(self._obj, "_sslobj", self._obj)
        self._poller = select.poll()
        self._poller.register(sock, _IDLE_EVENTS)
        self._rbuf = bytearray(_RBUF_SIZE)
        self._rview = memoryview(self._rbuf)
        self._pending_out = b""
        self._rcvtimeo = self._sndtimeo = -1
        self.wire_sent = 0
        self.resumed = False
        self.version = ""
        self.wants_session = False
        self._session_reads = 0

    # ---- handshake ----------------------------------------------------------------------

    def handshake(self, deadline_ns: int) -> None:
        """Runs the handshake on the (non-blocking) socket until deadline_ns (0: none)."""
        obj = self._obj
        host = self.host
        sock = self.sock
        while True:
            try:
                obj.do_handshake()
                break
            except _WantRead:
                pass
            except ssl.SSLCertVerificationError as exc:
                raise F.failure(F.TLS, f"TLS handshake failed: certificate verify failed: "
                                       f"{exc.verify_message} ({host})",
                                verify=exc.verify_code) from None
            except ssl.SSLError as exc:
                raise F.failure(F.TLS, f"TLS handshake failed: {exc.reason or exc} ({host})"
                                ) from None
            try:
                self._send_handshake(deadline_ns)
                while True:
                    try:
                        n = sock.recv_into(self._rbuf)
                        break
                    except BlockingIOError:
                        if not _wait(sock, _POLLIN, deadline_ns):
                            raise F.failure(F.CONNECT_TIMEOUT,
                                            f"TLS handshake with {host} timed out") from None
            except OSError as exc:
                raise F.failure(F.TLS, f"TLS handshake with {host} failed: connection closed "
                                       f"by the server ({exc.strerror or exc})") from None
            if n:
                self._in.write(self._rview[:n])
            else:
                self._in.write_eof()  # do_handshake then raises SSLEOFError: a TLS failure
        try:
            self._send_handshake(deadline_ns)  # the client's Finished
        except OSError as exc:
            raise F.failure(F.TLS, f"TLS handshake with {host} failed: connection closed "
                                   f"by the server ({exc.strerror or exc})") from None
        alpn = obj.selected_alpn_protocol()
        if alpn not in (None, "http/1.1"):
            raise F.failure(F.TLS, f"server {host} selected ALPN protocol '{alpn}', not http/1.1")
        self.resumed = obj.session_reused
        self.version = obj.version() or ""
        # TLS 1.2 sessions exist at the end of the handshake; TLS 1.3 tickets come after it.
        self.wants_session = not self.resumed and self.version != "TLSv1.3"

    def _send_handshake(self, deadline_ns: int) -> None:
        data = self._out.read()
        view = memoryview(data)
        while view:
            try:
                view = view[self.sock.send(view):]
            except BlockingIOError:
                if not _wait(self.sock, _POLLOUT, deadline_ns):
                    raise F.failure(F.CONNECT_TIMEOUT,
                                    f"TLS handshake with {self.host} timed out") from None

    # ---- socket mode and kernel timeouts ------------------------------------------------

    def setblocking(self, flag: bool) -> None:
        self.sock.setblocking(flag)
        self._rcvtimeo = self._sndtimeo = 0 if flag else -1

    def arm_read(self, us: int) -> None:
        """SO_RCVTIMEO = us (0: none), a syscall only on change (fp_conn's arm_timeout)."""
        if us != self._rcvtimeo:
            self.sock.setsockopt(_SOL_SOCKET, _SO_RCVTIMEO, _timeval(us))
            self._rcvtimeo = us

    def arm_write(self, us: int) -> None:
        """SO_SNDTIMEO = us (0: none), a syscall only on change."""
        if us != self._sndtimeo:
            self.sock.setsockopt(_SOL_SOCKET, _SO_SNDTIMEO, _timeval(us))
            self._sndtimeo = us

    # ---- application data ---------------------------------------------------------------

    def write(self, data) -> None:
        """Encrypts all of data (a memory BIO never says want-write) behind any ciphertext
        reads produced meanwhile (a KeyUpdate answer), so records stay in order."""
        self._ssl.write(data)
        self._pending_out = self._out.read()
        self.wire_sent = 0

    def flush(self) -> bool:
        """One send() of the pending ciphertext; True when none is left (see the module doc)."""
        out = self._pending_out
        if not out:
            return True
        n = self.sock.send(out)
        self.wire_sent += n
        out = self._pending_out = out[n:]
        return not out

    def recv(self):
        """Decrypted bytes, b"" at end of input, or None (no whole record yet): one socket
        read at most (see the module doc)."""
        obj = self._ssl
        incoming = self._in
        if incoming.pending or obj.pending():
            try:
                return obj.read(_READ_SIZE)
            except _WantRead:
                pass
            except _ZeroReturn:
                return b""
        n = self.sock.recv_into(self._rbuf)
        if not n:
            return b""
        incoming.write(self._rview[:n])
        if self._session_reads == 0 and not self.wants_session and not self.resumed:
            self.wants_session = True  # TLS 1.3: the tickets come first (see take_session)
        try:
            # The plaintext is shorter than the ciphertext held: read() allocates no more.
            return obj.read(incoming.pending)
        except _WantRead:
            return None
        except _ZeroReturn:
            return b""

    def pending(self) -> bool:
        return bool(self._in.pending or self._ssl.pending())

    def idle_stale(self) -> bool:
        """True when an idle connection heard anything but post-handshake records."""
        obj = self._ssl
        for _ in range(_IDLE_READS):
            if self._in.pending or obj.pending():
                try:
                    obj.read(1)
                    return True  # application data nobody asked for
                except _WantRead:
                    pass
                except ssl.SSLError:
                    return True
            elif not self._poller.poll(0):
                return False  # the usual case: one poll(), no exception
            try:
                n = self.sock.recv_into(self._rbuf, 0, _MSG_DONTWAIT)
            except BlockingIOError:
                return False
            except OSError:
                return True
            if not n:
                return True
            self._in.write(self._rview[:n])
            if self._session_reads < 2 and not self.resumed:
                self.wants_session = True  # a late ticket, perhaps
        return True

    # ---- sessions -----------------------------------------------------------------------

    def take_session(self) -> Optional[ssl.SSLSession]:
        """A resumable session to keep, or None; reads SSLObject.session (which leaks, see the
        module doc) only while wants_session, at most twice per connection."""
        if not self.wants_session:
            return None
        self.wants_session = False
        self._session_reads += 1
        session = self._obj.session
        if session is None:
            return None
        if session.has_ticket or (self.version != "TLSv1.3" and session.id):
            self._session_reads = 2  # done for this connection
            return session
        return None

    # ---- end ------------------------------------------------------------------------------

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        """Closes the socket; no close_notify (nothing is ever written to a dead peer, and a
        pool's peer needs none: every response is framed)."""
        self.sock.close()
