"""How each client library is driven. Runs only inside a client's worker process.

Every adapter is built from a target (a dict from :mod:`fastpool._bench.server`) and offers:

    open(connections)       build the client: `connections` keep-alive connections at most
                            (fastpool opens them now; peers open them on their first requests,
                            which the warm-up makes)
    request()               one GET of the target; returns (status, body length) with the
                            whole body read
    requester(i)            the request function of thread i (sync clients; most share one
                            client, pycurl and curl_cffi keep a handle per thread, the same
                            one every round, so that its connection stays open)
    request_close()         one GET that says "Connection: close", so that the next request
                            has to reconnect (the reconnect mode's way in for peers)
    cold_start()            a brand-new client and its first response: (status, length,
                            closer); the caller times it and calls closer() after the clock
    reconnect(full)         (handshakes=True clients only) a new connection the way the pool
                            opens one, with a full or a resumed TLS handshake, and a first
                            exchange on it: (status, length, resumed)
    close()

Async adapters have the same methods as coroutines (requester() is not used: the throughput
mode runs N tasks on request()). The floor adapter has open/close/cold_start/reconnect and
runs its timed loops in C (fastpool._engine._core.floor_latencies).

All of them verify TLS against the target's CA (or the system store for a URL without
--cafile), send a GET of the same URL, and read the whole body.
"""

from __future__ import annotations

import ssl
import threading
from datetime import timedelta
from typing import Any, Callable, Optional

_TIMEOUT = 30.0
_TIMEOUT_NS = int(_TIMEOUT * 1e9)
_CLOSE = {"Connection": "close"}


def ssl_context(target: dict) -> Optional[ssl.SSLContext]:
    """The stdlib context for Python clients: TLS verification on, against the target's CA."""
    if not target["tls"]:
        return None
    ctx = ssl.create_default_context(cafile=target["ca_file"]) if target["ca_file"] \
        else ssl.create_default_context()
    return ctx


class Adapter:
    kind = "sync"
    handshakes = False
    # What every adapter offers (see the module docstring); declared here, defined by each
    # subclass, as plain methods or as coroutines (async adapters), hence the Any results.
    # request is an attribute that open() binds: the timed loops call it without a lookup.
    request: Callable[[], Any]
    open: Callable[[int], Any]
    cold_start: Callable[[], Any]
    close: Callable[[], Any]

    def __init__(self, target: dict, engine: Optional[str] = None) -> None:
        self.t = target
        self.engine = engine
        self.url = target["url"]

    def requester(self, i: int) -> Callable[[], tuple]:
        return self.request


# ---- fastpool -------------------------------------------------------------------------------

class _FastpoolBase(Adapter):
    handshakes = True
    _data: bytes   # the request's bytes, set by FastpoolSync.open (the one that reconnects)

    def _kwargs(self, connections: int) -> dict:
        return dict(connections=connections, max_connections=connections,
                    verify=self.t["ca_file"] or True, timeout=_TIMEOUT, engine=self.engine)

    def _engine_request(self, pool) -> bytes:
        return pool._prepare("GET", self.t["path"], None, None, None, None)[0]

    def _reconnect(self, pool, full: bool) -> tuple:
        """What the pool does when it replaces a connection (PoolConfig.open: the pool's TLS
        context, so its cached session), then one exchange on the new connection."""
        cfg = pool._cfg
        if full and cfg.tls is not None:
            cfg.tls.forget_session()
        conn = cfg.open(blocking=True)
        try:
            raw = conn.exchange(self._data, False, _TIMEOUT_NS, _TIMEOUT_NS, 0)
            return raw[0], len(raw[4]), bool(getattr(conn, "resumed", False))
        finally:
            conn.close()


class FastpoolSync(_FastpoolBase):
    def open(self, connections: int) -> None:
        import fastpool

        self.pool = fastpool.Pool(self.t["base"], **self._kwargs(connections))
        self._data = self._engine_request(self.pool)
        get, path = self.pool.get, self.t["path"]

        def request() -> tuple:
            r = get(path)
            return r.status_code, len(r.content)

        self.request = request

    def request_close(self) -> tuple:
        r = self.pool.get(self.t["path"], headers=_CLOSE)
        return r.status_code, len(r.content)

    def cold_start(self) -> tuple:
        import fastpool

        pool = fastpool.Pool(self.t["base"], **self._kwargs(1))
        r = pool.get(self.t["path"])
        return r.status_code, len(r.content), pool.close

    def reconnect(self, full: bool) -> tuple:
        return self._reconnect(self.pool, full)

    def close(self) -> None:
        self.pool.close()


