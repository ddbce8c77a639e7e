"""What Pool and AsyncPool are configured with, validated once and shared by both."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any, Optional, cast

from .._engine import get_engine
from .._model.headers import HeaderTypes
from .._model.keepwarm import KeepWarm
from .._model.limits import DEFAULT_LIMITS, Limits
from .._model.request import RequestBuilder
from .._model.timeout import Timeout, TimeoutTypes
from .._model.url import parse_origin
from .._policy.choice import CHOICES
from .._policy.pool import PoolPolicy
from .connect import (
    CertTypes,
    VerifyTypes,
    caller_stacklevel,
    open_connection,
    resolve,
    resolve_addresses,
    set_tcp_keepalive,
    tls_context,
)

if TYPE_CHECKING:
    from .._engine import _core


class PoolConfig:
    """A pool's fixed settings and the objects derived from them."""

    def __init__(self, url: str, *, connections: int = 4, max_connections: Optional[int] = None,
                 verify: VerifyTypes = True, cert: CertTypes = None, headers: HeaderTypes = None,
                 timeout: TimeoutTypes = 5.0, retries: int = 0, limits: Optional[Limits] = None,
                 tls_min: Optional[str] = None, tls_max: Optional[str] = None,
                 stale_check_after: float = 0.0, engine: Optional[str] = None,
                 reserved: int = 0, keep_warm: Optional[KeepWarm] = None,
                 tcp_keepalive: Optional[float] = None, max_lifetime: Optional[float] = None,
                 max_requests: Optional[int] = None, addresses: Any = None,
                 choose: Optional[str] = None, busy_poll: Optional[float] = None,
                 driver: str = "Pool") -> None:
        self.engine = get_engine(engine)
        #: Nanoseconds each blocking read spins before it sleeps (csrc/fp_conn.h); 0: off.
        self.busy_poll_ns = _busy_poll_ns(busy_poll, self.engine.__name__, driver)
        self.origin = parse_origin(url)
        self.timeout = Timeout.of(timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a non-negative int, got {retries!r}")
        self.retries = retries
        if (isinstance(stale_check_after, bool) or not isinstance(stale_check_after, (int, float))
                or stale_check_after < 0):
            raise ValueError(f"stale_check_after must be seconds >= 0, got {stale_check_after!r}")
        if stale_check_after:
            # Every exchange now checks the connection before it writes (a connection must
            # never carry a request while unread bytes of its peer are pending): there is no
            # check left to skip.
            warnings.warn("stale_check_after is deprecated and has no effect: every request "
                          "checks its connection before writing", DeprecationWarning,
                          stacklevel=caller_stacklevel())
        self.limits = DEFAULT_LIMITS if limits is None else limits
        if not isinstance(self.limits, Limits):
            raise TypeError("limits must be a fastpool.Limits")
        self.builder = RequestBuilder(self.origin, self.engine, headers)
        if keep_warm is not None and not isinstance(keep_warm, KeepWarm):
            raise TypeError(f"keep_warm must be a fastpool.KeepWarm, got {keep_warm!r}")
        self.keep_warm = keep_warm
        #: The keep-warm request, built (and validated) once.
        self.ping = (self.builder.prepare(keep_warm.method, keep_warm.path)
                     if keep_warm is not None else None)
        self.tcp_keepalive = _seconds("tcp_keepalive", tcp_keepalive, minimum=1.0)
        lifetime = _seconds("max_lifetime", max_lifetime, minimum=0.0)
        if max_requests is not None and (isinstance(max_requests, bool) or not isinstance(
                max_requests, int) or max_requests < 1):
            raise ValueError(f"max_requests must be a positive int or None, got {max_requests!r}")
        self._sizes = (connections, max_connections, reserved)
        self._keep_warm_ns = keep_warm.every_ns if keep_warm else 0
        self._lifetime_ns = int(lifetime * 1e9) if lifetime else 0
        self._max_requests = max_requests or 0

        self.tls = (tls_context(self.engine, verify, cert, tls_min, tls_max)
                    if self.origin.tls else None)
        #: Spread: connections go to every address (scored by round trip); else the first
        #: that accepts, the others as fallbacks.
        self.spread = addresses is not None
        self.addrs = (resolve(self.origin) if addresses is None
                      else resolve_addresses(self.origin, addresses))
        if choose is None:
            choose = "fastest" if self.spread and len(self.addrs) > 1 else "hottest"
        if choose not in CHOICES:
            raise ValueError(f"choose must be one of {CHOICES}, got {choose!r}")
        self.fastest = choose == "fastest"

    def new_policy(self, tend: bool) -> PoolPolicy:
        """A policy in its initial state (at construction, and in a child after fork()).
        tend: the driver wants new TLS connections checked once after their handshake (see
        fastpool._policy.maintenance)."""
        connections, max_connections, reserved = self._sizes
        tend_ns = _TEND_NS if tend and self.origin.tls else 0
        return PoolPolicy(connections, max_connections, self.engine.Histogram(), reserved,
                          keep_warm_ns=self._keep_warm_ns, lifetime_ns=self._lifetime_ns,
                          max_requests=self._max_requests, tend_ns=tend_ns,
                          fastest=self.fastest,
                          addresses=len(self.addrs) if self.spread else 1)

    def open(self, blocking: bool, deadline_ns: int = 0, address: int = 0) -> Any:
        """A new open connection (blocking: the GIL is released while it connects), to the
        address of index `address` (or the next that accepts)."""
        conn = open_connection(self.engine, self.addrs, self.origin, self.tls, self.limits,
                               blocking, self.timeout.connect_ns, deadline_ns,
                               address if self.spread else 0)
        if blocking and self.busy_poll_ns:
            # only the C engine's connections get here (_busy_poll_ns refuses the others)
            cast("_core.Connection", conn).busy_poll_ns = self.busy_poll_ns
        if self.tcp_keepalive:
            try:
                set_tcp_keepalive(conn.fileno(), self.tcp_keepalive)
            except BaseException:
                conn.close()
                raise
        return conn


#: When a new TLS connection nobody used yet is checked for its session tickets: they come
#: a round trip after the handshake (200 ms covers the round trips to an exchange's gateway
#: from anywhere a trading strategy runs).
_TEND_NS = 200_000_000


def _seconds(name: str, value: Optional[float], minimum: float) -> Optional[float]:
    if value is None:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or not math.isfinite(value) or value <= 0 or value < minimum):
        raise ValueError(f"{name} must be seconds > 0{f' and >= {minimum:g}' if minimum else ''} "
                         f"or None, got {value!r}")
    return float(value)


def _busy_poll_ns(value: Optional[float], engine: str, driver: str) -> int:
    """busy_poll= in nanoseconds, refused where it could not act: a trader who dedicates a
    core to it must not believe it spins when it does not. Only the sync Pool on the C engine
    waits in a blocking read it can replace by a spin with the GIL released; the pure engine
    would spin holding the GIL, and AsyncPool waits in the event loop, whose other tasks a
    spin would stall."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"busy_poll must be seconds (a number) or None, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"busy_poll must be finite seconds >= 0 or None, got {value!r}")
    ns = int(value * 1e9)
    if ns == 0:
        return 0
    if driver != "Pool":
        raise ValueError(f"busy_poll is for the sync Pool only: {driver} waits in the event "
                         "loop, where a spin would stall every other task")
    if not engine.endswith("._core"):
        raise ValueError("busy_poll needs the C engine: this pool runs on the pure-Python "
                         "engine, which would spin holding the GIL")
    return ns
