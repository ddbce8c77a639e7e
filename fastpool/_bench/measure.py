"""The timed loops. Run inside a client's worker process, one measurement per call.

Clock: time.perf_counter_ns (CLOCK_MONOTONIC on Linux), read right before the request starts
and right after its whole body is read; the status and length check happens outside the
timed span. The floor's loops run in C with the same clock (fp_now_ns). Every loop is bounded
by a count, and the throughput loops also by a duration.

Each function returns a dict:
    samples     array('q') of latencies, ns (in the order they were taken)
    bad         responses whose status or body length was wrong
    first_bad   (status, length) of the first wrong one, or None
and, for throughput, count and elapsed_ns; for reconnect, samples_full / samples_resumed and
resumed_full / resumed_resumed (how many handshakes the client saw resumed).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import threading
from array import array
from time import perf_counter_ns


class Checker:
    """Counts responses whose status or body length differ from the target's."""

    def __init__(self, target: dict) -> None:
        self.status = target["status"]
        self.length = target["length"]
        self.bad = 0
        self.first_bad = None

    def __call__(self, status: int, length: int) -> None:
        if status != self.status or (self.length >= 0 and length != self.length):
            self.bad += 1
            if self.first_bad is None:
                self.first_bad = (status, length)

    def result(self, **kw) -> dict:
        return dict(bad=self.bad, first_bad=self.first_bad, **kw)


# ---- sequential -----------------------------------------------------------------------------

