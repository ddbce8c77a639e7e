"""At most once: under a storm of faults, no POST is ever processed twice by the server.

Each request carries a unique id; a scripted server (support.faults.Storm) draws a fault for
every request turn (close while idle, close with the request unread, read then close, read
then RST, part of an answer then close, a stall past the client's read timeout, or a normal
answer) and counts how often its handler ran for each id. 8 threads (Pool) or 8 tasks
(AsyncPool on asyncio and uvloop) share 4 connections, on both engines, plain and TLS.

Every request must end in exactly one of: a response (its own: the id echoed), a
NotSentError, a MaybeSentError. Then, from the server's count:

    success    processed exactly once
    NotSent    never reached the handler (not a byte of it on any connection)
    MaybeSent  processed 0 or 1 times
    any POST   processed at most once, also with retries=2 allowed pool-wide

In the suite the count is bounded (and each run by time, so CI stays fast);
``make at-most-once`` runs FASTPOOL_STORM_COUNT=20000 per mode and prints the counts.
FASTPOOL_STORM_SEED replays a run (each failure message names its seed).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import threading
import time
from collections import Counter

import pytest
from pool_helpers import run_threads, tls_kwargs
from support.faults import Storm
from support.pools import AsyncPoolFacade

import fastpool

#: Requests per mode; the suite's default keeps this file well under a minute on 2 cores.
COUNT = int(os.environ.get("FASTPOOL_STORM_COUNT") or 0)
#: Each run stops sending new requests after this many seconds (0: no bound), once at least
#: MIN_DONE requests have ended (fewer would mean little; a loaded machine takes longer).
SECONDS = float(os.environ.get("FASTPOOL_STORM_SECONDS") or (0 if COUNT else 2.0))
MIN_DONE = 100
SEED = os.environ.get("FASTPOOL_STORM_SEED")
WORKERS = 8
CONNECTIONS = 4
ID_HEADER = "X-Request-Id"
#: Past this a stalled request is a read timeout (MaybeSent). A normal answer that is slower
#: under load ends the same way: still accounted for (processed once, MaybeSent).
READ_TIMEOUT = 0.25
_ID_ON_WIRE = re.compile(rb"(?i)x-request-id: *([0-9a-z-]+)")


def _seed() -> int:
    return int(SEED) if SEED else random.SystemRandom().randrange(1 << 32)


class Tally:
    """What each request ended in, by id (filled by the workers)."""

    def __init__(self, label: str, seed: int) -> None:
        self.label = label
        self.seed = seed
        self.lock = threading.Lock()
        self.outcome: dict[str, str] = {}      # id -> "ok" | "not_sent" | "maybe_sent"
        self.method: dict[str, str] = {}
        self.problems: list[str] = []          # another exception, a wrong answer, twice
        self.errors: Counter[str] = Counter()  # exception class name -> count
        self.slowest_ns = 0                    # the longest request, for the counts line
        self.slowest = ""

    def more(self, deadline: float) -> bool:
        """Whether to start another request: before the deadline, or until MIN_DONE ended."""
        return time.monotonic() < deadline or len(self.outcome) < MIN_DONE

    def took(self, t0: int, rid: str) -> None:
        ns = time.perf_counter_ns() - t0
        if ns > self.slowest_ns:
            self.slowest_ns, self.slowest = ns, rid

    def end(self, rid: str, method: str, kind: str, problem: str = "") -> None:
        with self.lock:
            if rid in self.outcome:
                self.problems.append(f"{rid} ended twice: {self.outcome[rid]} then {kind}")
            self.outcome[rid] = kind
            self.method[rid] = method
            if problem:
                self.problems.append(f"{rid} ({method}): {problem}")

    def failed(self, rid: str, method: str, exc: Exception) -> None:
        """Files a request that raised ``exc``."""
        if isinstance(exc, fastpool.NotSentError):
            kind = "not_sent"
        elif isinstance(exc, fastpool.MaybeSentError):
            kind = "maybe_sent"
        else:
            self.end(rid, method, "other", f"neither NotSent nor MaybeSent: {exc!r}")
            return
        with self.lock:
            self.errors[type(exc).__name__] += 1
        self.end(rid, method, kind)

    def check_answer(self, rid: str, method: str, r) -> None:
        if r.status_code != 200 or r.headers.get(ID_HEADER) != rid or r.content != rid.encode():
            self.end(rid, method, "ok", f"not its own answer: {r.status_code} "
                                        f"{r.headers.get(ID_HEADER)!r} {r.content[:40]!r}")
        else:
            self.end(rid, method, "ok")


def _request_ids(label: str, count: int) -> list[str]:
    # Unique across runs of one session too (the id is the only key the server counts by).
    tag = f"{os.getpid():x}-{label}-{random.getrandbits(32):08x}"
    return [f"{tag}-{i}" for i in range(count)]


def _method_for(i: int, put_share: float) -> str:
    """PUT for a ``put_share`` of the requests, spread evenly (a run cut short by its time
    bound still has both methods)."""
    return "PUT" if int((i + 1) * put_share) > int(i * put_share) else "POST"


def _storm(make_pool, fault_server, certs, transport: str, count: int, *,
           label: str, retries: int = 0, put_share: float = 0.0) -> tuple[Tally, Storm, dict, bytes]:
    seed = _seed()
    storm = Storm(seed)
    tls = certs.server if transport == "tls" else None
    # Nearly every fault ends a connection: allow one per request (and the initial ones).
    server = fault_server(storm, tls=tls, max_connections=2 * count + 64, max_lifetime=120.0)
    pool = make_pool(server.url(), connections=CONNECTIONS, retries=retries,
                     timeout=fastpool.Timeout(5.0, read=READ_TIMEOUT, pool=5.0),
                     **tls_kwargs(certs, tls is not None))
    tally = Tally(label, seed)
    ids = _request_ids(label.replace("/", "-"), count)
    deadline = time.monotonic() + SECONDS if SECONDS else float("inf")

    def job(i: int):
        rid = ids[i]
        method = _method_for(i, put_share)
        body = b'{"clientOrderId":"' + rid.encode() + b'"}'
        return rid, method, body

    if isinstance(pool, AsyncPoolFacade):
        apool = pool.pool

        async def run_tasks() -> None:
            next_i = iter(range(count))

            async def worker() -> None:
                for i in next_i:
                    if not tally.more(deadline):
                        return
                    rid, method, body = job(i)
                    t0 = time.perf_counter_ns()
                    try:
                        r = await apool.request(method, "/api/v3/order", content=body,
                                                headers={ID_HEADER: rid})
                    except Exception as exc:  # noqa: BLE001 - filed: anything else fails
                        tally.failed(rid, method, exc)
                    else:
                        tally.check_answer(rid, method, r)
                    tally.took(t0, rid)

            await asyncio.gather(*(worker() for _ in range(WORKERS)))

        pool._lt.run(run_tasks(), timeout=SECONDS + 300 if SECONDS else 3600)
    else:
        counter = iter(range(count))
        counter_lock = threading.Lock()

        def worker(_: int) -> None:
            while tally.more(deadline):
                with counter_lock:
                    i = next(counter, None)
                if i is None:
                    return
                rid, method, body = job(i)
                t0 = time.perf_counter_ns()
                try:
                    r = pool.request(method, "/api/v3/order", content=body,
                                     headers={ID_HEADER: rid})
                except Exception as exc:  # noqa: BLE001 - filed: anything else fails
                    tally.failed(rid, method, exc)
                else:
                    tally.check_answer(rid, method, r)
                tally.took(t0, rid)

        run_threads(worker, WORKERS, timeout=SECONDS + 300 if SECONDS else 3600)
    stats = pool.stats()
    pool.close()
    server.close()  # every handler has run: the counts below are final
    return tally, storm, stats, server.received


def _verify(tally: Tally, storm: Storm, stats: dict, received: bytes) -> str:
    """Checks the at-most-once properties; returns the counts line (printed by the test)."""
    processed = storm.processed
    on_wire = set(m.decode() for m in _ID_ON_WIRE.findall(received))
    kinds = Counter(tally.outcome.values())
    maybe = [rid for rid, k in tally.outcome.items() if k == "maybe_sent"]
    maybe_processed = sum(1 for rid in maybe if processed[rid])
    line = (f"at-most-once {tally.label} seed={tally.seed}: requests={len(tally.outcome)} "
            f"ok={kinds['ok']} not_sent={kinds['not_sent']} maybe_sent={kinds['maybe_sent']} "
            f"(processed {maybe_processed}, not processed {len(maybe) - maybe_processed}) "
            f"processed={sum(processed.values())} retries={stats['retries']} "
            f"slowest={tally.slowest_ns / 1e9:.2f}s"
            f"({tally.method.get(tally.slowest)} {tally.outcome.get(tally.slowest)}, processed "
            f"{processed[tally.slowest]}) "
            f"faults={dict(sorted(storm.faults.items()))} errors={dict(tally.errors)}")
    replay = f"\n{line}\nreplay: FASTPOOL_STORM_SEED={tally.seed}"
    assert not tally.problems, "\n".join(tally.problems[:20]) + replay
    assert "" not in processed, "the handler saw a request without an id" + replay
    unknown = set(processed) - set(tally.outcome)
    assert not unknown, f"the handler saw ids nobody sent: {sorted(unknown)[:5]}" + replay
    twice = {rid: n for rid, n in processed.items()
             if n > 1 and tally.method[rid] == "POST"}
    assert not twice, f"POSTs processed more than once: {dict(list(twice.items())[:10])}" + replay
    for rid, kind in tally.outcome.items():
        n = processed[rid]
        if tally.method[rid] != "POST":
            continue  # an idempotent method may be sent again (test_retries_... checks it)
        if kind == "ok":
            assert n == 1, f"{rid}: a success processed {n} times" + replay
        elif kind == "not_sent":
            assert n == 0 and rid not in on_wire, (
                f"{rid}: NotSentError, but the server received it ({n} handler runs)" + replay)
        else:
            assert n in (0, 1), f"{rid}: MaybeSentError processed {n} times" + replay
    return line


def _mode_label(make_pool_engine: str, request, transport: str) -> str:
    mode = request.node.callspec.params.get("pool_mode", "sync")
    return f"{make_pool_engine}/{mode}/{transport}"


#: Requests per mode in the suite (FASTPOOL_STORM_COUNT overrides both).
SUITE_COUNT = {"plain": 2000, "tls": 600}


@pytest.mark.parametrize("transport", ["plain", "tls"])
def test_no_post_is_processed_twice(make_pool, fault_server, certs, engine_name, request,
                                    transport):
    count = COUNT or SUITE_COUNT[transport]
    label = _mode_label(engine_name, request, transport)
    tally, storm, stats, received = _storm(make_pool, fault_server, certs, transport, count,
                                           label=label)
    line = _verify(tally, storm, stats, received)
    print(line)
    # The storm must have reached every outcome, or the run proved less than it says.
    kinds = Counter(tally.outcome.values())
    assert kinds["ok"] and kinds["maybe_sent"], line


def test_retries_resend_puts_but_never_a_post(make_pool, fault_server, certs, engine_name,
                                              request):
    count = COUNT or 800
    label = _mode_label(engine_name, request, "plain") + "/retries=2"
    tally, storm, stats, received = _storm(make_pool, fault_server, certs, "plain", count,
                                           label=label, retries=2, put_share=0.5)
    line = _verify(tally, storm, stats, received)
    methods = Counter(tally.method.values())
    assert methods["POST"] >= MIN_DONE // 4 and methods["PUT"] >= MIN_DONE // 4, methods
    resent = [rid for rid, m in tally.method.items() if m == "PUT" and storm.processed[rid] > 1]
    line += f" puts_processed_more_than_once={len(resent)} of {methods['PUT']}"
    print(line)
    assert stats["retries"] > 0 and resent, f"no PUT was sent again: {line}"
    over = [rid for rid in resent if storm.processed[rid] > 3]
    assert not over, f"PUTs sent more than 1 + retries times: {over[:5]}\n{line}"
