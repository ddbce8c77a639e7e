"""What Pool and AsyncPool share: one constructor path, the verbs written once, and the views
(url, engine, stats, repr).

The verbs follow urllib3's RequestMethods: each spells its parameters once and hands them to
the driver's ``_send``, which is a plain method in Pool (returns a Response) and a coroutine
function in AsyncPool (so ``pool.get(...)`` returns an awaitable there). The generic parameter
R is what a verb returns.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Generic, Optional, TypeVar

from .._model.headers import HeaderTypes
from .._model.keepwarm import KeepWarm
from .._model.limits import Limits
from .._model.response import ResponseContext
from .._model.timeout import _UNSET, TimeoutTypes
from .._model.url import ParamsTypes
from .._policy.stats import PoolStats
from .config import PoolConfig
from .connect import CertTypes, VerifyTypes

R = TypeVar("R")

#: Every pool alive in this process, for the fork handler.
_POOLS: weakref.WeakSet[PoolBase[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """os.register_at_fork's child handler: no pool may go on using its parent's sockets."""
    for pool in list(_POOLS):
        pool._after_fork()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_after_fork_in_child)


class PoolBase(Generic[R]):
    """The parts of a pool that do not wait (see Pool for the parameters)."""

    _kind = "Pool"
    #: Whether new TLS connections need a check once their tickets arrived (the sync driver;
    #: the async one reads every idle connection's bytes as they come).
    _tends = False

    def __init__(self, url: str, *, connections: int = 4, max_connections: Optional[int] = None,
                 verify: VerifyTypes = True, cert: CertTypes = None, headers: HeaderTypes = None,
                 timeout: TimeoutTypes = 5.0, retries: int = 0, limits: Optional[Limits] = None,
                 tls_min: Optional[str] = None, tls_max: Optional[str] = None,
                 stale_check_after: float = 0.0, engine: Optional[str] = None,
                 reserved: int = 0, keep_warm: Optional[KeepWarm] = None,
                 tcp_keepalive: Optional[float] = None, max_lifetime: Optional[float] = None,
                 max_requests: Optional[int] = None) -> None:
        self._cfg = cfg = PoolConfig(
            url, connections=connections, max_connections=max_connections, verify=verify,
            cert=cert, headers=headers, timeout=timeout, retries=retries, limits=limits,
            tls_min=tls_min, tls_max=tls_max, stale_check_after=stale_check_after,
            engine=engine, reserved=reserved, keep_warm=keep_warm, tcp_keepalive=tcp_keepalive,
            max_lifetime=max_lifetime, max_requests=max_requests)
        self._policy = cfg.new_policy(self._tends)
        self._prepare = cfg.builder.prepare
        self._origin = cfg.origin
        self._response_ctx = ResponseContext(cfg.engine.decode_headers, cfg.engine.header_values,
                                             cfg.origin)
        self._timeout = cfg.timeout
        self._retries = cfg.retries
        self._start()
        _POOLS.add(self)

    def _start(self) -> None:
        """The driver's own set-up, once the configuration is validated (the sync driver
        opens its connections here; the async one when it is opened on a loop)."""
        raise NotImplementedError

    def _after_fork(self) -> None:
        """In a child process after fork(): two processes on one connection would interleave
        their requests and responses (and break its TLS state), so the child closes every
        connection it inherited — the descriptor only: no byte is written and the parent's
        connection goes on untouched — and starts afresh: its first request opens a new
        connection and the pool refills in the background. Stats start from zero."""
        for conn in list(self._policy.live):
            conn.close()
        closed = self._policy.closed
        self._policy = self._cfg.new_policy(self._tends)
        self._policy.slots.closed = closed

    # ---- views -------------------------------------------------------------------------

    @property
    def engine(self) -> str:
        """"c" or "python": the engine this pool runs on."""
        return "c" if self._cfg.engine.__name__.endswith("._core") else "python"

    @property
    def url(self) -> str:
        """The pool's base URL (scheme, host, port and base path)."""
        o = self._origin
        return f"{o.scheme}://{o.netloc}{o.base_path}"

    @property
    def closed(self) -> bool:
        return self._policy.closed

    def stats(self) -> PoolStats:
        """Counters and latency percentiles (ns) since the pool was created."""
        return self._policy.snapshot()

    def __repr__(self) -> str:
        s = self._policy.slots
        return (f"<{self._kind} {self.url} engine={self.engine} open={s.total_open} "
                f"idle={self._policy.idle_count()}{' closed' if s.closed else ''}>")

    # ---- the verbs ---------------------------------------------------------------------

    def _send(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
              content: Any, json: Any, timeout: Any, retries: Optional[int],
              priority: bool) -> R:
        raise NotImplementedError

    def request(self, method: str, url: str, *, params: ParamsTypes = None,
                headers: HeaderTypes = None, content: Any = None, json: Any = None,
                timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False) -> R:
        """Sends one request and returns its response; raises NotSentError or MaybeSentError.

        ``url`` is a path (joined to the pool's base path) or an absolute URL on the pool's
        origin. ``params`` (dict, pairs or an encoded str) becomes the query; ``content``
        (bytes or str) or ``json`` the body; ``headers`` are added to the pool's.
        ``timeout`` overrides the pool's (seconds or a Timeout). ``retries`` (default: the
        pool's) is how many times a MaybeSent failure of an idempotent method may be sent
        again; a request that certainly did not leave (a connection found closed while
        idle) is always moved to another connection. ``priority=True`` (orders, cancels)
        may use the reserved connections and goes before every ordinary request waiting."""
        return self._send(method, url, params, headers, content, json, timeout, retries, priority)

    def get(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
            timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False) -> R:
        """GET url (see request())."""
        return self._send("GET", url, params, headers, None, None, timeout, retries, priority)

    def head(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
             timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False) -> R:
        """HEAD url (see request())."""
        return self._send("HEAD", url, params, headers, None, None, timeout, retries, priority)

    def options(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False) -> R:
        """OPTIONS url (see request())."""
        return self._send("OPTIONS", url, params, headers, None, None, timeout, retries, priority)

    def delete(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
               timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False) -> R:
        """DELETE url (see request())."""
        return self._send("DELETE", url, params, headers, None, None, timeout, retries, priority)

    def post(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
             content: Any = None, json: Any = None, timeout: Any = _UNSET,
             retries: Optional[int] = None, priority: bool = False) -> R:
        """POST url (see request()); never re-sent by the pool once it may have left."""
        return self._send("POST", url, params, headers, content, json, timeout, retries, priority)

    def put(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
            content: Any = None, json: Any = None, timeout: Any = _UNSET,
            retries: Optional[int] = None, priority: bool = False) -> R:
        """PUT url (see request())."""
        return self._send("PUT", url, params, headers, content, json, timeout, retries, priority)

    def patch(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
              content: Any = None, json: Any = None, timeout: Any = _UNSET,
              retries: Optional[int] = None, priority: bool = False) -> R:
        """PATCH url (see request()); never re-sent by the pool once it may have left."""
        return self._send("PATCH", url, params, headers, content, json, timeout, retries, priority)