class FastpoolAsync(_FastpoolBase):
    kind = "async"
    handshakes = False   # the same engine-level reconnect as the sync pool: measured there

    async def open(self, connections: int) -> None:
        import fastpool

        self.pool = await fastpool.AsyncPool(self.t["base"], **self._kwargs(connections)).open()
        get, path = self.pool.get, self.t["path"]

        async def request() -> tuple:
            r = await get(path)
            return r.status_code, len(r.content)

        self.request = request

    async def request_close(self) -> tuple:
        r = await self.pool.get(self.t["path"], headers=_CLOSE)
        return r.status_code, len(r.content)

    async def cold_start(self) -> tuple:
        import fastpool

        pool = await fastpool.AsyncPool(self.t["base"], **self._kwargs(1)).open()
        r = await pool.get(self.t["path"])
        return r.status_code, len(r.content), pool.aclose

    async def close(self) -> None:
        await self.pool.aclose()


class Floor(Adapter):
    """The raw C client: fastpool's C connection engine driven from a C loop.

    Sends exactly the bytes fastpool.Pool sends for the same GET."""

    kind = "floor"
    handshakes = True

    def __init__(self, target: dict, engine: Optional[str] = None) -> None:
        super().__init__(target, "c")
        from .._engine import _core
        from .._model.request import RequestBuilder
        from .._model.url import parse_origin

        self.core = _core
        origin = parse_origin(target["base"])
        self.data = RequestBuilder(origin, _core, None).prepare(
            "GET", target["path"], None, None, None, None)[0]
        self.tls = self._context()
        self.conns: list = []

    def _context(self):
        if not self.t["tls"]:
            return None
        return self.core.TLSContext(verify=True, ca_file=self.t["ca_file"])

    def _connect(self, tls) -> Any:
        conn = self.core.Connection(None)
        conn.open(self.t["family"], self.t["ip"], self.t["port"], tls, self.t["host"], True, 0)
        return conn

    def open(self, connections: int) -> None:
        self.close()
        self.conns = [self._connect(self.tls) for _ in range(connections)]

    def exchange(self, conn) -> tuple:
        raw = conn.exchange(self.data, False, _TIMEOUT_NS, _TIMEOUT_NS, 0)
        return raw[0], len(raw[4])

    def floor(self, conn, count: int) -> tuple:
        """count exchanges in C: (latencies ns, responses with a wrong status or length)."""
        lat, bad = self.core.floor_latencies(conn, self.data, count, False, self.t["status"],
                                             self.t["length"])
        if len(lat) < count:
            raise ConnectionError(f"the server ended the connection after {len(lat)} of "
                                  f"{count} requests")
        return lat, bad

    def cold_start(self) -> tuple:
        conn = self._connect(self._context())
        status, length = self.exchange(conn)
        return status, length, conn.close

    def reconnect(self, full: bool) -> tuple:
        if full and self.tls is not None:
            self.tls.forget_session()
        conn = self._connect(self.tls)
        try:
            status, length = self.exchange(conn)
            return status, length, bool(conn.resumed)
        finally:
            conn.close()

    def close(self) -> None:
        for c in self.conns:
            c.close()
        self.conns = []


# ---- httpx ----------------------------------------------------------------------------------

class HttpxSync(Adapter):
    def _client(self, connections: int):
        import httpx

        return httpx.Client(verify=ssl_context(self.t) or True, timeout=_TIMEOUT,
                            limits=httpx.Limits(max_connections=connections,
                                                max_keepalive_connections=connections))

    def open(self, connections: int) -> None:
        self.client = self._client(connections)
        get, url = self.client.get, self.url

        def request() -> tuple:
            r = get(url)
            return r.status_code, len(r.content)

        self.request = request

    def request_close(self) -> tuple:
        r = self.client.get(self.url, headers=_CLOSE)
        return r.status_code, len(r.content)

    def cold_start(self) -> tuple:
        client = self._client(1)
        r = client.get(self.url)
        return r.status_code, len(r.content), client.close

    def close(self) -> None:
        self.client.close()


