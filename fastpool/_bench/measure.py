"""The timed loops. Run inside a client's worker process, one measurement per call.

Clock: time.perf_counter_ns (CLOCK_MONOTONIC on Linux), read right before the request starts
and right after its whole body is read; the status and length check happens outside the
timed span. The floor's loops run in C with the same clock (fp_now_ns). Every loop is bounded
by a count, and the throughput loops also by a duration.

CPU: getrusage(RUSAGE_SELF) before and after the measured loop, user and system time of
every thread of this process (a Rust client's runtime threads, libcurl's, the event loop):
what the client's process paid for those requests. The embedded server runs in the parent
process, never in a worker, so it is in no figure here.

Each function returns a dict:
    samples     array('q') of latencies, ns (in the order they were taken)
    bad         responses whose status or body length was wrong
    first_bad   (status, length) of the first wrong one, or None
    cpu_user_ns, cpu_sys_ns    CPU time of the measured loop (this process, all threads)
and, for throughput, count and elapsed_ns; for reconnect, samples_full / samples_resumed and
resumed_full / resumed_resumed (how many handshakes the client saw resumed); for sporadic,
idle_ns (how long the client had been idle before each request).
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import resource
import threading
import time
from array import array
from time import perf_counter_ns
from typing import Any, Optional


def _rusage() -> tuple:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return round(r.ru_utime * 1e9), round(r.ru_stime * 1e9)


class Cpu:
    """CPU time of this process (every thread) between start() and the result."""

    def __init__(self) -> None:
        self.user0, self.sys0 = _rusage()

    def result(self) -> dict:
        user, sys_ = _rusage()
        return {"cpu_user_ns": user - self.user0, "cpu_sys_ns": sys_ - self.sys0}


class Checker:
    """Counts responses whose status or body length differ from the target's."""

    def __init__(self, target: dict) -> None:
        self.status = target["status"]
        self.length = target["length"]
        self.bad = 0
        self.first_bad: Optional[tuple[int, int]] = None

    def __call__(self, status: int, length: int) -> None:
        if status != self.status or (self.length >= 0 and length != self.length):
            self.bad += 1
            if self.first_bad is None:
                self.first_bad = (status, length)

    def result(self, cpu: Optional[Cpu] = None, **kw: Any) -> dict:
        out = dict(bad=self.bad, first_bad=self.first_bad, **kw)
        if cpu is not None:
            out.update(cpu.result())
        return out


# ---- sequential -----------------------------------------------------------------------------

def seq_sync(request, count: int, target: dict, max_ns: int = 0) -> dict:
    """count requests back to back (fewer when max_ns > 0 and they take longer than that)."""
    check = Checker(target)
    lat = array("q", bytes(8 * count))
    pc = perf_counter_ns
    cpu = Cpu()
    stop = pc() + max_ns if max_ns else None
    for i in range(count):
        t0 = pc()
        status, length = request()
        t1 = pc()
        lat[i] = t1 - t0
        check(status, length)
        if stop is not None and t1 > stop:
            del lat[i + 1:]
            break
    return check.result(cpu, samples=lat)


async def seq_async(request, count: int, target: dict, max_ns: int = 0) -> dict:
    check = Checker(target)
    lat = array("q", bytes(8 * count))
    pc = perf_counter_ns
    cpu = Cpu()
    stop = pc() + max_ns if max_ns else None
    for i in range(count):
        t0 = pc()
        status, length = await request()
        t1 = pc()
        lat[i] = t1 - t0
        check(status, length)
        if stop is not None and t1 > stop:
            del lat[i + 1:]
            break
    return check.result(cpu, samples=lat)


def seq_floor(adapter, count: int, target: dict) -> dict:
    cpu = Cpu()
    lat, bad = adapter.floor(adapter.conns[0], count)
    used = cpu.result()
    return dict(samples=array("q", lat), bad=bad, first_bad=_floor_bad(adapter, bad), **used)


