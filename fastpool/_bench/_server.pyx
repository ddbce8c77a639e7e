# cython: language_level=3
# The embedded benchmark/test server: a binding over csrc/fp_server.h.
#
# The server runs in its own pthread with its own epoll loop; that thread never touches
# Python objects nor the GIL. Creation (key generation, bind) and stop (wake, join) release
# the GIL while they wait.

from fastpool._bench.fp_server cimport *
from libc.string cimport strerror

import ssl as _ssl


_SERVER_ERRORS = {
    FP_SRV_E_CONFIG: "invalid server configuration",
    FP_SRV_E_NOMEM: "out of memory",
    FP_SRV_E_SOCKET: "cannot listen",
    FP_SRV_E_TLS: "cannot build the TLS context or certificates",
    FP_SRV_E_CLIENT_CA: "client_ca_pem holds no PEM certificate",
    FP_SRV_E_THREAD: "cannot start the server thread",
    FP_SRV_E_STATE: "server already started or stopped",
    FP_SRV_E_SYS: "cannot create epoll/eventfd",
}

# Python ints: comparisons with len() then stay in Python (no signed/unsigned C comparison)
_MAX_BODY = <object>FP_SRV_MAX_BODY
_MAX_HEADERS_BLOCK = <object>FP_SRV_MAX_HEADERS_BLOCK
_MAX_CLIENT_CA = <object>FP_SRV_MAX_CLIENT_CA
_MAX_TIME_MS = <object>FP_SRV_MAX_TIME_MS

_TLS_VERSIONS = {"1.2": FP_SRV_TLS_1_2, "1.3": FP_SRV_TLS_1_3}
_STAT_NAMES = ("accepted", "open", "requests", "bad_requests", "tls_handshakes",
               "tls_resumed", "bytes_in", "bytes_out")
_TCHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_SERVER_OWNED = (b"content-length", b"transfer-encoding", b"connection")


def _as_bytes(value, what):
    if isinstance(value, str):
        try:
            return value.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"{what} must be latin-1 text or bytes") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise ValueError(f"{what} must be str or bytes, not {type(value).__name__}")


def _tls_version(value, what):
    if value is None:
        return FP_SRV_TLS_DEFAULT
    if isinstance(value, _ssl.TLSVersion):
        if value == _ssl.TLSVersion.TLSv1_2:
            return FP_SRV_TLS_1_2
        if value == _ssl.TLSVersion.TLSv1_3:
            return FP_SRV_TLS_1_3
    elif isinstance(value, str) and value in _TLS_VERSIONS:
        return _TLS_VERSIONS[value]
    raise ValueError(f"{what} must be None, '1.2', '1.3' or ssl.TLSVersion.TLSv1_2/TLSv1_3, "
                     f"got {value!r}")