class HttpxAsync(Adapter):
    kind = "async"

    def _client(self, connections: int):
        import httpx

        return httpx.AsyncClient(verify=ssl_context(self.t) or True, timeout=_TIMEOUT,
                                 limits=httpx.Limits(max_connections=connections,
                                                     max_keepalive_connections=connections))

    async def open(self, connections: int) -> None:
        self.client = self._client(connections)
        get, url = self.client.get, self.url

        async def request() -> tuple:
            r = await get(url)
            return r.status_code, len(r.content)

        self.request = request

    async def request_close(self) -> tuple:
        r = await self.client.get(self.url, headers=_CLOSE)
        return r.status_code, len(r.content)

    async def cold_start(self) -> tuple:
        client = self._client(1)
        r = await client.get(self.url)
        return r.status_code, len(r.content), client.aclose

    async def close(self) -> None:
        await self.client.aclose()


# ---- aiohttp --------------------------------------------------------------------------------

class Aiohttp(Adapter):
    kind = "async"

    def _session(self, connections: int):
        import aiohttp

        ctx = ssl_context(self.t)
        connector = aiohttp.TCPConnector(limit=connections, limit_per_host=connections,
                                         ssl=ctx if ctx is not None else True)
        return aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=_TIMEOUT))

    async def _get(self, session, headers=None) -> tuple:
        async with session.get(self.url, headers=headers) as r:
            body = await r.read()
            return r.status, len(body)

    async def open(self, connections: int) -> None:
        self.session = self._session(connections)
        get, url = self.session.get, self.url

        async def request() -> tuple:
            async with get(url) as r:
                body = await r.read()
                return r.status, len(body)

        self.request = request

    async def request_close(self) -> tuple:
        return await self._get(self.session, _CLOSE)

    async def cold_start(self) -> tuple:
        session = self._session(1)
        status, length = await self._get(session)
        return status, length, session.close

    async def close(self) -> None:
        await self.session.close()


# ---- urllib3 / requests ---------------------------------------------------------------------

class Urllib3(Adapter):
    def _pool(self, connections: int):
        import urllib3

        kw: dict[str, Any] = dict(maxsize=connections, block=True, retries=False,
                                  timeout=_TIMEOUT)
        if self.t["tls"]:
            return urllib3.HTTPSConnectionPool(self.t["host"], self.t["port"],
                                               ssl_context=ssl_context(self.t),
                                               cert_reqs="CERT_REQUIRED", **kw)
        return urllib3.HTTPConnectionPool(self.t["host"], self.t["port"], **kw)

    def open(self, connections: int) -> None:
        self.pool = self._pool(connections)
        req, path = self.pool.request, self.t["path"]

        def request() -> tuple:
            r = req("GET", path, redirect=False)
            return r.status, len(r.data)

        self.request = request

    def request_close(self) -> tuple:
        r = self.pool.request("GET", self.t["path"], headers=_CLOSE, redirect=False)
        return r.status, len(r.data)

    def cold_start(self) -> tuple:
        pool = self._pool(1)
        r = pool.request("GET", self.t["path"], redirect=False)
        return r.status, len(r.data), pool.close

    def close(self) -> None:
        self.pool.close()


class Requests(Adapter):
    """verify= goes with every request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE
    override a Session's verify, but not a request's."""

    def _session(self, connections: int):
        import requests
        from requests.adapters import HTTPAdapter

        s = requests.Session()
        self.verify = self.t["ca_file"] or True
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=connections, pool_block=True,
                              max_retries=0)
        s.mount("https://", adapter)
        s.mount("http://", adapter)
        return s

    def open(self, connections: int) -> None:
        self.session = self._session(connections)
        get, url, verify = self.session.get, self.url, self.verify

        def request() -> tuple:
            r = get(url, timeout=_TIMEOUT, allow_redirects=False, verify=verify)
            return r.status_code, len(r.content)

        self.request = request

    def request_close(self) -> tuple:
        r = self.session.get(self.url, headers=_CLOSE, timeout=_TIMEOUT, allow_redirects=False,
                             verify=self.verify)
        return r.status_code, len(r.content)

    def cold_start(self) -> tuple:
        s = self._session(1)
        r = s.get(self.url, timeout=_TIMEOUT, allow_redirects=False, verify=self.verify)
        return r.status_code, len(r.content), s.close

    def close(self) -> None:
        self.session.close()