# ---- sporadic -------------------------------------------------------------------------------
#
# One request after each idle gap. With start_ns None the client sleeps gap_ns after each
# response (the parent runs one client at a time); otherwise request k goes at start_ns +
# k * gap_ns (the parent staggers every client's start over the gap, so that their requests
# never overlap while each one idles for the gap less its previous request's latency).
# A first request, not counted, comes before: the client may have been idle for many
# seconds while the others ran (long enough for some pools to let a connection expire),
# and the first measured one must follow one gap, not that. idle_ns records, per request,
# how long the client had really been idle before it.

def sporadic_sync(request, gap_ns: int, count: int, start_ns, target: dict) -> dict:
    check = Checker(target)
    lat = array("q", bytes(8 * count))
    idle = array("q", bytes(8 * count))
    pc, sleep = perf_counter_ns, time.sleep
    check(*request())
    cpu = Cpu()
    prev = pc()
    for k in range(count):
        due = prev + gap_ns if start_ns is None else start_ns + k * gap_ns
        while (left := due - pc()) > 0:
            sleep(left / 1e9)
        t0 = pc()
        status, length = request()
        t1 = pc()
        lat[k], idle[k], prev = t1 - t0, t0 - prev, t1
        check(status, length)
    return check.result(cpu, samples=lat, idle_ns=idle)


async def sporadic_async(request, gap_ns: int, count: int, start_ns, target: dict) -> dict:
    check = Checker(target)
    lat = array("q", bytes(8 * count))
    idle = array("q", bytes(8 * count))
    pc, sleep = perf_counter_ns, asyncio.sleep
    check(*await request())
    cpu = Cpu()
    prev = pc()
    for k in range(count):
        due = prev + gap_ns if start_ns is None else start_ns + k * gap_ns
        # A loop's timer may fire early by however stale its cached clock was (libuv's:
        # uvloop), which would shorten the gap: sleep again for what is left.
        while (left := due - pc()) > 0:
            await sleep(left / 1e9)
        t0 = pc()
        status, length = await request()
        t1 = pc()
        lat[k], idle[k], prev = t1 - t0, t0 - prev, t1
        check(status, length)
    return check.result(cpu, samples=lat, idle_ns=idle)


def sporadic_floor(adapter, gap_ns: int, count: int, start_ns, target: dict) -> dict:
    """The floor sleeps in Python like every client, then makes one exchange in C
    (floor_latencies(conn, request, 1)); its sample is the C loop's own span of that exchange,
    so the Python around it (the call, a list of one) is outside the timed span."""
    lat = array("q", bytes(8 * count))
    idle = array("q", bytes(8 * count))
    conn = adapter.conns[0]
    pc, sleep = perf_counter_ns, time.sleep
    bad = adapter.floor(conn, 1)[1]
    cpu = Cpu()
    prev = pc()
    for k in range(count):
        due = prev + gap_ns if start_ns is None else start_ns + k * gap_ns
        while (left := due - pc()) > 0:
            sleep(left / 1e9)
        t0 = pc()
        one, b = adapter.floor(conn, 1)
        t1 = pc()
        lat[k], idle[k], prev = one[0], t0 - prev, t1
        bad += b
    used = cpu.result()
    return dict(samples=lat, idle_ns=idle, bad=bad, first_bad=_floor_bad(adapter, bad), **used)


def _floor_bad(adapter, bad: int):
    """The C loop only counts wrong responses: one more exchange shows what they look like."""
    if not bad:
        return None
    try:
        return adapter.exchange(adapter.conns[0])
    except Exception as exc:  # noqa: BLE001 - only for the message
        return (f"? ({exc})", "?")


# ---- throughput -----------------------------------------------------------------------------

def _tp_result(check: Checker, parts: list, t0: int, ends: list, cpu: Cpu) -> dict:
    lat = array("q")
    for p in parts:
        lat.extend(p)
    end = max(ends) if ends else perf_counter_ns()
    return check.result(cpu, samples=lat, count=len(lat), elapsed_ns=max(1, end - t0))


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
    requesters = [adapter.requester(i) for i in range(inflight)]

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
    cpu = Cpu()
    t0 = perf_counter_ns()
    stop_at[0] = t0 + int(duration * 1e9)
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return _tp_result(check, parts, t0, ends, cpu)


