"""What Pool.pipeline and AsyncPool.pipeline share: the items checked and built before anything
is sent, a burst assembled for one attempt, and the answers and failures of an attempt turned
into per-request results. The waiting (a connection, the rate limits, the socket) is each
driver's; the decisions are fastpool._policy.pipelining's.

``pool.pipeline(items, *, headers=None, timeout=..., retries=None, priority=False, weight=1,
on_limit=None, signed=False)`` (``await`` it on an AsyncPool):

- ``items``: ``(method, url)`` or ``(method, url, params)`` tuples, method GET or HEAD (any
  case), url and params as for ``pool.get()``. Anything else — another method, a malformed
  item, a URL or params the verbs would refuse — raises InvalidRequestError (or InvalidURL;
  both NotSent) before any byte of any item is written.
- It returns a list with one entry per item, in order: its Response, or the exception that
  ended it (always a NotSentError or MaybeSentError subclass; never raised). A response with
  status 429/418 is a RateLimitedError there, as the verbs raise it.
- The items go out on ONE connection in ONE write, and the responses are read in order
  (HTTP/1.1 pipelining, RFC 9112 §9.3.2). Any framing doubt — a response that closes the
  connection (``Connection: close``, HTTP/1.0), a malformed response, the server closing or
  resetting, a timeout — ends the pipeline there: the answered items keep their Responses,
  the connection is discarded, the item at the failure gets the failure, and each later item
  a PipelineAborted (MaybeSent: its bytes were written, the server may have processed it —
  or it may have answered none) or a PipelineNotSent (never written).
- Unanswered items are sent again, on another connection, in a smaller pipeline, exactly as
  far as a single request would be (fastpool._policy.attempts): NotSent on a connection that
  had been idle always; MaybeSent only within ``retries`` (default: the pool's) — GET and
  HEAD are idempotent.
- ``timeout``: as the verbs'; its total is one deadline for the whole call, retries included;
  read is the longest silence while the responses come.
- ``headers``: added to every item. ``priority=True``: may use the reserved connections and
  goes first in the rate limiter's and the pool's queues.
- ``weight``: what each item costs against ``rate_limits`` (an int for every item, or one per
  item). Each item is admitted by the pool's exchange gate in order, as a request of its own:
  the cooldown after a 429/418 refuses it, a full budget makes it wait (``on_limit="wait"``,
  bounded by the deadline) or refuses it (RateLimitedError, NotSent). The first refusal
  refuses the items after it too (a burst is not reordered); the admitted ones are sent. An
  item that certainly never left gets its weight back.
- ``signed=True``: every item is signed by the pool's ``auth=`` signer (again, with a fresh
  timestamp, for an attempt that sends it again).
- stats(): each item counts as a request (answered: ``requests`` and the latency histograms,
  from the burst's start to its own response; failed: ``errors``; sent again: ``retries``).
"""

from __future__ import annotations

from collections.abc import Sequence as _SequenceABC
from typing import Any, List, Optional, Sequence, Tuple, Union

from .._model.errors import FastpoolError, InvalidRequestError
from .._model.request import Prepared
from .._model.response import RawExchange, Response, make_response, request_info
from .._model.timeout import Timeout
from .._model.url import ParamsTypes
from .._policy.pipelining import PIPELINE_METHODS, Burst, unanswered

#: An item of pool.pipeline(): (method, url) or (method, url, params).
PipelineItem = Union[Tuple[str, str], Tuple[str, str, ParamsTypes]]
#: What pool.pipeline() returns: per item, its Response or its failure.
PipelineResult = List[Union[Response, FastpoolError]]


def check_items(items: Sequence[PipelineItem]) -> List[Tuple[str, str, ParamsTypes]]:
    """(METHOD, url, params) per item; InvalidRequestError naming the item if one is not a
    pipelinable request."""
    if isinstance(items, (str, bytes)) or not isinstance(items, _SequenceABC):
        raise InvalidRequestError("pipeline items must be a list of (method, url) or "
                                  "(method, url, params) tuples", code="pipeline_items")
    out = []
    for n, item in enumerate(items):
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise InvalidRequestError(f"pipeline item {n} must be a (method, url) or (method, "
                                      f"url, params) tuple, got {item!r}",
                                      code="pipeline_items")
        method = item[0]
        if not isinstance(method, str) or method.upper() not in PIPELINE_METHODS:
            raise InvalidRequestError(
                f"pipeline item {n}: only GET and HEAD may be pipelined (idempotent, and their "
                f"responses always framed), got {method!r}: nothing was sent",
                code="pipeline_method")
        out.append((method.upper(), item[1], item[2] if len(item) == 3 else None))
    return out