# ---- pycurl ---------------------------------------------------------------------------------

class _CurlHandle:
    """One libcurl easy handle (its own connection cache): not shareable between threads."""

    def __init__(self, t: dict) -> None:
        import pycurl  # type: ignore[import-untyped]  # pycurl ships no type information

        self.pycurl = pycurl
        self.n = 0
        c = self.c = pycurl.Curl()
        c.setopt(pycurl.URL, t["url"])
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.TIMEOUT_MS, int(_TIMEOUT * 1000))
        c.setopt(pycurl.TCP_NODELAY, 1)
        c.setopt(pycurl.HTTP_VERSION, pycurl.CURL_HTTP_VERSION_1_1)
        if t["tls"]:
            c.setopt(pycurl.SSL_VERIFYPEER, 1)
            c.setopt(pycurl.SSL_VERIFYHOST, 2)
            if t["ca_file"]:
                c.setopt(pycurl.CAINFO, t["ca_file"])
        c.setopt(pycurl.WRITEFUNCTION, self._write)
        self.code = pycurl.RESPONSE_CODE

    def _write(self, data: bytes) -> None:
        self.n += len(data)

    def request(self) -> tuple:
        self.n = 0
        self.c.perform()
        return self.c.getinfo(self.code), self.n

    def request_close(self) -> tuple:
        self.c.setopt(self.pycurl.HTTPHEADER, ["Connection: close"])
        try:
            return self.request()
        finally:
            self.c.setopt(self.pycurl.HTTPHEADER, [])

    def close(self) -> None:
        self.c.close()


class Pycurl(Adapter):
    def open(self, connections: int) -> None:
        self.handle = _CurlHandle(self.t)
        self.request = self.handle.request
        self._lock = threading.Lock()
        self._handles = [self.handle]

    def requester(self, i: int) -> Callable[[], tuple]:
        with self._lock:
            while len(self._handles) <= i:
                self._handles.append(_CurlHandle(self.t))
            return self._handles[i].request

    def request_close(self) -> tuple:
        return self.handle.request_close()

    def cold_start(self) -> tuple:
        h = _CurlHandle(self.t)
        status, length = h.request()
        return status, length, h.close

    def close(self) -> None:
        for h in self._handles:
            h.close()
        self._handles = []


# ---- pyreqwest ------------------------------------------------------------------------------

def _pyreqwest_builder(builder, t: dict, connections: int):
    b = builder().max_connections(connections).timeout(timedelta(seconds=_TIMEOUT)).http1_only()
    if t["tls"] and t["ca_pem"]:
        b = b.add_root_certificate_pem(t["ca_pem"])
    return b.build()


class PyreqwestSync(Adapter):
    def _client(self, connections: int):
        from pyreqwest.client import SyncClientBuilder

        return _pyreqwest_builder(SyncClientBuilder, self.t, connections)

    def open(self, connections: int) -> None:
        self.client = self._client(connections)
        get, url = self.client.get, self.url

        def request() -> tuple:
            r = get(url).build().send()
            return r.status, len(r.bytes())

        self.request = request

    def request_close(self) -> tuple:
        r = self.client.get(self.url).header("Connection", "close").build().send()
        return r.status, len(r.bytes())

    def cold_start(self) -> tuple:
        client = self._client(1)
        r = client.get(self.url).build().send()
        return r.status, len(r.bytes()), client.close

    def close(self) -> None:
        self.client.close()


class PyreqwestAsync(Adapter):
    kind = "async"

    def _client(self, connections: int):
        from pyreqwest.client import ClientBuilder

        return _pyreqwest_builder(ClientBuilder, self.t, connections)

    async def open(self, connections: int) -> None:
        self.client = self._client(connections)
        get, url = self.client.get, self.url

        async def request() -> tuple:
            r = await get(url).build().send()
            return r.status, len(await r.bytes())

        self.request = request

    async def request_close(self) -> tuple:
        r = await self.client.get(self.url).header("Connection", "close").build().send()
        return r.status, len(await r.bytes())

    async def cold_start(self) -> tuple:
        client = self._client(1)
        r = await client.get(self.url).build().send()
        return r.status, len(await r.bytes()), client.close

    async def close(self) -> None:
        await self.client.close()


# ---- primp ----------------------------------------------------------------------------------