async def tp_async(adapter, inflight: int, duration: float, cap: int, target: dict) -> dict:
    """inflight tasks on the client, each sending requests back to back until the duration or
    the request cap (shared) runs out."""
    check = Checker(target)
    tickets = itertools.count()
    parts: list = []
    ends: list = []
    request = adapter.request
    cpu = Cpu()
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
    return _tp_result(check, parts, t0, ends, cpu)


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
    cpu = Cpu()
    t0 = perf_counter_ns()
    stop_at[0] = t0 + int(duration * 1e9)
    start.wait()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    result = _tp_result(check, parts, t0, ends, cpu)
    result["bad"] = bads[0]
    result["first_bad"] = _floor_bad(adapter, bads[0])
    return result


# ---- cold start and reconnect ---------------------------------------------------------------

async def maybe_await(value) -> None:
    if inspect.isawaitable(value):
        await value


def cold_sync(adapter, reps: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q")
    cpu = Cpu()
    for _ in range(reps):
        t0 = perf_counter_ns()
        status, length, closer = adapter.cold_start()
        lat.append(perf_counter_ns() - t0)
        closer()
        check(status, length)
    return check.result(cpu, samples=lat)


async def cold_async(adapter, reps: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q")
    cpu = Cpu()
    for _ in range(reps):
        t0 = perf_counter_ns()
        status, length, closer = await adapter.cold_start()
        lat.append(perf_counter_ns() - t0)
        await maybe_await(closer())
        check(status, length)
    return check.result(cpu, samples=lat)


def reconnect_handshakes(adapter, reps: int, target: dict) -> dict:
    """Full and resumed handshakes, alternated: (new connection + first exchange) each."""
    check = Checker(target)
    out = {True: array("q"), False: array("q")}
    resumed = {True: 0, False: 0}
    cpu = {True: [0, 0], False: [0, 0]}
    adapter.reconnect(False)  # so that a session is cached before the first resumed one
    for _ in range(reps):
        for full in (True, False):
            u0, s0 = _rusage()
            t0 = perf_counter_ns()
            status, length, was_resumed = adapter.reconnect(full)
            out[full].append(perf_counter_ns() - t0)
            u1, s1 = _rusage()
            cpu[full][0] += u1 - u0
            cpu[full][1] += s1 - s0
            resumed[full] += bool(was_resumed)
            check(status, length)
    return check.result(samples_full=out[True], samples_resumed=out[False],
                        resumed_full=resumed[True], resumed_resumed=resumed[False],
                        cpu_full=cpu[True], cpu_resumed=cpu[False])


def reconnect_sync(adapter, reps: int, target: dict) -> dict:
    """The client's own reconnect: a request that closes the connection (not timed), then
    the timed request that has to open a new one."""
    check = Checker(target)
    lat = array("q")
    used = [0, 0]
    for _ in range(reps):
        check(*adapter.request_close())
        u0, s0 = _rusage()
        t0 = perf_counter_ns()
        status, length = adapter.request()
        lat.append(perf_counter_ns() - t0)
        u1, s1 = _rusage()
        used[0] += u1 - u0
        used[1] += s1 - s0
        check(status, length)
    return check.result(samples=lat, cpu_user_ns=used[0], cpu_sys_ns=used[1])


async def reconnect_async(adapter, reps: int, target: dict) -> dict:
    check = Checker(target)
    lat = array("q")
    used = [0, 0]
    for _ in range(reps):
        check(*await adapter.request_close())
        u0, s0 = _rusage()
        t0 = perf_counter_ns()
        status, length = await adapter.request()
        lat.append(perf_counter_ns() - t0)
        u1, s1 = _rusage()
        used[0] += u1 - u0
        used[1] += s1 - s0
        check(status, length)
    return check.result(samples=lat, cpu_user_ns=used[0], cpu_sys_ns=used[1])


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