def weights_for(weight: Union[int, Sequence[int]], count: int) -> List[int]:
    """One weight per item: an int for all, or a sequence of count ints."""
    if isinstance(weight, int) and not isinstance(weight, bool):
        return [weight] * count
    if isinstance(weight, _SequenceABC) and not isinstance(weight, (str, bytes)):
        weights = list(weight)
        if len(weights) == count and all(isinstance(w, int) and not isinstance(w, bool)
                                         for w in weights):
            return weights
    raise InvalidRequestError(f"weight must be an int or one int per item ({count}), got "
                              f"{weight!r}", code="weight_invalid")


def assemble(prepared: Sequence[Prepared], indices: Sequence[int]
             ) -> Tuple[bytes, List[bool], List[int]]:
    """One attempt's burst: the requests `indices` concatenated (one write), which are HEAD,
    and where each starts in the burst."""
    offsets = []
    at = 0
    for i in indices:
        offsets.append(at)
        at += len(prepared[i].data)
    return (b"".join([prepared[i].data for i in indices]), [prepared[i].head for i in indices],
            offsets)


def answered(pool: Any, conn: Any, prepared: Sequence[Prepared], indices: Sequence[int],
             raws: Sequence[RawExchange], start: int) -> List[Response]:
    """The Responses of an attempt's answered requests, counted as the hot path counts one:
    the pool's and the endpoint's latency, the connection's round trip and uses."""
    latency = pool._policy.stats.latency
    ctx = pool._response_ctx
    out = []
    for i, raw in zip(indices, raws):
        p = prepared[i]
        took = raw.t_complete - raw.t_start
        latency.record(took)
        p.hist.record(took)
        out.append(make_response(raw, request_info(ctx, p.method, p.target, start)))
    if raws:
        # The first response's round trip is the connection's (the later ones queue behind it).
        rtt = raws[0].t_first_byte - raws[0].t_written
        conn.rtt_ns = rtt if not conn.rtt_ns else conn.rtt_ns + (rtt - conn.rtt_ns) // 8
        conn.uses += len(raws)
    return out


class PipelineCall:
    """One pool.pipeline() call, as both drivers carry it out: its items checked and built,
    its deadline, the policy's Burst (what is still to send, the results), each item's
    weight and rate-limit grant; and the two steps of every attempt that do not wait
    (next_burst, outcome). Made by PoolBase._pipeline_begin."""

    __slots__ = ("start", "specs", "weights", "tmo", "deadline", "prepared", "burst",
                 "granted", "signed", "headers", "offsets", "_first")

    def __init__(self, start: int, specs: List[Tuple[str, str, ParamsTypes]],
                 weights: List[int], tmo: Timeout, prepared: List[Prepared], retries: int,
                 signed: bool, headers: Any) -> None:
        self.start = start
        self.specs = specs
        self.weights = weights
        self.tmo = tmo
        self.deadline = start + tmo.total_ns if tmo.total_ns else 0
        self.prepared = prepared
        self.burst = Burst([p.method for p in prepared], retries, self.deadline)
        self.granted = [0] * len(specs)   # ns: when the gate admitted each item (0: not)
        self.signed = signed
        self.headers = headers
        self.offsets: List[int] = []      # where each request of this attempt starts
        self._first = True

    def next_burst(self, pool: Any) -> Tuple[List[int], bytes, List[bool]]:
        """This attempt's items (those still to send), its bytes (signed items signed again,
        with a fresh timestamp, after the first attempt) and which are HEAD."""
        indices = list(self.burst.todo)
        if self.signed and not self._first:
            pool._pipeline_prepare(self.specs, self.headers, True, indices, self.prepared)
        self._first = False
        data, heads, self.offsets = assemble(self.prepared, indices)
        return indices, data, heads

    def outcome(self, pool: Any, conn: Any, indices: Sequence[int],
                raws: Sequence[RawExchange], error: Optional[FastpoolError]
                ) -> Tuple[List[Response], List[FastpoolError]]:
        """The attempt's Responses (counted as the hot path counts one) and, when it ended
        early, the failure of every item it did not answer (fastpool._policy.pipelining)."""
        responses = answered(pool, conn, self.prepared, indices, raws, self.start)
        if error is None:
            return responses, []
        return responses, unanswered(error, self.offsets, len(raws), sent=conn.sent,
                                     written=conn.written, tls=bool(conn.tls_version))