class Primp(Adapter):
    """primp has no connection cap and no HTTP/1.1-only switch: it opens a connection per
    concurrent request (never more than the threads that share it), and speaks HTTP/1.1 here
    because the server's ALPN offers nothing else. No browser impersonation (the default)."""

    def _client(self):
        import primp

        return primp.Client(verify=True, ca_cert_file=self.t["ca_file"], timeout=_TIMEOUT,
                            follow_redirects=False, cookie_store=False, referer=False)

    def open(self, connections: int) -> None:
        self.client = self._client()
        get, url = self.client.get, self.url

        def request() -> tuple:
            r = get(url)
            return r.status_code, len(r.content)

        self.request = request

    def request_close(self) -> tuple:
        r = self.client.get(self.url, headers=_CLOSE)
        return r.status_code, len(r.content)

    def cold_start(self) -> tuple:
        client = self._client()
        r = client.get(self.url)
        return r.status_code, len(r.content), _drop(client)

    def close(self) -> None:
        self.client = None


def _drop(obj) -> Callable[[], None]:
    """A closer for clients that close their connections when garbage-collected."""
    box = [obj]
    return box.clear


# ---- rnet -----------------------------------------------------------------------------------

def _rnet_kwargs(t: dict, connections: int) -> dict:
    from pathlib import Path

    kw: dict[str, Any] = dict(
        http1_only=True, pool_max_size=connections, pool_max_idle_per_host=connections,
        timeout=int(_TIMEOUT), allow_redirects=False, cookie_store=False, tcp_nodelay=True)
    if t["tls"]:
        kw["verify"] = Path(t["ca_file"]) if t["ca_file"] else True
    return kw


class RnetSync(Adapter):
    def _client(self, connections: int):
        from rnet.blocking import BlockingClient

        return BlockingClient(**_rnet_kwargs(self.t, connections))

    def open(self, connections: int) -> None:
        self.client = self._client(connections)
        get, url = self.client.get, self.url

        def request() -> tuple:
            r = get(url)
            return r.status, len(r.bytes())

        self.request = request

    def request_close(self) -> tuple:
        r = self.client.get(self.url, headers=_CLOSE)
        return r.status, len(r.bytes())

    def cold_start(self) -> tuple:
        client = self._client(1)
        r = client.get(self.url)
        return r.status, len(r.bytes()), _drop(client)

    def close(self) -> None:
        self.client = None


class RnetAsync(Adapter):
    kind = "async"

    def _client(self, connections: int):
        import rnet

        return rnet.Client(**_rnet_kwargs(self.t, connections))

    async def open(self, connections: int) -> None:
        self.client = self._client(connections)
        get, url = self.client.get, self.url

        async def request() -> tuple:
            r = await get(url)
            return r.status, len(await r.bytes())

        self.request = request

    async def request_close(self) -> tuple:
        r = await self.client.get(self.url, headers=_CLOSE)
        return r.status, len(await r.bytes())

    async def cold_start(self) -> tuple:
        client = self._client(1)
        r = await client.get(self.url)
        return r.status, len(await r.bytes()), _drop(client)

    async def close(self) -> None:
        self.client = None


# ---- curl_cffi ------------------------------------------------------------------------------

class CurlCffi(Adapter):
    """A Session per thread, each with its one libcurl handle (its own thread-local handles
    would be new with every round's new threads, and so would their connections). No browser
    impersonation (the default)."""

    def _session(self):
        from curl_cffi import CurlHttpVersion
        from curl_cffi.requests import Session

        verify = (self.t["ca_file"] or True) if self.t["tls"] else False
        return Session(verify=verify, http_version=CurlHttpVersion.V1_1, timeout=_TIMEOUT,
                       allow_redirects=False, use_thread_local_curl=False)

    def open(self, connections: int) -> None:
        self.session = self._session()
        self._lock = threading.Lock()
        self._sessions = [self.session]
        self.request = self._bind(self.session)

    def _bind(self, session) -> Callable[[], tuple]:
        get, url = session.get, self.url

        def request() -> tuple:
            r = get(url)
            return r.status_code, len(r.content)

        return request

    def requester(self, i: int) -> Callable[[], tuple]:
        with self._lock:
            while len(self._sessions) <= i:
                self._sessions.append(self._session())
            return self._bind(self._sessions[i])

    def request_close(self) -> tuple:
        r = self.session.get(self.url, headers=_CLOSE)
        return r.status_code, len(r.content)

    def cold_start(self) -> tuple:
        s = self._session()
        r = s.get(self.url)
        return r.status_code, len(r.content), s.close

    def close(self) -> None:
        for s in self._sessions:
            s.close()
        self._sessions = []


