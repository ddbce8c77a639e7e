"""A private nginx (Debian's ``nginx-light``) on free loopback ports, for tests.

One process per :class:`NginxServer`: ``daemon off`` and ``master_process off``, so the process
the test started is the only nginx process there is; it gets SIGKILL from the kernel when the
starting thread dies (``PR_SET_PDEATHSIG``), ``stop()`` terminates and reaps it, and an
``atexit`` hook stops any instance a crashed test left behind. Every path nginx writes (pid,
error log, access log, temp dirs, lock file) is inside the instance's directory.

Listeners (``NginxServer.listeners``, by name; each its own port on 127.0.0.1 unless noted):

    plain      HTTP
    tls12      TLS 1.2 only            (certs.server)
    tls13      TLS 1.3 only            (certs.server)
    tls        TLS 1.2 and 1.3         (certs.server)
    mtls       TLS 1.2 and 1.3 with ``ssl_verify_client on`` and certs.client_ca. nginx
               completes the handshake either way and answers 400 when the client sent no
               certificate or an untrusted one (``X-Client-Verify`` says which).
    plain6     HTTP on [::1]           (when the kernel has IPv6)
    tls6       TLS 1.2+1.3 on [::1]    (when the kernel has IPv6)
    cert-<n>   TLS 1.2+1.3 presenting certificate <n> for each n in BAD_SERVER_CERTS
               (expired, not-yet-valid, wrong-host, untrusted, self-signed) and the other
               good ones (ip-only, server-intermediate); only with ``cert_listeners=True``.

Locations (every listener serves all of them; see ``LOCATIONS`` below for the exact list):

    /api/v3/ticker        200, application/json, TICKER_BODY (137 bytes), Content-Length
    /api/v3/order         any method (POST): 200 JSON naming method, $request_uri, connection
                          serial and request number on it; the body is read and discarded
    /static/{2k,64k,1m}.bin   static files (STATIC_FILES), Content-Length, ETag; a GET with
                          ``If-None-Match: *`` gets a real 304
    /chunked/ticker       TICKER_BODY with Transfer-Encoding: chunked (ssi filter)
    /chunked/{2k,64k,1m}.bin  the static files, chunked (several chunks for the larger ones)
    /chunked/echo-uri     chunked body ``uri=<request_uri>;end\\n`` (one chunk)
    /throttled/<file>     the static files at ``limit_rate 256k`` (a slow body)
    /204 /304             return 204 / 304
    /close                200 with ``Connection: close`` (keepalive_timeout 0)
    /status/{400,429,500,503}   those statuses (429 carries Retry-After: 1), JSON body
    /headers/repeated     two Set-Cookie and two X-Dup headers
    /__ready              readiness probe of start() (not in the access log)
    /slow?s=SECONDS       echo module: waits then answers (only when ``has_echo``)
    /echo                 echo module: the request body back, chunked (only when ``has_echo``)

Every response (``always``, errors included) carries ``X-Request-Uri``, ``X-Connection``
(nginx's connection serial), ``X-Connection-Requests``, ``X-Test-Tag`` (the request's
``X-Test-Tag`` header, when sent) and, on TLS listeners, ``X-Client-Verify``.

The access log (``NginxServer.access_log``) is written unbuffered, one JSON object a line:
connection serial, request number on that connection, method, URI, status, TLS protocol,
session reuse, ports, lengths, tag. nginx writes the line after it sent the response, so
readers wait for the count they expect (``AccessLog.wait_for``).
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .certs import BAD_SERVER_CERTS, CertSet
from .ports import LOOPBACK_V4, LOOPBACK_V6, free_ports, ipv6_available, wait_for_port

__all__ = [
    "DEFAULT_NGINX",
    "ECHO_MODULE",
    "STATIC_FILES",
    "TICKER_BODY",
    "AccessEntry",
    "AccessLog",
    "Listener",
    "NginxServer",
    "NginxUnavailable",
    "find_nginx",
    "nginx_required",
    "static_body",
]

DEFAULT_NGINX = "/usr/sbin/nginx"
#: Dynamic module shipped by Debian's libnginx-mod-http-echo (a dependency of nginx-light).
ECHO_MODULE = Path("/usr/lib/nginx/modules/ngx_http_echo_module.so")

#: The ticker body: a small fixed JSON document, exactly 137 bytes.
TICKER_BODY = (
    b'{"symbol":"BTCUSDT","bidPrice":"67123.45000000","bidQty":"1.250000",'
    b'"askPrice":"67123.46000000","askQty":"0.750000","time":1700000000000}'
)
assert len(TICKER_BODY) == 137

#: Static files served under /static/, /chunked/ and /throttled/: name -> size in bytes.
STATIC_FILES = {"2k.bin": 2048, "64k.bin": 65536, "1m.bin": 1048576}

_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@functools.lru_cache(maxsize=8)
def static_body(name_or_size: str | int) -> bytes:
    """The exact content of a static file (by name in STATIC_FILES, or by size).

    Deterministic and printable without ``<`` so the ssi filter passes it through unchanged;
    a newline every 64 bytes keeps it readable.
    """
    size = STATIC_FILES[name_or_size] if isinstance(name_or_size, str) else int(name_or_size)
    out = bytearray()
    counter = 0
    while len(out) < size:
        digest = hashlib.sha256(b"fastpool-%d" % counter).digest()
        out += bytes(_ALPHABET[b & 63] for b in digest)
        counter += 1
        if len(out) % 64 == 0:
            out[-1:] = b"\n"
    return bytes(out[:size])


class NginxUnavailable(RuntimeError):
    """nginx is not installed (or not runnable) on this machine."""


def nginx_required() -> bool:
    """True when a missing nginx must fail the tests (CI sets FASTPOOL_REQUIRE_NGINX=1)."""
    return os.environ.get("FASTPOOL_REQUIRE_NGINX") == "1"


def find_nginx() -> str:
    """Path of the nginx binary: $FASTPOOL_NGINX when set (and only it), else
    /usr/sbin/nginx or nginx on $PATH.

    Raises NginxUnavailable with an installation hint when none is executable.
    """
    override = os.environ.get("FASTPOOL_NGINX")
    if override:
        candidates = [override]  # an explicit choice is the only one looked at
    else:
        candidates = [DEFAULT_NGINX]
        which = shutil.which("nginx")
        if which:
            candidates.append(which)
    for c in candidates:
        if os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise NginxUnavailable(
        f"nginx not found (looked at {', '.join(candidates)}); install it with "
        "`apt-get install -y nginx-light` (Debian), as .ci/run does"
    )


# --- access log ----------------------------------------------------------------------------

_LOG_FIELDS = {
    "conn": "$connection",
    "conn_requests": "$connection_requests",
    "method": "$request_method",
    "uri": "$request_uri",
    "status": "$status",
    "ssl_protocol": "$ssl_protocol",
    "ssl_reused": "$ssl_session_reused",
    "ssl_client_verify": "$ssl_client_verify",
    "server_port": "$server_port",
    "remote_port": "$remote_port",
    "request_length": "$request_length",
    "body_bytes_sent": "$body_bytes_sent",
    "tag": "$http_x_test_tag",
    "msec": "$msec",
}
_LOG_FORMAT = "{" + ",".join(f'"{k}":"{v}"' for k, v in _LOG_FIELDS.items()) + "}"


@dataclass(frozen=True)
class AccessEntry:
    """One access log line."""

    connection: int  #: nginx's connection serial ($connection): distinct per TCP connection
    connection_requests: int  #: 1 for the first request on the connection, then 2, 3, ...
    method: str
    uri: str  #: $request_uri, query included
    status: int
    ssl_protocol: str  #: "TLSv1.2", "TLSv1.3" or "" on plain listeners
    ssl_session_reused: bool  #: the TLS handshake resumed a session ($ssl_session_reused "r")
    ssl_client_verify: str  #: "SUCCESS", "NONE", "FAILED:..." on TLS; "" on plain
    server_port: int
    remote_port: int  #: the client's source port
    request_length: int  #: request line + headers + body as received
    body_bytes_sent: int
    tag: str  #: the request's X-Test-Tag header ("" when absent)
    msec: float  #: time the line was written (epoch seconds, ms precision)
    raw: dict = field(repr=False, compare=False)

    @classmethod
    def parse(cls, line: str) -> AccessEntry:
        d = json.loads(line)

        def num(key: str) -> int:
            v = d.get(key, "")
            return int(v) if v not in ("", "-") else 0

        return cls(
            connection=num("conn"),
            connection_requests=num("conn_requests"),
            method=d["method"],
            uri=d["uri"],
            status=num("status"),
            ssl_protocol=d["ssl_protocol"],
            ssl_session_reused=d["ssl_reused"] == "r",
            ssl_client_verify=d["ssl_client_verify"],
            server_port=num("server_port"),
            remote_port=num("remote_port"),
            request_length=num("request_length"),
            body_bytes_sent=num("body_bytes_sent"),
            tag=d["tag"],
            msec=float(d["msec"]),
            raw=d,
        )


class AccessLog:
    """Reader of an instance's JSON access log.

    Positions are entry counts: ``m = log.mark()`` before an action, then
    ``log.wait_for(n, since=m)`` returns the ``n`` (or more) entries written after it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self, since: int = 0) -> list[AccessEntry]:
        """All complete entries, from the ``since``-th on."""
        try:
            data = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = data.split("\n")[:-1]  # the last piece is "" or a line still being written
        return [AccessEntry.parse(line) for line in lines[since:] if line]

    def mark(self) -> int:
        """The number of entries so far: pass it as ``since`` to see only later entries."""
        return len(self.entries())

    def wait_for(self, count: int, since: int = 0, timeout: float = 5.0) -> list[AccessEntry]:
        """Entries after ``since`` once there are at least ``count``; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            got = self.entries(since)
            if len(got) >= count:
                return got
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"access log has {len(got)} entries after mark {since}, expected {count}"
                )
            time.sleep(0.01)

    def connections(self, since: int = 0) -> dict[int, list[AccessEntry]]:
        """Entries after ``since`` grouped by connection serial, in log order."""
        out: dict[int, list[AccessEntry]] = {}
        for e in self.entries(since):
            out.setdefault(e.connection, []).append(e)
        return out


# --- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """One listening socket of an instance."""

    name: str
    host: str  #: "127.0.0.1" or "::1"
    port: int
    tls: bool
    description: str

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def url(self, path: str = "/", host: str | None = None) -> str:
        """``http(s)://host:port/path``; ``host`` defaults to the listener's IP literal
        (pass "localhost" to test name verification)."""
        h = host or self.host
        if ":" in h:
            h = f"[{h}]"
        return f"{'https' if self.tls else 'http'}://{h}:{self.port}{path}"


_live_instances: weakref.WeakSet[NginxServer] = weakref.WeakSet()
_live_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _live_lock:
        instances = list(_live_instances)
    for inst in instances:
        inst.stop()


atexit.register(_stop_all_at_exit)

_PR_SET_PDEATHSIG = 1
try:
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux/glibc: atexit + stop() still apply
    _prctl = None


def _child_setup() -> None:
    # Runs in the child between fork and exec: only a prctl call, resolved beforehand.
    # The kernel sends SIGKILL to nginx when the thread that started it dies, so a crashed
    # or killed test run cannot leave nginx behind.
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


_COMMON_HEADERS = """\
add_header X-Request-Uri $request_uri always;
add_header X-Connection $connection always;
add_header X-Connection-Requests $connection_requests always;
add_header X-Test-Tag $http_x_test_tag always;
add_header X-Client-Verify $ssl_client_verify always;
"""


def _locations(static_dir: Path, ssi_dir: Path, has_echo: bool, ready_token: str) -> str:
    ticker = TICKER_BODY.decode()
    q = lambda s: "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"  # noqa: E731
    parts = [
        f"""
