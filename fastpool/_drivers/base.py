"""What Pool and AsyncPool share: one constructor path, the verbs written once, and the views
(url, engine, stats, repr).

The verbs follow urllib3's RequestMethods: each spells its parameters once and hands them to
the driver's ``_send``, which is a plain method in Pool (returns a Response) and a coroutine
function in AsyncPool (so ``pool.get(...)`` returns an awaitable there). The generic parameter
R is what a verb returns.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import time
import weakref
from collections.abc import Mapping
from time import monotonic_ns
from typing import Any, Generic, Iterable, List, Literal, Optional, Sequence, Tuple, TypeVar, Union

from .._model.auth import Signer
from .._model.errors import FastpoolError, InvalidRequestError, NotSentError, RateLimitedError
from .._model.headers import HeaderTypes
from .._model.hedge import Hedge
from .._model.keepwarm import KeepWarm
from .._model.limits import Limits
from .._model.ratelimit import RateLimit
from .._model.redact import redact_names, redact_url
from .._model.request import Prepared
from .._model.response import RawExchange, Request, Response, ResponseContext
from .._model.timeout import _UNSET, Timeout, TimeoutTypes
from .._model.url import ParamsTypes
from .._policy.clock import ClockEstimate, ClockEstimator, server_time_field
from .._policy.cooldown import Cooldown
from .._policy.exchange import UNCALIBRATED_ERROR_NS, ExchangeGate
from .._policy.hedging import Budget, check_pool_hedge
from .._policy.ledger import SharedLedger
from .._policy.pipelining import Burst
from .._policy.ratelimit import RateLimiter
from .._policy.stats import PoolStats
from .._policy.stats import endpoint as endpoint_stats
from .config import PoolConfig
from .connect import CertTypes, VerifyTypes
from .pipeline import PipelineCall, PipelineItem, check_items, weights_for

R = TypeVar("R")
#: A request's ``hedge=``: its own Hedge, False (not hedged), None (the pool's).
HedgeTypes = Union[Hedge, Literal[False], None]
log = logging.getLogger("fastpool")

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
                 max_requests: Optional[int] = None,
                 rate_limits: Optional[Sequence[RateLimit]] = None,
                 rate_ledger: Optional[SharedLedger] = None, on_limit: str = "wait",
                 auth: Optional[Signer] = None,
                 cooldowns: Union[None, bool, Mapping[int, float]] = None,
                 addresses: Union[None, str, Sequence[str]] = None,
                 choose: Optional[str] = None,
                 redact: Optional[Iterable[str]] = None,
                 busy_poll: Optional[float] = None,
                 hedge: Optional[Hedge] = None) -> None:
        self._cfg = cfg = PoolConfig(
            url, connections=connections, max_connections=max_connections, verify=verify,
            cert=cert, headers=headers, timeout=timeout, retries=retries, limits=limits,
            tls_min=tls_min, tls_max=tls_max, stale_check_after=stale_check_after,
            engine=engine, reserved=reserved, keep_warm=keep_warm, tcp_keepalive=tcp_keepalive,
            max_lifetime=max_lifetime, max_requests=max_requests, addresses=addresses,
            choose=choose, busy_poll=busy_poll, driver=self._kind)
        self._policy = cfg.new_policy(self._tends)
        self._prepare = cfg.builder.prepare
        self._origin = cfg.origin
        self._response_ctx = ResponseContext(cfg.engine.decode_headers, cfg.engine.header_values,
                                             cfg.origin, redact_names(redact))
        self._timeout = cfg.timeout
        self._retries = cfg.retries
        self._auth = auth
        if auth is not None and not callable(getattr(auth, "sign", None)):
            raise TypeError("auth must be a signer: an object with sign(method, path, query, "
                            "body, timestamp_ms) (fastpool.HmacSigner, fastpool.Ed25519Signer)")
        wall_offset = time.time_ns() - monotonic_ns()
        limiter = (RateLimiter(rate_limits, ledger=rate_ledger, offset_ns=wall_offset,
                               error_ns=UNCALIBRATED_ERROR_NS) if rate_limits else None)
        if rate_ledger is not None and limiter is None:
            raise ValueError("rate_ledger needs rate_limits")
        if cooldowns is False:
            cooldown = None
        elif cooldowns is None or cooldowns is True:
            cooldown = Cooldown()
        else:
            cooldown = Cooldown(dict(cooldowns))
        self._gate = ExchangeGate(limiter, cooldown,
                                  ClockEstimator(fallback_offset_ns=wall_offset), on_limit)
        #: The pool's Hedge (safe methods only) and the budget every hedged request draws on.
        self._hedge = check_pool_hedge(hedge)
        self._hedge_budget = Budget()
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

    def stats(self, by_endpoint: bool = False) -> PoolStats:
        """Counters and latency percentiles (ns) since the pool was created (or the last
        reset_stats()), the rate limits' counts, the cooldown in force, the server clock;
        with by_endpoint=True also the latency of each endpoint ("METHOD path" as called)."""
        with self._guard():
            return self._stats(by_endpoint)

    def _stats(self, by_endpoint: bool) -> PoolStats:
        out: Any = self._policy.snapshot()
        out.update(self._gate.snapshot(monotonic_ns()))
        if by_endpoint:
            out["endpoints"] = {name: endpoint_stats(h) for name, h
                                in sorted(self._cfg.builder.endpoints.items())}
        return out  # type: ignore[no-any-return]

    def reset_stats(self) -> None:
        """Counters and latency histograms (the pool's and every endpoint's) back to zero;
        connections and rate-limit counts are untouched."""
        with self._guard():
            self._policy.stats.reset()
            self._cfg.builder.reset_endpoints()
            self._gate.rate_limited = 0

    def latency_histograms(self) -> dict[str, Any]:
        """A copy of each endpoint's latency histogram, "METHOD path" -> Histogram (merge
        several pools' with h.merge(other), read with h.quantile(q), h.count, ...)."""
        with self._guard():
            out = {}
            for name, h in self._cfg.builder.endpoints.items():
                copy = self._cfg.engine.Histogram()
                copy.merge(h)
                out[name] = copy
            return out

    def _guard(self) -> Any:
        """What stats() holds while it reads (the sync driver's lock)."""
        return contextlib.nullcontext()

    def __repr__(self) -> str:
        s = self._policy.slots
        return (f"<{self._kind} {self.url} engine={self.engine} open={s.total_open} "
                f"idle={self._policy.idle_count()}{' closed' if s.closed else ''}>")

    # ---- the verbs ---------------------------------------------------------------------
    #
    # Each spells its parameters once and hands them to the driver's _send. Besides httpx's:
    #   data        a form body (dict, pairs, str, bytes): application/x-www-form-urlencoded
    #   priority    may use the reserved connections; served first when requests wait
    #   weight      what it costs against rate_limits (the exchange's weight for the endpoint)
    #   order       True (or a count, for a batch): it counts in the order limits
    #   signed      signed by the pool's auth= signer, with the server clock's timestamp
    #   on_limit    "wait" or "raise" when a rate limit has no room (default: the pool's)
    #   hedge       a Hedge for this request, False: none, None: the pool's (safe methods)

    def _send(self, method: str, url: str, params: ParamsTypes, headers: HeaderTypes,
              content: Any, json: Any, data: Any, timeout: Any, retries: Optional[int],
              priority: bool, weight: int, order: int, signed: bool,
              on_limit: Optional[str], hedge: HedgeTypes) -> R:
        raise NotImplementedError

    def request(self, method: str, url: str, *, params: ParamsTypes = None,
                headers: HeaderTypes = None, content: Any = None, json: Any = None,
                data: Any = None, timeout: Any = _UNSET, retries: Optional[int] = None,
                priority: bool = False, weight: int = 1, order: int = False,
                signed: bool = False, on_limit: Optional[str] = None,
                hedge: HedgeTypes = None) -> R:
        """Sends one request and returns its response; raises NotSentError or MaybeSentError.

        ``url`` is a path (joined to the pool's base path) or an absolute URL on the pool's
        origin. ``params`` (dict, pairs or an encoded str) becomes the query; ``content``
        (bytes or str), ``json`` or ``data`` (a form) the body; ``headers`` are added to the
        pool's. ``timeout`` overrides the pool's (seconds or a Timeout). ``retries``
        (default: the pool's) is how many times a MaybeSent failure of an idempotent method
        may be sent again; a request that certainly did not leave (a connection found
        closed while idle) is always moved to another connection. ``priority=True``
        (orders, cancels) may use the reserved connections and goes before every ordinary
        request waiting. ``weight``, ``order`` and ``on_limit`` are for the pool's
        ``rate_limits``; ``signed=True`` signs it with the pool's ``auth``. A 429 or 418
        answer raises RateLimitedError and starts a cooldown. ``hedge``: a fastpool.Hedge
        for this request, False for none, None (default) for the pool's — which hedges
        GET, HEAD and OPTIONS only; a request's own Hedge on any other method needs
        ``deduplicated=True`` (the exchange refuses a duplicate: a cancel by id, an order
        with a client order id), else InvalidRequestError."""
        return self._send(method, url, params, headers, content, json, data, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    def get(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
            timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False,
            weight: int = 1, order: int = False, signed: bool = False,
            on_limit: Optional[str] = None,
            hedge: HedgeTypes = None) -> R:
        """GET url (see request())."""
        return self._send("GET", url, params, headers, None, None, None, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    def head(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
             timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False,
             weight: int = 1, order: int = False, signed: bool = False,
             on_limit: Optional[str] = None,
             hedge: HedgeTypes = None) -> R:
        """HEAD url (see request())."""
        return self._send("HEAD", url, params, headers, None, None, None, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    def options(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
                timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False,
                weight: int = 1, order: int = False, signed: bool = False,
                on_limit: Optional[str] = None,
                hedge: HedgeTypes = None) -> R:
        """OPTIONS url (see request())."""
        return self._send("OPTIONS", url, params, headers, None, None, None, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    def delete(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
               timeout: Any = _UNSET, retries: Optional[int] = None, priority: bool = False,
               weight: int = 1, order: int = False, signed: bool = False,
               on_limit: Optional[str] = None,
               hedge: HedgeTypes = None) -> R:
        """DELETE url (see request())."""
        return self._send("DELETE", url, params, headers, None, None, None, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    def post(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
             content: Any = None, json: Any = None, data: Any = None, timeout: Any = _UNSET,
             retries: Optional[int] = None, priority: bool = False, weight: int = 1,
             order: int = False, signed: bool = False, on_limit: Optional[str] = None,
             hedge: HedgeTypes = None) -> R:
        """POST url (see request()); never re-sent by the pool once it may have left."""
        return self._send("POST", url, params, headers, content, json, data, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    def put(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
            content: Any = None, json: Any = None, data: Any = None, timeout: Any = _UNSET,
            retries: Optional[int] = None, priority: bool = False, weight: int = 1,
            order: int = False, signed: bool = False, on_limit: Optional[str] = None,
            hedge: HedgeTypes = None) -> R:
        """PUT url (see request())."""
        return self._send("PUT", url, params, headers, content, json, data, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    def patch(self, url: str, *, params: ParamsTypes = None, headers: HeaderTypes = None,
              content: Any = None, json: Any = None, data: Any = None, timeout: Any = _UNSET,
              retries: Optional[int] = None, priority: bool = False, weight: int = 1,
              order: int = False, signed: bool = False, on_limit: Optional[str] = None,
              hedge: HedgeTypes = None) -> R:
        """PATCH url (see request()); never re-sent by the pool once it may have left."""
        return self._send("PATCH", url, params, headers, content, json, data, timeout, retries,
                          priority, weight, order, signed, on_limit, hedge)

    # ---- pipelining (both drivers; see fastpool._drivers.pipeline) ----------------------

    def _pipeline_begin(self, items: Sequence[PipelineItem], headers: HeaderTypes,
                        timeout: Any, retries: Optional[int], weight: Union[int, Sequence[int]],
                        signed: bool) -> Optional[PipelineCall]:
        """A pipeline call set up before anything waits or is sent: its items checked and
        built (InvalidRequestError / InvalidURL otherwise), or None for no items."""
        start = monotonic_ns()
        specs = check_items(items)
        if not specs:
            return None
        weights = weights_for(weight, len(specs))
        tmo = self._timeout if timeout is _UNSET else Timeout.of(timeout)
        prepared = self._pipeline_prepare(specs, headers, signed)
        return PipelineCall(start, specs, weights, tmo, prepared,
                            self._retries if retries is None else retries, signed, headers)

    def _pipeline_prepare(self, specs: Sequence[Tuple[str, str, ParamsTypes]],
                          headers: HeaderTypes, signed: bool,
                          indices: Optional[Sequence[int]] = None,
                          prepared: Optional[List[Prepared]] = None) -> List[Prepared]:
        """Every item built as the verbs build a request (signed with the server clock's
        timestamp when asked); InvalidRequestError / InvalidURL before anything is sent. With
        indices: those items built again into prepared (a signed retry's fresh timestamp)."""
        if prepared is None:
            return [self._prepare_exchange(m, u, p, headers, None, None, None, signed,
                                           monotonic_ns()) for m, u, p in specs]
        for i in indices or ():
            m, u, p = specs[i]
            prepared[i] = self._prepare_exchange(m, u, p, headers, None, None, None, signed,
                                                 monotonic_ns())
        return prepared

    def _pipeline_refused(self, burst: Burst, index: int, error: FastpoolError) -> None:
        """The gate refused item index: it and every item after it still to send are not
        sent (a burst is not reordered), each with its own error instance."""
        rest = [i for i in burst.todo if i >= index]
        for n, i in enumerate(rest):
            burst.refuse(i, error if n == 0 else copy.copy(error))
            if n and isinstance(error, RateLimitedError):
                self._gate.rate_limited += 1

    def _pipeline_results(self, call: PipelineCall) -> List[Any]:
        """The results, once every item is answered or given up: what the responses tell the
        gate (usage headers; a 429/418 becomes that item's RateLimitedError and starts the
        cooldown), the weight of every admitted item that certainly never left given back,
        and each failure described (error.request)."""
        gate = self._gate
        results = call.burst.results
        granted, start = call.granted, call.start
        for i, result in enumerate(results):
            method, url, params = call.specs[i]
            if isinstance(result, Response):
                if gate.limiter is not None or result.status_code in gate.statuses:
                    with self._guard():
                        error = self._rate_limited(result, granted[i] or start, 0,
                                                   monotonic_ns())
                    if error is not None:
                        results[i] = result = error
                if isinstance(result, Response):
                    continue
            if granted[i] and isinstance(result, NotSentError):
                with self._guard():
                    gate.refund(monotonic_ns(), call.weights[i], 0, granted[i])
            self._failed_request(result, method, url, params, None, None, call.prepared[i])
        return results

    # ---- what the exchange asks (both drivers) -----------------------------------------

    def _exchange_needed(self, data: Any, order: int, signed: bool, start: int) -> bool:
        """Whether a request needs the exchange path (rate limits, a cooldown in force,
        signing, a form body) rather than the plain hot path."""
        return (self._gate.limiter is not None or signed or data is not None or bool(order)
                or self._gate.held_until > start)

    def _prepare_exchange(self, method: str, url: str, params: ParamsTypes,
                          headers: HeaderTypes, content: Any, json: Any, data: Any,
                          signed: bool, now: int) -> Prepared:
        if not signed:
            return self._prepare(method, url, params, headers, content, json, data)
        signer = self._auth
        if signer is None:
            raise InvalidRequestError("signed=True needs the pool's auth= signer",
                                      code="auth_missing")
        return self._cfg.builder.prepare_signed(method, url, params, headers, content, json,
                                                data, signer, self._gate.timestamp_ms(now))

    def _rate_limited(self, response: Response, granted: int, order: int,
                      now: int) -> Optional[RateLimitedError]:
        """Under the driver's lock (sync): what the response tells the gate; the error to
        raise for a 429/418."""
        error = self._gate.observe(
            now, response.status_code, response.headers.get, lambda: response.content,
            granted, order, time.time(),
            f"{response._ctx.method} {response._ctx.target.split(b'?', 1)[0].decode('ascii')}")
        if error is not None:
            error.response = response
            log.warning("%s", error)
        return error

    def _failed_request(self, exc: BaseException, method: str, url: str, params: ParamsTypes,
                        json: Any, data: Any, prepared: Optional[Prepared]) -> None:
        """Attaches to a request's failure what the caller needs to reconcile it."""
        if not isinstance(exc, FastpoolError):
            # An interrupt or a cancellation: a connection may now be held by a reference
            # cycle through its traceback, which only the cyclic collector frees.
            self._interrupted = True
        target = exc if isinstance(exc, FastpoolError) else getattr(exc, "fastpool_error",
                                                                    None)
        if target is None or getattr(target, "request", None) is not None:
            return
        try:
            names = self._response_ctx.redact
            if prepared is not None:  # what was (or would have been) sent
                shown, sent = self._origin.url(prepared.target, names), prepared.target
            else:
                shown = redact_url(f"{self.url}{url}" if url.startswith("/") else url, names)
                sent = b""
            target.request = Request(
                method.upper() if isinstance(method, str) else str(method), shown, sent,
                client_order_id=_client_order_id(params, data, json),
                expires_ms=prepared.expires_ms if prepared is not None else None)
        except Exception:  # noqa: BLE001 - the failure itself must surface, not this
            pass

    def calibrate_sample(self, response: Response, field: str, unit: str) -> bool:
        """Feeds the server time in a response's JSON `field` to the clock."""
        value = server_time_field(response.content, field)
        if value is None:
            return False
        # From the exchange's start (before the request can have left: t.written is read
        # after the send returns, when the server may have answered already) to its first
        # byte: the server's clock was read in between.
        t = response.timings
        with self._guard():
            return self._gate.clock_sample(monotonic_ns(), t.acquired, t.first_byte, value,
                                           unit)

    def _ping_answered(self, conn: Any, raw: RawExchange) -> None:
        """A keep-warm answer (under the driver's lock): it measures the connection's round
        trip (as requests do), and its server time, when the KeepWarm names the field,
        calibrates the clock (the periodic mode of calibrate())."""
        rtt = raw.t_first_byte - raw.t_written
        conn.rtt_ns = rtt if not conn.rtt_ns else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
        conn.uses += 1
        keep = self._cfg.keep_warm
        if keep is not None and keep.clock_field and 200 <= raw.status < 300:
            value = server_time_field(raw.body, keep.clock_field)
            if value is not None:
                self._gate.clock_sample(monotonic_ns(), raw.t_start, raw.t_first_byte,
                                        value, keep.clock_unit)

    def _estimate(self, path: str, field: str) -> ClockEstimate:
        with self._guard():
            est = self._gate.clock.estimate(monotonic_ns())
        if est is None:
            raise RuntimeError(f"no answer of {path} carried a usable {field!r}: the server "
                               f"clock is not calibrated")
        return est

    def _resolve_wait(self, error: FastpoolError, margin: float,
                      wait: Optional[float]) -> float:
        """Seconds until the exchange can no longer act on the failed request."""
        if wait is not None:
            return max(float(wait), 0.0)
        request = getattr(error, "request", None)
        expires = getattr(request, "expires_ms", None)
        if expires is None:
            raise ValueError("the request was not signed with a deadline (no "
                             "error.request.expires_ms): pass wait= seconds")
        with self._guard():
            now_ms = self._gate.timestamp_ms(monotonic_ns())  # never ahead of the server's
        return float(max((expires - now_ms) / 1000.0, 0.0) + margin)


def _check_samples(samples: int) -> int:
    if isinstance(samples, bool) or not isinstance(samples, int) or not 1 <= samples <= 100:
        raise ValueError(f"samples must be an int in 1..100, got {samples!r}")
    return samples


#: Where exchanges put the caller's order id (Binance, Bybit, OKX, Coinbase, Kraken).
CLIENT_ORDER_ID_FIELDS = ("newClientOrderId", "origClientOrderId", "clientOrderId",
                          "orderLinkId", "clOrdId", "client_order_id", "cl_ord_id",
                          "clientOid", "userref")


def _client_order_id(*sources: Any) -> Optional[str]:
    for source in sources:
        items = (source.items() if isinstance(source, Mapping)
                 else source if isinstance(source, (list, tuple)) else ())
        for item in items:
            if isinstance(item, tuple) and len(item) == 2 and item[0] in CLIENT_ORDER_ID_FIELDS:
                return str(item[1])
    return None