def seq_sync(request, count: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q", bytes(8 * count))
    pc = perf_counter_ns
    for i in range(count):
        t0 = pc()
        status, length = request()
        lat[i] = pc() - t0
        check(status, length)
    return check.result(samples=lat)


async def seq_async(request, count: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q", bytes(8 * count))
    pc = perf_counter_ns
    for i in range(count):
        t0 = pc()
        status, length = await request()
        lat[i] = pc() - t0
        check(status, length)
    return check.result(samples=lat)


def seq_floor(adapter, count: int, target: dict) -> dict:
    lat, bad = adapter.floor(adapter.conns[0], count)
    return dict(samples=array("q", lat), bad=bad, first_bad=_floor_bad(adapter, bad))


def _floor_bad(adapter, bad: int):
    """The C loop only counts wrong responses: one more exchange shows what they look like."""
    if not bad:
        return None
    try:
        return adapter.exchange(adapter.conns[0])
    except Exception as exc:  # noqa: BLE001 - only for the message
        return (f"? ({exc})", "?")


# ---- throughput -----------------------------------------------------------------------------

def _tp_result(check: Checker, parts: list, t0: int, ends: list) -> dict:
    lat = array("q")
    for p in parts:
        lat.extend(p)
    end = max(ends) if ends else perf_counter_ns()
    return check.result(samples=lat, count=len(lat), elapsed_ns=max(1, end - t0))


def tp_sync(adapter, inflight: int, duration: float, cap: int, target: dict) -> dict:
    """inflight threads, each sending requests back to back until the duration or the
    request cap (shared) runs out."""
    check = Checker(target)
    lock = threading.Lock()
    tickets = itertools.count()
    start = threading.Barrier(inflight + 1)
    parts: list = []
    ends: list = []
    errors: list = []
    stop_at = [0]
    requesters = [adapter.requester() for _ in range(inflight)]

    def run(request) -> None:
        lat = array("q")
        pc = perf_counter_ns
        bad = []
        start.wait()
        deadline = stop_at[0]
        try:
            while next(tickets) < cap:
                t0 = pc()
                status, length = request()
                t1 = pc()
                lat.append(t1 - t0)
                if status != check.status or (check.length >= 0 and length != check.length):
                    bad.append((status, length))
                if t1 >= deadline:
                    break
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            errors.append(exc)
        with lock:
            parts.append(lat)
            ends.append(pc())
            for s, n in bad:
                check(s, n)

    threads = [threading.Thread(target=run, args=(r,), daemon=True) for r in requesters]
    for t in threads:
        t.start()
    t0 = perf_counter_ns()
    stop_at[0] = t0 + int(duration * 1e9)
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return _tp_result(check, parts, t0, ends)


async def tp_async(adapter, inflight: int, duration: float, cap: int, target: dict) -> dict:
    """inflight tasks on the client, each sending requests back to back until the duration or
    the request cap (shared) runs out."""
    check = Checker(target)
    tickets = itertools.count()
    parts: list = []
    ends: list = []
    request = adapter.request
    t0 = perf_counter_ns()
    deadline = t0 + int(duration * 1e9)

    async def run() -> None:
        lat = array("q")
        pc = perf_counter_ns
        try:
            while next(tickets) < cap:
                t = pc()
                status, length = await request()
                t1 = pc()
                lat.append(t1 - t)
                check(status, length)
                if t1 >= deadline:
                    break
        finally:
            parts.append(lat)
            ends.append(perf_counter_ns())

    await asyncio.gather(*(run() for _ in range(inflight)))
    return _tp_result(check, parts, t0, ends)


def tp_floor(adapter, inflight: int, duration: float, cap: int, target: dict) -> dict:
    """inflight C threads, one connection each (opened by open(inflight)), in chunks of
    exchanges until the duration or the cap runs out."""
    check = Checker(target)
    lock = threading.Lock()
    start = threading.Barrier(inflight + 1)
    parts: list = []
    ends: list = []
    errors: list = []
    bads = [0]
    per_thread = max(1, cap // inflight)
    stop_at = [0]

    def run(conn) -> None:
        lat = array("q")
        bad = 0
        start.wait()
        try:
            while len(lat) < per_thread and perf_counter_ns() < stop_at[0]:
                got, b = adapter.floor(conn, min(64, per_thread - len(lat)))
                lat.extend(got)
                bad += b
        except BaseException as exc:  # noqa: BLE001 - reported by the parent
            errors.append(exc)
        with lock:
            parts.append(lat)
            ends.append(perf_counter_ns())
            bads[0] += bad

    threads = [threading.Thread(target=run, args=(c,), daemon=True)
               for c in adapter.conns[:inflight]]
    for t in threads:
        t.start()
    t0 = perf_counter_ns()
    stop_at[0] = t0 + int(duration * 1e9)
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    check.bad = bads[0]
    check.first_bad = _floor_bad(adapter, check.bad)
    return _tp_result(check, parts, t0, ends)


# ---- cold start and reconnect ---------------------------------------------------------------

async def _maybe_await(value) -> None:
    if inspect.isawaitable(value):
        await value


def cold_sync(adapter, reps: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q")
    for _ in range(reps):
        t0 = perf_counter_ns()
        status, length, closer = adapter.cold_start()
        lat.append(perf_counter_ns() - t0)
        closer()
        check(status, length)
    return check.result(samples=lat)


async def cold_async(adapter, reps: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q")
    for _ in range(reps):
        t0 = perf_counter_ns()
        status, length, closer = await adapter.cold_start()
        lat.append(perf_counter_ns() - t0)
        await _maybe_await(closer())
        check(status, length)
    return check.result(samples=lat)


def reconnect_handshakes(adapter, reps: int, target: dict) -> dict:
    """Full and resumed handshakes, alternated: (new connection + first exchange) each."""
    check = Checker(target)
    out = {True: array("q"), False: array("q")}
    resumed = {True: 0, False: 0}
    adapter.reconnect(False)  # so that a session is cached before the first resumed one
    for _ in range(reps):
        for full in (True, False):
            t0 = perf_counter_ns()
            status, length, was_resumed = adapter.reconnect(full)
            out[full].append(perf_counter_ns() - t0)
            resumed[full] += bool(was_resumed)
            check(status, length)
    return check.result(samples_full=out[True], samples_resumed=out[False],
                        resumed_full=resumed[True], resumed_resumed=resumed[False])


def reconnect_sync(adapter, reps: int, target: dict) -> dict:
    """The client's own reconnect: a request that closes the connection (not timed), then
    the timed request that has to open a new one."""
    check = Checker(target)
    lat = array("q")
    for _ in range(reps):
        check(*adapter.request_close())
        t0 = perf_counter_ns()
        status, length = adapter.request()
        lat.append(perf_counter_ns() - t0)
        check(status, length)
    return check.result(samples=lat)


async def reconnect_async(adapter, reps: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q")
    for _ in range(reps):
        check(*await adapter.request_close())
        t0 = perf_counter_ns()
        status, length = await adapter.request()
        lat.append(perf_counter_ns() - t0)
        check(status, length)
    return check.result(samples=lat)


# ---- priming --------------------------------------------------------------------------------

def prime_sync(adapter, connections: int, count: int, target: dict) -> dict:
    """Warm-up (not measured): count requests, from `connections` threads at once when more
    than one, so that the client opens all its connections before the clock starts."""
    if connections <= 1:
        return seq_sync(adapter.request, count, target)
    return tp_sync(adapter, connections, 3600.0, max(count, connections * 4), target)


async def prime_async(adapter, connections: int, count: int, target: dict) -> dict:
    if connections <= 1:
        return await seq_async(adapter.request, count, target)
    return await tp_async(adapter, connections, 3600.0, max(count, connections * 4), target)
