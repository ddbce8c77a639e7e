"""The benchmark modes: which commands go to which worker, in which order.

Every mode produces tables (one per setting: in-flight level, body size), each a dict with
rows, one per client (and handshake kind in the reconnect mode); fastpool._bench.report
documents their shape. Rounds interleave the clients in a new shuffled order each time, so
a slow drift of the machine (another tenant, frequency changes) spreads over all of them
instead of landing on whichever client ran last. Warm-up requests run before each client's
measurements (and a few again before each round) and are never counted.
"""

from __future__ import annotations

import random
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
            "x_floor": None, "x_fastpool": None, "rounds": [], "p50_spread": None,
            "note": "", "samples": array("q"), "count": 0, "elapsed_ns": 0}


class Runner:
    """Runs the modes over the started workers; collects tables."""

    def __init__(self, o: Options, workers: dict, absent: dict, progress,
                 rng: random.Random, tmpdir: str) -> None:
        self.o = o
        self.workers: dict = workers        # name -> Worker (started)
        self.absent: dict = absent          # name -> why it does not run
        self.progress = progress
        self.rng = rng
        self.tmpdir = tmpdir
        self.tables: list = []

    # ---- helpers ------------------------------------------------------------------------

    def names(self) -> list:
        return [c.name for c in CLIENTS if c.name in self.workers]

    def _call(self, row: dict, msg: dict, timeout: float) -> Optional[dict]:
        """A command to the row's worker; on failure the row is marked failed (None)."""
        name = row["client"]
        w: Worker = self.workers[name]
        try:
            if w.proc is None:  # killed after a timeout or a crash: a fresh one
                w.start()
            return w.call(msg, timeout)
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
                             "warmup": warmup}, timeout=120 + warmup * 0.05)

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
                take: Callable[[dict, dict], None]) -> None:
        """n_rounds rounds; each runs every row still ok once, in a new shuffled order."""
        names = list(rows)
        for r in range(n_rounds):
            order = names[:]
            self.rng.shuffle(order)
            for name in order:
                row = rows[name]
                if row["status"] != _OK:
                    continue
                self.progress.step(f"{label}: round {r + 1}/{n_rounds}, {name}")
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
        out = []
        for c in CLIENTS:
            if c.name in self.absent and c.name in self.o.clients:
                row = new_row(c.name)
                row["status"] = "not installed" if self.absent[c.name].startswith(
                    "not installed") else "unavailable"
                row["error"] = self.absent[c.name]
                out.append(row)
        return out

    # ---- sequential latency (also the sizes mode) ---------------------------------------

    def _sequential(self, target: Target, mode: str, title: str, setting, count: int,
                    rounds: int, warmup: int) -> dict:
        rows = {n: new_row(n) for n in self.names()}
        label = title
        self._open(rows, target, 1, warmup, label)
        counts = _split(count, rounds)
        round_warm = min(100, max(10, counts[0] // 20)) if self._budget() is None else 0

        def take(row: dict, reply: dict) -> None:
            row["samples"].extend(reply["samples"])
            row["rounds"].append(stats.summarize(reply["samples"]))

        self._rounds(rows, len(counts), label,
                     lambda r: {"cmd": "latency", "count": counts[r], "warmup": round_warm},
                     timeout=60 + counts[0] * 0.2, take=take)
        self._close(rows)
        for row in rows.values():
            self._finish(row)
            if row["summary"]:
                row["req_per_s"] = stats.sequential_rate(row["summary"])
        table_rows = list(rows.values()) + self._absent_rows()
        _ratios(table_rows, REFERENCE, rate=False)
        return self._table(mode, title, setting, table_rows, "latency",
                           {"requests": count, "rounds": len(counts), "warmup": warmup,
                            "round_warmup": round_warm, "connections": 1})

    def latency(self, target: Target) -> None:
        budget = self._budget()
        count, warm = self.o.requests, self.o.warmup
        if budget is not None:
            warm = min(warm, budget // 10)
            count = max(1, budget - warm - 0)
        self._sequential(target, "latency", "sequential latency", None, count,
                         self.o.rounds, warm)

    def sizes(self) -> None:
        for size in self.o.sizes:
            with embedded(self.o, size, self.tmpdir) as srv:
                count = min(self.o.requests, max(30, (64 << 20) // max(size, 1)))
                count = min(count, max(self.o.requests // 5, 30))
                self._sequential(srv.target, "sizes", f"sequential latency, {_size(size)} body",
                                 size, count, min(self.o.rounds, 3),
                                 min(self.o.warmup, max(10, count // 5)))

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

            def take(row: dict, reply: dict) -> None:
                row["samples"].extend(reply["samples"])
                row["count"] += reply["count"]
                row["elapsed_ns"] += reply["elapsed_ns"]
                s = stats.summarize(reply["samples"])
                s["req_per_s"] = stats.rate(reply["count"], reply["elapsed_ns"])
                row["rounds"].append(s)

            self._rounds(rows, n_rounds, label,
                         lambda r, k=k, cap=cap: {"cmd": "throughput", "inflight": k,
                                                  "duration": self.o.duration, "cap": cap},
                         timeout=self.o.duration * 3 + 120, take=take)
            self._close(rows)
            for row in rows.values():
                self._finish(row)
                row["req_per_s"] = stats.rate(row["count"], row["elapsed_ns"])
                if row["kind"] == "sync" and k > 1:
                    row["note"] = f"{k} threads"
                elif row["kind"] == "floor" and k > 1:
                    row["note"] = f"{k} C threads, 1 connection each"
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

        def take(row: dict, reply: dict) -> None:
            row["samples"].extend(reply["samples"])
            row["rounds"].append(stats.summarize(reply["samples"]))

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

        def take(row: dict, reply: dict) -> None:
            n = row["client"]
            if BY_NAME[n].handshakes:
                for v in ("full", "resumed"):
                    r = out[(n, v)]
                    r["samples"].extend(reply[f"samples_{v}"])
                    r["rounds"].append(stats.summarize(reply[f"samples_{v}"]))
                    r["resumed"] = r.get("resumed", 0) + reply[f"resumed_{v}"]
                    r["reps"] = r.get("reps", 0) + len(reply[f"samples_{v}"])
            else:
                r = out[(n, "own")]
                r["samples"].extend(reply["samples"])
                r["rounds"].append(stats.summarize(reply["samples"]))

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
                take(row, reply)
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
            row["p50_spread"] = stats.spread([r["p50"] for r in row["rounds"] if r.get("p50")])
        elif row["status"] == _OK:
            row["status"], row["error"] = _FAILED, "no samples"


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


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n >> 10} KiB"
    return f"{n} B"
