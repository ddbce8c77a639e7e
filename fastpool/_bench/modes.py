"""The benchmark modes: which commands go to which worker, in which order.

Every mode produces tables (one per setting: in-flight level, body size), each a dict with
rows, one per client (and handshake kind in the reconnect mode); fastpool._bench.report
documents their shape. Rounds interleave the clients in a new shuffled order each time, so
a slow drift of the machine (another tenant, frequency changes) spreads over all of them
instead of landing on whichever client ran last. Warm-up requests run before each client's
measurements (and a few again before each round) and are never counted.

Against the embedded server, the parent reads the server's counters around every command:
a client that opened a connection while it was measured on one pre-opened connection does
not keep its connection alive, and is reported failed instead of measured; the parent's own
CPU time around the command (the server's thread is nearly all of it) gives the server's
cost per request, which no row includes.
"""

from __future__ import annotations

import random
import resource
import time
from array import array
from typing import Callable, Optional

from . import stats
from .clients import BY_NAME, CLIENTS, REFERENCE, THROUGHPUT_REFERENCE
from .options import Options
from .server import Target, embedded
from .worker import Worker, WorkerError

_OK = "ok"
_FAILED = "failed"


def _split(total: int, parts: int) -> list:
    parts = max(1, min(parts, total)) if total else 1
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def new_row(name: str, variant: Optional[str] = None) -> dict:
    spec = BY_NAME[name]
    label = name if variant is None else f"{name} ({variant})"
    return {"client": name, "variant": variant, "label": label, "kind": spec.kind,
            "status": _OK, "error": None, "summary": None, "req_per_s": None,
            "x_floor": None, "x_fastpool": None, "x_warm": None, "rounds": [],
            "p50_spread": None, "p50_range": None, "req_per_s_range": None,
            "cpu_per_request_ns": None, "cpu_user_ns": 0, "cpu_sys_ns": 0, "cpu_requests": 0,
            "idle_ns_mean": None,
            "server": {"open": _zero(), "warm": _zero(), "measure": _zero()},
            "note": "", "samples": array("q"), "idle": array("q"), "count": 0,
            "elapsed_ns": 0}


def _zero() -> dict:
    return {"accepted": 0, "requests": 0, "cpu_ns": 0}


def _parent_cpu_ns() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return round((r.ru_utime + r.ru_stime) * 1e9)


def take(row: dict, reply: dict, key: str = "samples", cpu: Optional[tuple] = None) -> dict:
    """Adds one command's samples and CPU time to the row; the round's summary."""
    samples = reply[key]
    row["samples"].extend(samples)
    if "idle_ns" in reply:
        row["idle"].extend(reply["idle_ns"])
    summary = stats.summarize(samples)
    user, system = cpu if cpu is not None else (reply.get("cpu_user_ns"),
                                                reply.get("cpu_sys_ns"))
    if user is not None and len(samples):
        row["cpu_user_ns"] += user
        row["cpu_sys_ns"] += system
        row["cpu_requests"] += len(samples)
        summary["cpu_ns"] = user + system
    row["rounds"].append(summary)
    return summary


#: A client measured on one connection that opened more than this fraction of its requests'
#: worth of new ones does not keep connections alive (fastpool._bench.modes.Runner).
REOPEN_LIMIT = 0.01
#: The sporadic mode runs clients side by side within one gap when their requests fit in
#: it one after another: each client gets a slot of SLOT_P50S times its warm p50 (a request
#: after an idle gap costs several warm ones), and at least SLOT_MIN_NS.
SLOT_P50S = 10
SLOT_MIN_NS = 1_000_000
#: How long before its first request a staggered group gets its command (the pipes, the
#: processes waking up), on top of one gap (so that the first request follows a full gap).
START_MARGIN_NS = 20_000_000