# ---- httpr ----------------------------------------------------------------------------------

class Httpr(Adapter):
    """httpr has no connection cap: like primp, a connection per concurrent request."""

    def _client(self):
        import httpr

        return httpr.Client(verify=True, ca_cert_file=self.t["ca_file"], http1_only=True,
                            timeout=_TIMEOUT, follow_redirects=False, cookie_store=False,
                            referer=False)

    def open(self, connections: int) -> None:
        self.client = self._client()
        get, url = self.client.get, self.url

        def request() -> tuple:
            r = get(url)
            return r.status_code, len(r.content)

        self.request = request

    def request_close(self) -> tuple:
        r = self.client.get(self.url, headers=_CLOSE)
        return r.status_code, len(r.content)

    def cold_start(self) -> tuple:
        client = self._client()
        r = client.get(self.url)
        return r.status_code, len(r.content), client.close

    def close(self) -> None:
        self.client.close()


# ---- niquests -------------------------------------------------------------------------------

class Niquests(Adapter):
    """HTTP/2 and HTTP/3 off, no multiplexing, no retries. verify= goes with every request,
    as for requests: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's verify."""

    def _session(self, connections: int):
        import niquests

        self.verify = self.t["ca_file"] or True
        return niquests.Session(disable_http2=True, disable_http3=True, multiplexed=False,
                                pool_connections=1, pool_maxsize=connections, retries=0)

    def open(self, connections: int) -> None:
        self.session = self._session(connections)
        get, url, verify = self.session.get, self.url, self.verify

        def request() -> tuple:
            r = get(url, timeout=_TIMEOUT, allow_redirects=False, verify=verify)
            return r.status_code, len(r.content)

        self.request = request

    def request_close(self) -> tuple:
        r = self.session.get(self.url, headers=_CLOSE, timeout=_TIMEOUT, allow_redirects=False,
                             verify=self.verify)
        return r.status_code, len(r.content)

    def cold_start(self) -> tuple:
        s = self._session(1)
        r = s.get(self.url, timeout=_TIMEOUT, allow_redirects=False, verify=self.verify)
        return r.status_code, len(r.content), s.close

    def close(self) -> None:
        self.session.close()


# ---- aiosonic -------------------------------------------------------------------------------

class Aiosonic(Adapter):
    """Its pool recycles a connection after 1000 requests and after 60 s idle by default:
    both off here, so that it keeps its connections like every other client."""

    kind = "async"

    def _client(self, connections: int):
        # aiosonic ships no type information (no py.typed marker, no stubs)
        import aiosonic  # type: ignore[import-untyped]
        from aiosonic.pools import PoolConfig  # type: ignore[import-untyped]
        from aiosonic.timeout import Timeouts  # type: ignore[import-untyped]

        pool = PoolConfig(size=connections, max_conn_requests=None, max_conn_idle_ms=None)
        connector = aiosonic.TCPConnector(pool_configs={":default": pool},
                                          timeouts=Timeouts(request_timeout=_TIMEOUT))
        self.ssl = ssl_context(self.t)
        return aiosonic.HTTPClient(connector=connector, verify_ssl=True, follow=False,
                                   handle_cookies=False)

    async def _get(self, client, headers=None) -> tuple:
        r = await client.get(self.url, headers=headers, ssl=self.ssl)
        return r.status_code, len(await r.content())

    async def open(self, connections: int) -> None:
        self.client = client = self._client(connections)
        get, url, ctx = client.get, self.url, self.ssl

        async def request() -> tuple:
            r = await get(url, ssl=ctx)
            return r.status_code, len(await r.content())

        self.request = request

    async def request_close(self) -> tuple:
        return await self._get(self.client, _CLOSE)

    async def cold_start(self) -> tuple:
        client = self._client(1)
        status, length = await self._get(client)
        return status, length, client.aclose

    async def close(self) -> None:
        await self.client.aclose()


def make(adapter: str, target: dict, engine: Optional[str]) -> Adapter:
    return globals()[adapter](target, engine)