location = / {{ default_type text/plain; return 200 "fastpool test nginx\\n"; }}
location = /__ready {{ access_log off; default_type text/plain; return 200 "ready {ready_token}"; }}
location = /api/v3/ticker {{ default_type application/json; return 200 {q(ticker)}; }}
location = /api/v3/order {{
    default_type application/json;
    return 200 '{{"status":"NEW","method":"$request_method","uri":"$request_uri","connection":$connection,"request":$connection_requests}}';
}}
location /static/ {{ alias {static_dir}/; default_type application/octet-stream; }}
location /throttled/ {{ alias {static_dir}/; default_type application/octet-stream; limit_rate 256k; }}
location /chunked/ {{ alias {static_dir}/; default_type application/octet-stream; ssi on; ssi_types *; }}
location = /chunked/ticker {{ default_type application/json; ssi on; ssi_types *; return 200 {q(ticker)}; }}
location = /chunked/echo-uri {{ alias {ssi_dir}/echo-uri.txt; default_type text/plain; ssi on; ssi_types *; }}
location = /204 {{ return 204; }}
location = /304 {{ return 304; }}
location = /close {{ keepalive_timeout 0; default_type text/plain; return 200 "close\\n"; }}
location = /status/400 {{ default_type application/json; return 400 '{{"code":-1100,"msg":"bad request"}}'; }}
location = /status/429 {{
    include headers.conf;
    add_header Retry-After 1 always;
    default_type application/json;
    return 429 '{{"code":-1003,"msg":"too many requests"}}';
}}
location = /status/500 {{ default_type application/json; return 500 '{{"code":-1000,"msg":"internal"}}'; }}
location = /status/503 {{ default_type application/json; return 503 '{{"code":-1001,"msg":"unavailable"}}'; }}
location = /headers/repeated {{
    include headers.conf;
    add_header Set-Cookie "a=1; Path=/" always;
    add_header Set-Cookie "b=2; Path=/" always;
    add_header X-Dup one always;
    add_header X-Dup two always;
    default_type text/plain;
    return 200 "repeated\\n";
}}
"""
    ]
    if has_echo:
        parts.append(
            """