class Runner:
    """Runs the modes over the started workers; collects tables."""

    def __init__(self, o: Options, workers: dict, absent: dict, progress,
                 rng: random.Random, tmpdir: str, server=None) -> None:
        self.o = o
        self.workers: dict = workers        # name -> Worker (started)
        self.absent: dict = absent          # name -> why it does not run
        self.progress = progress
        self.rng = rng
        self.tmpdir = tmpdir
        self.server = server                # the embedded server (its counters), or None
        self.tables: list = []
        self.rejected: dict = {}            # name -> why it was not measured (checks)

    # ---- helpers ------------------------------------------------------------------------

    def names(self) -> list:
        return [c.name for c in CLIENTS if c.name in self.workers]

    def _snapshot(self) -> Optional[tuple]:
        if self.server is None:
            return None
        st = self.server.stats()
        return st["accepted"], st["requests"], _parent_cpu_ns()

    def _count(self, row: dict, phase: str, before: Optional[tuple]) -> None:
        """What the server saw between before and now, added to the row's phase."""
        if before is None:
            return
        after = self._snapshot()
        assert after is not None  # before is a snapshot: there is a server
        into = row["server"][phase]
        for i, key in enumerate(("accepted", "requests", "cpu_ns")):
            into[key] += after[i] - before[i]

    def _call(self, row: dict, msg: dict, timeout: float,
              phase: str = "measure") -> Optional[dict]:
        """A command to the row's worker; on failure the row is marked failed (None)."""
        name = row["client"]
        w: Worker = self.workers[name]
        try:
            if w.proc is None:  # killed after a timeout or a crash: a fresh one
                w.start()
            before = self._snapshot()
            reply = w.call(msg, timeout)
            self._count(row, phase, before)
            return reply
        except WorkerError as exc:
            row["status"] = _FAILED
            row["error"] = str(exc)
            return None

    def _open(self, rows: dict, target: Target, connections: int, warmup: int,
              label: str) -> None:
        tdict = target.as_dict()
        for name, row in rows.items():
            if row["status"] != _OK:
                continue
            self.progress.step(f"{label}: opening {name}")
            self._call(row, {"cmd": "open", "target": tdict, "connections": connections,
                             "warmup": warmup}, timeout=120 + warmup * 0.05, phase="open")

    def _close(self, rows: dict) -> None:
        for name, row in rows.items():
            w = self.workers.get(name)
            if w is not None and w.proc is not None:
                try:
                    w.call({"cmd": "close"}, 30)
                except WorkerError as exc:
                    if row["status"] == _OK:
                        row["status"], row["error"] = _FAILED, f"closing: {exc}"

    def _rounds(self, rows: dict, n_rounds: int, label: str,
                command: Callable[[int], dict], timeout: float,
                take: Callable[[dict, dict], object],
                warm: Optional[dict] = None) -> None:
        """n_rounds rounds; each runs every row still ok once, in a new shuffled order.

        warm: a command run just before each measured one, not counted (the client has
        been idle while the others ran, and may have let its connections expire: reopening
        them belongs to the warm-up, not to the measured requests nor to the server's
        count of connections opened while measuring)."""
        names = list(rows)
        for r in range(n_rounds):
            order = names[:]
            self.rng.shuffle(order)
            for name in order:
                row = rows[name]
                if row["status"] != _OK:
                    continue
                self.progress.step(f"{label}: round {r + 1}/{n_rounds}, {name}")
                if warm is not None and self._call(row, warm, timeout, phase="warm") is None:
                    continue
                reply = self._call(row, command(r), timeout)
                if reply is not None:
                    take(row, reply)

    def _budget(self) -> Optional[int]:
        """Requests per client per mode against a remote host (None: unbounded here)."""
        return self.o.requests if self.o.remote else None

    def _table(self, mode: str, title: str, setting, rows: list, unit_kind: str,
               settings: dict) -> dict:
        table = {"mode": mode, "title": title, "setting": setting, "settings": settings,
                 "rows": rows, "metric": unit_kind, "notes": [],
                 "reference": THROUGHPUT_REFERENCE if unit_kind == "throughput" else REFERENCE}
        self.tables.append(table)
        return table

    def _absent_rows(self) -> list:
        """Clients that are not installed or were not measured appear once, under the
        tables (fastpool._bench.output), not as a row of every table."""
        return []

    # ---- checks before any measurement ----------------------------------------------------

    def verify_tls(self, wrong: Target) -> None:
        """Each client, told to trust a CA that did not sign the server's certificate, must
        fail its first request; one that succeeds does not verify TLS and is not measured."""
        tdict = wrong.as_dict()
        for name in self.names():
            self.progress.step(f"checking TLS verification: {name}")
            row = new_row(name)
            reply = self._call(row, {"cmd": "verify", "target": tdict}, timeout=60,
                               phase="open")
            if reply is None:
                why = f"the TLS verification check failed: {row['error']}"
            elif reply["accepted"]:
                why = (f"does not verify TLS: told to trust only a CA that did not sign the "
                       f"server's certificate, it got a response ({reply['error']})")
            else:
                continue
            self.reject(name, why)

    def reject(self, name: str, why: str) -> None:
        """Takes a client out of the run (its worker stopped), with the reason."""
        self.rejected[name] = why
        w = self.workers.pop(name, None)
        if w is not None:
            w.stop()

    def _reuse_check(self, rows: dict) -> None:
        """Rows measured on one pre-opened connection: more connections accepted by the
        server while a row was measured than REOPEN_LIMIT of its requests means the client
        does not keep its connection alive (not measured); fewer, that its pool sometimes
        dials instead of reusing (measured, with a note: those requests paid a handshake)."""
        if self.server is None:
            return
        for row in rows.values():
            seen = row["server"]["measure"]
            if row["status"] != _OK or not seen["accepted"]:
                continue
            if seen["accepted"] > REOPEN_LIMIT * max(1, seen["requests"]):
                row["status"] = _FAILED
                row["error"] = (f"does not keep its connection alive: the server accepted "
                                f"{seen['accepted']} new connections during its "
                                f"{seen['requests']} measured requests")
            else:
                row["note"] = (f"{seen['accepted']} reconnect(s) in {seen['requests']} "
                               f"requests")

    # ---- sequential latency (also the sizes mode) ---------------------------------------

    def _sequential(self, target: Target, mode: str, title: str, setting, count: int,
                    rounds: int, warmup: int, max_s: float = 0.0) -> dict:
        """max_s: a client's requests stop after that many seconds over all rounds (the
        slowest clients then make fewer; each row says how many it made)."""
        rows = {n: new_row(n) for n in self.names()}
        label = title
        self._open(rows, target, 1, warmup, label)
        counts = _split(count, rounds)
        round_warm = min(100, max(10, counts[0] // 20)) if self._budget() is None else 0
        max_ns = round(max_s * 1e9 / len(counts)) if max_s else 0

        self._rounds(rows, len(counts), label,
                     lambda r: {"cmd": "latency", "count": counts[r], "warmup": 0,
                                "max_ns": max_ns},
                     timeout=60 + counts[0] * 0.2, take=take,
                     warm={"cmd": "latency", "count": round_warm, "warmup": 0}
                     if round_warm else None)
        self._close(rows)
        self._reuse_check(rows)
        for row in rows.values():
            self._finish(row)
            if row["summary"]:
                row["req_per_s"] = stats.sequential_rate(row["summary"])
                made = row["summary"]["count"]
                if made < count:
                    capped = f"{made:,} requests ({max_s:g} s cap)"
                    row["note"] = f"{capped}, {row['note']}" if row["note"] else capped
        table_rows = list(rows.values()) + self._absent_rows()
        _ratios(table_rows, REFERENCE, rate=False)
        table = self._table(mode, title, setting, table_rows, "latency",
                            {"requests": count, "rounds": len(counts), "warmup": warmup,
                             "round_warmup": round_warm, "connections": 1,
                             "max_seconds": max_s or None})
        if max_s:
            table["notes"].append(
                f"{count:,} requests per client, or as many as it makes in {max_s:g} s (over "
                f"the rounds) when fewer; the count is beside each row that was cut short")
        cost = self._server_cost(rows)
        if cost is not None:
            table["server_cpu_per_request_ns"] = cost
            table["notes"].append(
                f"the embedded server's thread used {cost / 1e3:.1f} µs of CPU per request "
                f"(median over the rows); it runs in the parent process, so no row's CPU/req "
                f"includes it")
        return table

    def latency(self, target: Target) -> None:
        budget = self._budget()
        count, warm = self.o.requests, self.o.warmup
        if budget is not None:
            warm = min(warm, budget // 10)
            count = max(1, budget - warm - 0)
        self._sequential(target, "latency", "sequential latency", None, count,
                         self.o.rounds, warm, 0.0 if budget is not None else self.o.max_seconds)

    def sizes(self) -> None:
        for size in self.o.sizes:
            with embedded(self.o, size, self.tmpdir) as srv:
                count = min(self.o.requests, max(30, (64 << 20) // max(size, 1)))
                count = min(count, max(self.o.requests // 5, 30))
                self._sequential(srv.target, "sizes", f"sequential latency, {_size(size)} body",
                                 size, count, min(self.o.rounds, 3),
                                 min(self.o.warmup, max(10, count // 5)))

    # ---- sporadic -----------------------------------------------------------------------

    def sporadic(self, target: Target) -> None:
        """One request after each idle gap, for every gap of --gaps: one table per gap.

        Each client first makes a short back-to-back burst (not reported when the latency
        table ran: its warm p50 is the reference then; otherwise the burst's p50 is). Then,
        round by round and gap by gap, each client makes its requests for that gap. Clients
        whose requests fit in one gap one after another run side by side, staggered over it
        (a slot of SLOT_P50S warm p50s each), so that the long gaps do not cost a gap per
        client: their requests never overlap, but the machine is then not idle while one
        client is. The others run alone, one client at a time."""
        o = self.o
        budget = self._budget()
        gaps = o.gaps
        counts = dict(zip(gaps, o.sporadic_counts))
        burst = 200
        if budget is not None:
            per = max(1, budget // (len(gaps) + 1))
            counts = {g: min(c, per) for g, c in counts.items()}
            burst = min(burst, per)
        names = self.names()
        base = {n: new_row(n) for n in names}
        label = "sporadic"
        self._open(base, target, 1, 0 if budget is not None else min(o.warmup, 100), label)
        warm = {n: new_row(n) for n in names}
        for n in names:
            if base[n]["status"] != _OK:
                warm[n]["status"], warm[n]["error"] = base[n]["status"], base[n]["error"]
                continue
            self.progress.step(f"{label}: warm burst, {n}")
            reply = self._call(warm[n], {"cmd": "latency", "count": burst, "warmup": 0},
                               timeout=60 + burst * 0.2)
            if reply is not None:
                take(warm[n], reply)
        for row in warm.values():
            self._finish(row)
        warm_p50 = {n: r["summary"]["p50"] for n, r in warm.items() if r["summary"]}
        slots = {n: max(SLOT_MIN_NS, SLOT_P50S * p) for n, p in warm_p50.items()}

        n_rounds = max(1, min(o.rounds, 2, min(counts.values())))
        per_round = {g: _split(counts[g], n_rounds) for g in gaps}
        rows = {g: {n: new_row(n) for n in names} for g in gaps}
        for g in gaps:
            for n in names:
                if warm[n]["status"] != _OK:
                    rows[g][n]["status"], rows[g][n]["error"] = _FAILED, warm[n]["error"]
        before = self._snapshot()
        side_by_side = set()
        for r in range(n_rounds):
            for g in gaps:
                live = [n for n in names if rows[g][n]["status"] == _OK]
                self.rng.shuffle(live)
                for group in _groups(live, slots, g):
                    if len(group) > 1:
                        side_by_side.add(g)
                    self.progress.step(f"{label}: round {r + 1}/{n_rounds}, {_dur(g)} gap, "
                                       f"{', '.join(n for n, _ in group)}")
                    self._sporadic_group(rows[g], group, g, per_round[g][r])
        accepted = None
        if before is not None:
            after = self._snapshot()
            assert after is not None  # before is a snapshot: there is a server
            accepted = after[0] - before[0]
        self._close(base)

        latency = next((t for t in self.tables if t["mode"] == "latency"), None)
        ref = {}
        if latency is not None:
            ref = {x["client"]: x["summary"]["p50"] for x in latency["rows"]
                   if x["status"] == _OK}
        for g in gaps:
            table_rows = list(rows[g].values())
            for row in table_rows:
                self._finish(row)
                p50_warm = ref.get(row["client"], warm_p50.get(row["client"]))
                if row["summary"] and p50_warm:
                    row["x_warm"] = stats.slower(row["summary"]["p50"], p50_warm)
            _ratios(table_rows, REFERENCE, rate=False)
            table = self._table("sporadic", f"sporadic: one request after {_dur(g)} idle", g,
                                table_rows, "latency",
                                {"gap_ns": g, "requests": counts[g], "rounds": n_rounds,
                                 "warm_burst": burst, "connections": 1})
            table["notes"].append(
                "× warm: p50 after the gap over the client's warm p50 ("
                + ("the sequential latency table's" if latency is not None
                   else f"a {burst}-request back-to-back burst's") + ")")
            if g in side_by_side:
                table["notes"].append(
                    "clients whose requests fit in the gap one after another ran side by "
                    "side, staggered over it (no two requests at once)")
        if accepted:
            self.tables[-1]["notes"].append(
                f"the server accepted {accepted} new connection(s) during the sporadic "
                f"requests: a client reconnected after idling")

    def _sporadic_group(self, rows: dict, group: list, gap: int, count: int) -> None:
        """One gap's requests for a group: alone (sleep the gap after each response), or
        side by side on one schedule, each client at its own offset within the gap."""
        if len(group) == 1:
            n = group[0][0]
            reply = self._call(rows[n], {"cmd": "sporadic", "gap_ns": gap, "count": count,
                                         "start_ns": None},
                               timeout=60 + count * (gap / 1e9 + 0.2))
            if reply is not None:
                take(rows[n], reply)
            return
        start = time.perf_counter_ns() + START_MARGIN_NS + gap
        posted = []
        for n, offset in group:
            try:
                self.workers[n].post({"cmd": "sporadic", "gap_ns": gap, "count": count,
                                      "start_ns": start + offset})
                posted.append(n)
            except WorkerError as exc:
                rows[n]["status"], rows[n]["error"] = _FAILED, str(exc)
        for n in posted:
            try:
                reply = self.workers[n].reply(timeout=60 + (count + 2) * (gap / 1e9 + 0.2))
            except WorkerError as exc:
                rows[n]["status"], rows[n]["error"] = _FAILED, str(exc)
                continue
            take(rows[n], reply)

    # ---- throughput ---------------------------------------------------------------------

    def throughput(self, target: Target) -> None:
        n_rounds = min(self.o.rounds, 3)
        budget = self._budget()
        levels = self.o.inflight
        for k in levels:
            rows = {n: new_row(n) for n in self.names()}
            label = f"throughput, {k} in flight"
            if budget is None:
                warm = max(self.o.warmup, 8 * k)
                cap = int(self.o.duration * 2_000_000) + 1
            else:
                per_level = max(1, budget // len(levels))
                warm = min(max(k, per_level // 10), per_level // 2)
                cap = max(1, (per_level - warm) // n_rounds)
            self._open(rows, target, k, warm, label)

            def take_tp(row: dict, reply: dict) -> None:
                row["count"] += reply["count"]
                row["elapsed_ns"] += reply["elapsed_ns"]
                take(row, reply)["req_per_s"] = stats.rate(reply["count"], reply["elapsed_ns"])

            round_warm = None
            if budget is None:
                round_warm = {"cmd": "throughput", "inflight": k, "duration": 3600.0,
                              "cap": 4 * k}
            def command(r: int, k: int = k, cap: int = cap) -> dict:
                return {"cmd": "throughput", "inflight": k, "duration": self.o.duration,
                        "cap": cap}

            self._rounds(rows, n_rounds, label, command,
                         timeout=self.o.duration * 3 + 120, take=take_tp, warm=round_warm)
            self._close(rows)
            for row in rows.values():
                self._finish(row)
                row["req_per_s"] = stats.rate(row["count"], row["elapsed_ns"])
                rates = [r["req_per_s"] for r in row["rounds"] if r.get("req_per_s")]
                row["req_per_s_range"] = [min(rates), max(rates)] if rates else None
                notes = []
                if row["kind"] == "sync" and k > 1:
                    notes.append(f"{k} threads")
                elif row["kind"] == "floor" and k > 1:
                    notes.append(f"{k} C threads, 1 connection each")
                used = row["server"]["open"]["accepted"] + row["server"]["measure"]["accepted"]
                if self.server is not None and row["status"] == _OK and used > k:
                    notes.append(f"opened {used} connections")
                elif self.server is not None and row["status"] == _OK and used < k:
                    notes.append(f"only {used} connections")
                row["note"] = ", ".join(notes)
            table_rows = list(rows.values()) + self._absent_rows()
            _ratios(table_rows, THROUGHPUT_REFERENCE, rate=True)
            self._table("throughput", label, k, table_rows, "throughput",
                        {"inflight": k, "connections": k, "duration_s": self.o.duration,
                         "rounds": n_rounds, "warmup": warm,
                         "cap_per_round": cap if budget is not None else None})

    # ---- cold start ---------------------------------------------------------------------

    def cold(self, target: Target) -> None:
        reps = self.o.cold_reps
        budget = self._budget()
        if budget is not None:
            reps = max(1, min(reps, budget - 2))
        rows = {n: new_row(n) for n in self.names()}
        label = "cold start"
        warm = 0 if budget is not None else min(self.o.warmup, 50)
        self._open(rows, target, 1, warm, label)
        if budget is None:  # one untimed cold start: the libraries' lazy imports
            for name, row in rows.items():
                if row["status"] == _OK:
                    self.progress.step(f"{label}: warming {name}")
                    self._call(row, {"cmd": "cold", "reps": 1}, timeout=120)
        per_round = _split(reps, min(self.o.rounds, reps))

        self._rounds(rows, len(per_round), label,
                     lambda r: {"cmd": "cold", "reps": per_round[r]},
                     timeout=60 + per_round[0] * 10, take=take)
        self._close(rows)
        for row in rows.values():
            self._finish(row)
            if row["kind"] in ("sync", "async") and row["client"].startswith("fastpool"):
                row["note"] = "new pool, 1 connection"
        table_rows = list(rows.values()) + self._absent_rows()
        _ratios(table_rows, REFERENCE, rate=False)
        self._table("cold", "cold start: new client -> first response", None, table_rows,
                    "latency", {"reps": reps, "rounds": len(per_round)})

    # ---- reconnect ----------------------------------------------------------------------

    def reconnect(self, target: Target, server=None) -> None:
        reps = self.o.reconnect_reps
        budget = self._budget()
        if budget is not None:
            reps = max(1, min(reps, (budget - 2) // 2))
        names = [n for n in self.names() if BY_NAME[n].reconnect]
        skipped = [n for n in self.names() if not BY_NAME[n].reconnect]
        base = {n: new_row(n) for n in names}
        label = "reconnect"
        self._open(base, target, 1, 0 if budget is not None else min(self.o.warmup, 50),
                   label)
        per_round = _split(reps, min(self.o.rounds, reps))
        out: dict = {}
        for n in names:
            if BY_NAME[n].handshakes:
                out[(n, "full")] = new_row(n, "full")
                out[(n, "resumed")] = new_row(n, "resumed")
            else:
                out[(n, "own")] = new_row(n, "own")
        server_seen: dict = {n: [0, 0] for n in names}

        def take_rc(row: dict, reply: dict) -> None:
            n = row["client"]
            if BY_NAME[n].handshakes:
                for v in ("full", "resumed"):
                    r = out[(n, v)]
                    take(r, reply, f"samples_{v}", cpu=tuple(reply[f"cpu_{v}"]))
                    r["resumed"] = r.get("resumed", 0) + reply[f"resumed_{v}"]
                    r["reps"] = r.get("reps", 0) + len(reply[f"samples_{v}"])
            else:
                take(out[(n, "own")], reply)

        def command(r: int) -> dict:
            return {"cmd": "reconnect", "reps": per_round[r]}

        # wraps _rounds so that the server's handshake counters are read around each call
        names_order = list(base)
        for r in range(len(per_round)):
            order = names_order[:]
            self.rng.shuffle(order)
            for n in order:
                row = base[n]
                if row["status"] != _OK:
                    continue
                self.progress.step(f"{label}: round {r + 1}/{len(per_round)}, {n}")
                before = server.stats() if server is not None else None
                reply = self._call(row, command(r), timeout=60 + per_round[r] * 10)
                if reply is None:
                    continue
                if before is not None:
                    after = server.stats()
                    server_seen[n][0] += after["tls_handshakes"] - before["tls_handshakes"]
                    server_seen[n][1] += after["tls_resumed"] - before["tls_resumed"]
                take_rc(row, reply)
        self._close(base)
        rows = []
        for (n, v), row in out.items():
            if base[n]["status"] != _OK:
                row["status"], row["error"] = base[n]["status"], base[n]["error"]
            self._finish(row)
            if v in ("full", "resumed") and row.get("reps"):
                row["note"] = f"resumed {row['resumed']}/{row['reps']}"
            elif v == "own" and target.tls and server is not None:
                hs, res = server_seen[n]
                row["note"] = f"server saw {res}/{hs} resumed"
            rows.append(row)
        rows += self._absent_rows()
        _ratios(rows, REFERENCE, rate=False, by_variant=True)
        notes = ["full / resumed: a new connection opened the way the pool replaces one (its "
                 "TLS context: a cached session unless forgotten), then one exchange on it",
                 "own: a request that says Connection: close, then the timed request, which "
                 "the client has to send on a new connection of its own making"]
        if skipped:
            notes.append(f"not run: {', '.join(skipped)} (AsyncPool opens connections with the "
                         f"same engine call as Pool, in a thread: see the Pool rows)")
        table = self._table("reconnect", "reconnect: lost connection -> next response", None,
                            rows, "latency", {"reps": reps, "rounds": len(per_round),
                                              "tls": target.tls})
        table["notes"] = notes

    # ---- rows ---------------------------------------------------------------------------

    def _finish(self, row: dict) -> None:
        if row["status"] == _OK and len(row["samples"]):
            row["summary"] = stats.summarize(row["samples"])
            p50s = [r["p50"] for r in row["rounds"] if r.get("p50")]
            row["p50_spread"] = stats.spread(p50s)
            row["p50_range"] = [min(p50s), max(p50s)] if p50s else None
            if row["cpu_requests"]:
                row["cpu_per_request_ns"] = round(
                    (row["cpu_user_ns"] + row["cpu_sys_ns"]) / row["cpu_requests"])
            if len(row["idle"]):
                row["idle_ns_mean"] = round(sum(row["idle"]) / len(row["idle"]))
        elif row["status"] == _OK:
            row["status"], row["error"] = _FAILED, "no samples"
        if row["status"] != _OK:
            row["summary"] = None

    def _server_cost(self, rows: dict) -> Optional[int]:
        """The embedded server's CPU per request (parent process), median over the rows."""
        if self.server is None:
            return None
        costs = sorted(r["server"]["measure"]["cpu_ns"] / r["server"]["measure"]["requests"]
                       for r in rows.values() if r["server"]["measure"]["requests"])
        return round(costs[len(costs) // 2]) if costs else None


def _ratios(rows: list, reference: str, rate: bool, by_variant: bool = False) -> None:
    """x_floor and x_fastpool of each row: times slower than the floor / the reference (p50
    ratio; for rates, the reference's req/s over the row's)."""
    def find(name: str, variant) -> Optional[dict]:
        for r in rows:
            if r["client"] == name and r["status"] == _OK and (
                    not by_variant or r["variant"] == variant):
                return r
        return None

    for row in rows:
        if row["status"] != _OK:
            continue
        variant = row["variant"]
        if by_variant and variant == "own":
            variant = "full"
        for key, name in (("x_floor", "floor"), ("x_fastpool", reference)):
            ref = find(name, variant)
            if ref is None:
                continue
            if rate:
                row[key] = stats.slower_rate(row["req_per_s"], ref["req_per_s"])
            else:
                row[key] = stats.slower(row["summary"]["p50"], ref["summary"]["p50"])


def _groups(names: list, slots: dict, gap: int) -> list:
    """[(name, offset ns)] groups: consecutive clients whose slots add up to at most gap."""
    groups: list = []
    current: list = []
    used = 0
    for n in names:
        slot = slots.get(n, SLOT_MIN_NS)
        if current and used + slot > gap:
            groups.append(current)
            current, used = [], 0
        current.append((n, used))
        used += slot
    if current:
        groups.append(current)
    return groups


def _dur(ns: int) -> str:
    """1 ms, 10 ms, 1 s, 250 µs."""
    if ns >= 1_000_000_000 and ns % 1_000_000_000 == 0:
        return f"{ns // 1_000_000_000} s"
    if ns >= 1_000_000 and ns % 1_000_000 == 0:
        return f"{ns // 1_000_000} ms"
    if ns >= 1000 and ns % 1000 == 0:
        return f"{ns // 1000} µs"
    return f"{ns / 1e6:g} ms"


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"