def _int_arg(value, what, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{what} must be an int, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{what} must be in {lo}..{hi}, got {value}")
    return value


def _bool_arg(value, what):
    if not isinstance(value, bool):
        raise ValueError(f"{what} must be True or False, got {value!r}")
    return value


def _header_block(headers):
    """(name, value) pairs -> b"Name: value\\r\\n" lines, validated."""
    if isinstance(headers, dict):
        headers = list(headers.items())
    lines = []
    try:
        pairs = list(headers)
    except TypeError:
        raise ValueError("headers must be a sequence of (name, value) pairs") from None
    for pair in pairs:
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise ValueError(f"headers must be (name, value) pairs, got {pair!r}")
        name = _as_bytes(pair[0], "header name")
        value = _as_bytes(pair[1], "header value").strip(b" \t")
        if not name or any(ch not in _TCHARS for ch in name):
            raise ValueError(f"header name {name!r} is not a token (RFC 9110 §5.6.2)")
        if any((ch < 0x20 and ch != 0x09) or ch == 0x7F for ch in value):
            raise ValueError(f"header value {value!r} holds a control character")
        if name.lower() in _SERVER_OWNED:
            raise ValueError(f"header {name.decode()!r} is set by the server itself")
        lines.append(name + b": " + value + b"\r\n")
    block = b"".join(lines)
    if len(block) > _MAX_HEADERS_BLOCK:
        raise ValueError(f"headers take more than {_MAX_HEADERS_BLOCK} bytes")
    return block


cdef class EmbeddedServer:
    """A fast HTTP/1.1 (or HTTPS) server on loopback, in its own thread, for tests and benchmarks.

    ``EmbeddedServer(*, host="127.0.0.1", port=0, tls=False, tls_min=None, tls_max=None,
    status=200, headers=(), body=None, body_size=137, chunked=False, chunk_size=0, echo=False,
    close_after=0, close_silently=False, idle_timeout_ms=0, delay_ms=0, client_ca_pem=None)``

    Every response is the same pre-built one (``body`` bytes, or ``body_size`` bytes of
    deterministic JSON filler), or with ``echo=True`` the exact bytes of the request.
    ``body`` takes precedence over ``body_size``. ``delay_ms`` holds each response that long
    after its request arrived complete, without holding up other connections (pipelined
    requests on one connection are held one after another). ``close_after`` closes a
    connection after that many responses, the last one saying ``Connection: close`` unless
    ``close_silently``. ``idle_timeout_ms`` closes a connection that made no progress that long. With ``tls=True`` an ephemeral CA and a
    certificate for localhost, 127.0.0.1 and ::1 are made at each start; ``ca_pem`` is the CA.
    ``start()`` and ``stop()`` (or ``with``) may be repeated; each start is a fresh server
    (new port when ``port=0``, new CA, counters from zero).
    """

    cdef fp_server *_srv
    cdef fp_server_config _cfg
    cdef bytes _headers, _body, _client_ca
    cdef readonly str host
    cdef int _port
    cdef bint _tls
    cdef object _ca_pem
    cdef object _last_stats

    def __cinit__(self):
        self._srv = NULL
        self._port = 0

    def __init__(self, *, host="127.0.0.1", port=0, tls=False, tls_min=None, tls_max=None,
                 status=200, headers=(), body=None, body_size=137, chunked=False,
                 chunk_size=0, echo=False, close_after=0, close_silently=False,
                 idle_timeout_ms=0, delay_ms=0, client_ca_pem=None):
        if host not in ("127.0.0.1", "::1"):
            raise ValueError(f"host must be '127.0.0.1' or '::1' (loopback only), got {host!r}")
        _int_arg(port, "port", 0, 65535)
        _bool_arg(tls, "tls")
        _int_arg(status, "status", 200, 599)
        _int_arg(body_size, "body_size", 0, _MAX_BODY)
        _bool_arg(chunked, "chunked")
        _int_arg(chunk_size, "chunk_size", 0, _MAX_BODY)
        _bool_arg(echo, "echo")
        _int_arg(close_after, "close_after", 0, 0xFFFFFFFF)
        _bool_arg(close_silently, "close_silently")
        _int_arg(idle_timeout_ms, "idle_timeout_ms", 0, _MAX_TIME_MS)
        _int_arg(delay_ms, "delay_ms", 0, _MAX_TIME_MS)
        tmin = _tls_version(tls_min, "tls_min")
        tmax = _tls_version(tls_max, "tls_max")
        if not tls and (tls_min is not None or tls_max is not None or client_ca_pem is not None):
            raise ValueError("tls_min, tls_max and client_ca_pem need tls=True")
        if tmin and tmax and tmin > tmax:
            raise ValueError(f"tls_min {tls_min!r} is above tls_max {tls_max!r}")
        if chunk_size and not chunked:
            raise ValueError("chunk_size needs chunked=True")
        if close_silently and not close_after:
            raise ValueError("close_silently needs close_after > 0")
        if body is not None:
            if echo:
                raise ValueError("echo=True answers with the request; body must be None")
            body = _as_bytes(body, "body")
            if len(body) > _MAX_BODY:
                raise ValueError(f"body is larger than {_MAX_BODY} bytes")
        if status in (204, 304):
            # these never carry a body (RFC 9110 §15.3.5, §15.4.5): body_size is ignored
            if echo or chunked or body:
                raise ValueError(f"status {status} has no body: no body, chunked or echo")
            body, body_size = None, 0
        if client_ca_pem is not None:
            client_ca_pem = _as_bytes(client_ca_pem, "client_ca_pem")
            if b"-----BEGIN CERTIFICATE-----" not in client_ca_pem:
                raise ValueError("client_ca_pem must hold PEM certificates")
            if len(client_ca_pem) > _MAX_CLIENT_CA:
                raise ValueError(f"client_ca_pem is larger than {_MAX_CLIENT_CA} bytes")

        self.host = host
        self._tls = tls
        self._headers = _header_block(headers)
        self._body = body
        self._client_ca = client_ca_pem
        fp_server_config_init(&self._cfg)
        self._cfg.ipv6 = host == "::1"
        self._cfg.port = port
        self._cfg.tls = tls
        self._cfg.tls_min = tmin
        self._cfg.tls_max = tmax
        self._cfg.status = status
        self._cfg.chunked = chunked
        self._cfg.chunk_size = chunk_size
        self._cfg.echo = echo
        self._cfg.close_after = close_after
        self._cfg.close_silently = close_silently
        self._cfg.idle_timeout_ms = idle_timeout_ms
        self._cfg.delay_ms = delay_ms
        self._cfg.body_size = len(body) if body is not None else (0 if echo else body_size)
        self._ca_pem = None
        self._last_stats = None

    def start(self):
        """Builds the responses (and certificates), binds, listens and starts the thread."""
        cdef fp_server *srv = NULL
        cdef int rc, err_no = 0
        cdef fp_server_config cfg = self._cfg
        cdef size_t pem_len = 0
        cdef const char *pem
        if self._srv != NULL:
            raise RuntimeError("the server is already running")
        # the bytes objects are held by self for as long as the C config points into them
        cfg.headers = self._headers
        cfg.headers_len = len(self._headers)
        if self._body is not None:
            cfg.body = self._body
        if self._client_ca is not None:
            cfg.client_ca_pem = self._client_ca
            cfg.client_ca_pem_len = len(self._client_ca)
        with nogil:
            rc = fp_server_create(&cfg, &srv, &err_no)
            if rc == 0:
                rc = fp_server_start(srv)
                if rc != 0:
                    fp_server_destroy(srv)
                    srv = NULL
        if rc != 0:
            message = _SERVER_ERRORS.get(rc, f"error {rc}")
            if err_no:
                raise OSError(err_no, f"EmbeddedServer: {message}: {strerror(err_no).decode()}")
            if rc in (FP_SRV_E_CONFIG, FP_SRV_E_CLIENT_CA):
                raise ValueError(f"EmbeddedServer: {message}")
            raise RuntimeError(f"EmbeddedServer: {message}")
        self._srv = srv
        self._port = fp_server_port(srv)
        self._last_stats = None
        if self._tls:
            pem = fp_server_ca_pem(srv, &pem_len)
            self._ca_pem = pem[:pem_len]
        return self

    def stop(self):
        """Wakes the loop, joins the thread, closes every connection and descriptor."""
        cdef fp_server *srv = self._srv
        if srv == NULL:
            return
        self._srv = NULL  # under the GIL: a concurrent stop() sees nothing left to stop
        with nogil:
            fp_server_stop(srv)
        self._last_stats = self._read_stats(srv)
        with nogil:
            fp_server_destroy(srv)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def __dealloc__(self):
        if self._srv != NULL:
            with nogil:
                fp_server_destroy(self._srv)
            self._srv = NULL

    @property
    def running(self):
        return self._srv != NULL

    @property
    def port(self):
        """The bound port (the ephemeral one when port=0); 0 before the first start."""
        return self._port

    @property
    def url(self):
        """"http(s)://127.0.0.1:PORT" or "http(s)://[::1]:PORT"."""
        if not self._port:
            raise RuntimeError("the server has not been started")
        scheme = "https" if self._tls else "http"
        host = "[::1]" if self.host == "::1" else self.host
        return f"{scheme}://{host}:{self._port}"

    @property
    def ca_pem(self):
        """The PEM (bytes) of the CA that signed this run's certificate; None without TLS."""
        if self._tls and self._ca_pem is None:
            raise RuntimeError("the CA is made at start(): start the server first")
        return self._ca_pem

    def write_ca(self, path):
        """Writes ca_pem to path (for verify="path" style clients); returns path."""
        if not self._tls:
            raise ValueError("write_ca needs tls=True")
        pem = self.ca_pem
        with open(path, "wb") as f:
            f.write(pem)
        return path

    cdef dict _read_stats(self, fp_server *srv):
        cdef fp_server_stats st
        fp_server_get_stats(srv, &st)
        return {
            "accepted": st.accepted, "open": st.open, "requests": st.requests,
            "bad_requests": st.bad_requests, "tls_handshakes": st.tls_handshakes,
            "tls_resumed": st.tls_resumed, "bytes_in": st.bytes_in, "bytes_out": st.bytes_out,
        }

    def stats(self):
        """The counters: accepted, open, requests, bad_requests, tls_handshakes, tls_resumed,
        bytes_in, bytes_out (application bytes). After stop(), the final values of that run.

        requests moves before the response is written; bytes_out (and a TLS 1.2
        handshake) after the write, so right after reading a response a client may see
        those lag for a moment: poll for them."""
        if self._srv != NULL:
            return self._read_stats(self._srv)
        if self._last_stats is not None:
            return dict(self._last_stats)
        return dict.fromkeys(_STAT_NAMES, 0)

    def __repr__(self):
        state = f"running at {self.url}" if self._srv != NULL else "stopped"
        return f"<EmbeddedServer {state}>"