location = /slow { default_type text/plain; echo_sleep $arg_s; echo "slept $arg_s"; }
location = /echo { default_type application/octet-stream; echo_read_request_body; echo_request_body; }
"""
        )
    return "".join(parts)


class NginxServer:
    """One private nginx instance. Use as a context manager, or start()/stop().

    ``directory`` must be empty or absent (the instance owns it). ``keepalive_timeout`` is in
    seconds (fractions allowed, e.g. 0.5). ``ipv6=None`` adds the [::1] listeners when the
    kernel supports IPv6; True requires it. ``cert_listeners`` adds one listener per test
    certificate. ``extra_http`` is appended inside ``http {}`` verbatim.
    """

    START_TIMEOUT = 10.0
    STOP_TIMEOUT = 5.0
    BIND_ATTEMPTS = 4

    def __init__(
        self,
        certs: CertSet,
        directory: str | Path,
        *,
        keepalive_requests: int = 1000,
        keepalive_timeout: float = 75.0,
        ipv6: bool | None = None,
        cert_listeners: bool = True,
        error_log_level: str = "info",
        extra_http: str = "",
        binary: str | None = None,
    ) -> None:
        self.certs = certs
        self.directory = Path(directory)
        self.keepalive_requests = int(keepalive_requests)
        self.keepalive_timeout = float(keepalive_timeout)
        if ipv6 is None:
            ipv6 = ipv6_available()
        elif ipv6 and not ipv6_available():
            raise RuntimeError("ipv6=True but this kernel cannot bind ::1")
        self.ipv6 = ipv6
        self.cert_listeners = cert_listeners
        self.error_log_level = error_log_level
        self.extra_http = extra_http
        self.binary = binary or find_nginx()
        self.has_echo = ECHO_MODULE.is_file()
        self.listeners: dict[str, Listener] = {}
        self.conf_path = self.directory / "nginx.conf"
        self.static_dir = self.directory / "static"
        self.error_log_path = self.directory / "logs" / "error.log"
        self.access_log = AccessLog(self.directory / "logs" / "access.log")
        self._proc: subprocess.Popen | None = None
        self._stdout = None
        self._ready_token = secrets.token_hex(8)

    # -- public API --

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def port(self, name: str) -> int:
        return self.listeners[name].port

    def url(self, name: str, path: str = "/", host: str | None = None) -> str:
        return self.listeners[name].url(path, host)

    def address(self, name: str) -> tuple[str, int]:
        return self.listeners[name].address

    def error_log_text(self) -> str:
        try:
            return self.error_log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self) -> NginxServer:
        if self._proc is not None:
            raise RuntimeError("already started")
        self._prepare_files()
        last_error = ""
        for _attempt in range(self.BIND_ATTEMPTS):
            self._assign_ports()
            self.conf_path.write_text(self._config(), encoding="utf-8")
            self.error_log_path.write_text("", encoding="utf-8")
            try:
                self._spawn_and_wait()
                return self
            except RuntimeError as exc:
                last_error = str(exc)
                if "Address already in use" not in last_error:
                    raise
                # A port chosen free was taken before nginx bound it: new ports, again.
        raise RuntimeError(f"nginx could not bind after {self.BIND_ATTEMPTS} tries: {last_error}")

    def stop(self) -> None:
        """Terminate nginx (SIGTERM: fast shutdown; SIGKILL after STOP_TIMEOUT) and reap it."""
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(self.STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(self.STOP_TIMEOUT)
        finally:
            if self._stdout is not None:
                self._stdout.close()
                self._stdout = None
            with _live_lock:
                _live_instances.discard(self)

    def __enter__(self) -> NginxServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals --

    def _prepare_files(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        if any(d.iterdir()):
            raise RuntimeError(f"{d} is not empty: an NginxServer owns its directory")
        for sub in ("logs", "static", "ssi", "tmp/body", "tmp/proxy", "tmp/fastcgi",
                    "tmp/uwsgi", "tmp/scgi"):
            (d / sub).mkdir(parents=True)
        for name in STATIC_FILES:
            (self.static_dir / name).write_bytes(static_body(name))
        (d / "ssi" / "echo-uri.txt").write_text(
            'uri=<!--# echo var="request_uri" encoding="none" -->;end\n', encoding="utf-8"
        )
        (d / "headers.conf").write_text(_COMMON_HEADERS, encoding="utf-8")
        (d / "locations.conf").write_text(
            _locations(self.static_dir, d / "ssi", self.has_echo, self._ready_token),
            encoding="utf-8",
        )

    def _listener_specs(self) -> list[tuple[str, str, str | None, str, str]]:
        """(name, host, protocols or None for plain, certificate pair name, description)."""
        specs = [
            ("plain", LOOPBACK_V4, None, "", "HTTP"),
            ("tls12", LOOPBACK_V4, "TLSv1.2", "server", "TLS 1.2 only"),
            ("tls13", LOOPBACK_V4, "TLSv1.3", "server", "TLS 1.3 only"),
            ("tls", LOOPBACK_V4, "TLSv1.2 TLSv1.3", "server", "TLS 1.2 and 1.3"),
            ("mtls", LOOPBACK_V4, "TLSv1.2 TLSv1.3", "server", "TLS, client cert required"),
        ]
        if self.ipv6:
            specs += [
                ("plain6", LOOPBACK_V6, None, "", "HTTP on ::1"),
                ("tls6", LOOPBACK_V6, "TLSv1.2 TLSv1.3", "server", "TLS on ::1"),
            ]
        if self.cert_listeners:
            for name in (*BAD_SERVER_CERTS, "ip-only", "server-intermediate"):
                specs.append(
                    (f"cert-{name}", LOOPBACK_V4, "TLSv1.2 TLSv1.3", name, f"presents {name}")
                )
        return specs

    def _assign_ports(self) -> None:
        specs = self._listener_specs()
        v4 = iter(free_ports(sum(1 for s in specs if s[1] == LOOPBACK_V4), LOOPBACK_V4))
        n6 = sum(1 for s in specs if s[1] == LOOPBACK_V6)
        v6 = iter(free_ports(n6, LOOPBACK_V6) if n6 else [])
        self.listeners = {}
        for name, host, protocols, _pair, desc in specs:
            port = next(v4) if host == LOOPBACK_V4 else next(v6)
            self.listeners[name] = Listener(name, host, port, protocols is not None, desc)

    def _config(self) -> str:
        d = self.directory
        servers = []
        for name, host, protocols, pair_name, _desc in self._listener_specs():
            lst = self.listeners[name]
            addr = f"[{host}]" if ":" in host else host
            lines = [f"    listen {addr}:{lst.port}{' ssl' if protocols else ''};",
                     "    server_name localhost;"]
            if protocols:
                pair = self.certs.pair(pair_name)
                lines += [
                    f"    ssl_certificate {pair.chain};",
                    f"    ssl_certificate_key {pair.key};",
                    f"    ssl_protocols {protocols};",
                ]
            if name == "mtls":
                lines += [
                    "    ssl_verify_client on;",
                    f"    ssl_client_certificate {self.certs.client_ca};",
                    "    ssl_verify_depth 2;",
                ]
            lines += ["    include headers.conf;", "    include locations.conf;"]
            servers.append(f"  # {name}\n  server {{\n" + "\n".join(lines) + "\n  }\n")
        timeout_ms = max(0, round(self.keepalive_timeout * 1000))
        load = f"load_module {ECHO_MODULE};\n" if self.has_echo else ""
        return f"""# generated by tests/support/nginx.py
{load}daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
lock_file {d}/nginx.lock;
error_log {self.error_log_path} {self.error_log_level};
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  types {{ application/json json; text/plain txt; application/octet-stream bin; }}
  default_type application/octet-stream;
  log_format fastpool_json escape=json '{_LOG_FORMAT}';
  access_log {self.access_log.path} fastpool_json;
  server_tokens off;
  sendfile on;
  client_max_body_size 16m;
  keepalive_requests {self.keepalive_requests};
  keepalive_timeout {timeout_ms}ms;
  ssl_session_cache shared:fastpool_tls:1m;
  ssl_session_timeout 10m;
  ssl_session_tickets on;
{self.extra_http}
{''.join(servers)}}}
"""

    def _spawn_and_wait(self) -> None:
        if self._stdout is not None:
            self._stdout.close()
        self._stdout = open(self.directory / "logs" / "stdout.log", "ab")
        self._proc = subprocess.Popen(
            [self.binary, "-p", f"{self.directory}/", "-c", str(self.conf_path),
             "-e", str(self.error_log_path)],
            stdin=subprocess.DEVNULL,
            stdout=self._stdout,
            stderr=subprocess.STDOUT,
            preexec_fn=_child_setup,
            close_fds=True,
        )
        with _live_lock:
            _live_instances.add(self)
        deadline = time.monotonic() + self.START_TIMEOUT
        alive = lambda: self._proc is not None and self._proc.poll() is None  # noqa: E731
        try:
            for lst in self.listeners.values():
                wait_for_port(lst.host, lst.port, max(0.1, deadline - time.monotonic()),
                              alive=alive)
            # A connect alone proves little: the kernel accepts into the backlog while nginx
            # is still retrying a bind that will fail, and a port can belong to someone
            # else. Ready means: this instance answered on every listener.
            for lst in self.listeners.values():
                self._wait_answer(lst, deadline, alive)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            self._proc = None
            out = (self.directory / "logs" / "stdout.log").read_text(errors="replace")
            raise RuntimeError(
                f"nginx did not start: {exc}\n--- error log ---\n{self.error_log_text()}"
                f"\n--- output ---\n{out}"
            ) from None

    def _wait_answer(self, lst: Listener, deadline: float, alive) -> None:
        want = f"ready {self._ready_token}".encode()
        last = ""
        while True:
            if not alive():
                raise RuntimeError(f"nginx exited before answering on {lst.name}")
            try:
                got = self._probe(lst)
                if got.startswith(b"HTTP/1.1 200 ") and got.endswith(want):
                    return
                last = repr(got[:200])
            except (OSError, ssl.SSLError) as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no answer from nginx on {lst.name} {lst.address}: {last}")
            time.sleep(0.02)

    def _probe(self, lst: Listener) -> bytes:
        sock = socket.create_connection(lst.address, timeout=0.5)
        try:
            if lst.tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                if lst.name == "mtls":
                    ctx.load_cert_chain(str(self.certs.client.chain), str(self.certs.client.key))
                sock = ctx.wrap_socket(sock, server_hostname="localhost")
            sock.sendall(
                b"GET /__ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
            )
            data = b""
            while len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            return data
        finally:
            sock.close()

    def __repr__(self) -> str:
        ports = ", ".join(f"{n}={lst.port}" for n, lst in self.listeners.items())
        return f"<NginxServer pid={self.pid} {ports}>"
