"""What the terminal shows: progress while running (on a terminal only), the tables, and
under them the summary line, what the names mean, and the clients that did not run."""

from __future__ import annotations

import sys
import time
from typing import Optional, Sequence, TextIO

from .clients import BY_NAME, REFERENCE
from .features import FeatureTable

#: What each of fastpool's own rows is, one line each under the tables.
LEGEND = (
    ("floor", "a raw C client on fastpool's C connection engine: one pre-opened connection, "
              "the same request bytes as fastpool.Pool, no Python in its timed loop (the best "
              "any Python client could do here)"),
    ("fastpool", "fastpool.Pool, the sync pool, on the C engine"),
    ("fastpool-async", "fastpool.AsyncPool on the C engine (asyncio or uvloop, see above)"),
    ("fastpool-py", "fastpool.Pool on the pure-Python engine (FASTPOOL_NO_EXTENSIONS=1, or "
                    "where no compiler is available)"),
    ("fastpool-py-async", "fastpool.AsyncPool on the pure-Python engine"),
)
COLUMNS_LEGEND = (
    "CPU/req: user + system CPU of the client's own process (all threads) per request; "
    "p50 rounds: the lowest and highest p50 of the interleaved rounds (req/s in throughput), "
    "a wide range means a noisy machine")

#: Column widths.
_W = {"num": 8, "max": 9, "cpu": 9, "range": 14, "ratio": 8, "ref": 11, "rate": 10}


class Progress:
    """One status line on stderr, rewritten in place; silent when disabled."""

    def __init__(self, enabled: bool, stream: Optional[TextIO] = None) -> None:
        self.enabled = enabled
        self.stream = sys.stderr if stream is None else stream
        self.t0 = time.monotonic()
        self._width = 0

    def step(self, text: str) -> None:
        if not self.enabled:
            return
        line = f"[{time.monotonic() - self.t0:5.0f}s] {text}"[:119]
        pad = max(0, self._width - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._width = len(line)

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


def _fmt(value: Optional[float], div: float = 1e3) -> str:
    """Microseconds from ns: 3 significant figures below 1000, thousands separated above."""
    if value is None:
        return "-"
    v = value / div
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    return f"{v:.1f}"


def _fmt_rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _fmt_rate_short(value: float) -> str:
    if value >= 100_000:
        return f"{value / 1e3:.0f}k"
    if value >= 1_000:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def _fmt_ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def _range(pair, fmt) -> str:
    if not pair:
        return "-"
    lo, hi = pair
    return f"{fmt(lo)}–{fmt(hi)}"


def _columns(table: dict) -> list:
    """[(header, width, row -> text)] for the table's kind."""
    s = lambda key: (lambda r: _fmt(r["summary"][key]))  # noqa: E731
    cpu = ("CPU/req", _W["cpu"], lambda r: _fmt(r.get("cpu_per_request_ns")))
    floor = ("× floor", _W["ratio"], lambda r: _fmt_ratio(r.get("x_floor")))
    ref_name = table.get("reference") or REFERENCE
    ref = (f"× {ref_name}", max(_W["ref"], len(ref_name) + 4),
           lambda r: _fmt_ratio(r.get("x_fastpool")))
    if table["metric"] == "throughput":
        return [("req/s", _W["rate"], lambda r: _fmt_rate(r.get("req_per_s"))),
                ("p50", _W["num"], s("p50")), ("p99", _W["num"], s("p99")),
                ("p99.9", _W["num"], s("p999")), ("max", _W["max"], s("max")), cpu,
                ("req/s rounds", _W["range"],
                 lambda r: _range(r.get("req_per_s_range"), _fmt_rate_short)),
                floor, ref]
    if table["mode"] == "sporadic":
        return [("p50", _W["num"], s("p50")), ("p90", _W["num"], s("p90")),
                ("p99", _W["num"], s("p99")), ("max", _W["max"], s("max")), cpu,
                ("p50 rounds", _W["range"], lambda r: _range(r.get("p50_range"), _fmt)),
                ("× warm", _W["ratio"], lambda r: _fmt_ratio(r.get("x_warm"))), floor, ref]
    return [("p50", _W["num"], s("p50")), ("p90", _W["num"], s("p90")),
            ("p99", _W["num"], s("p99")), ("p99.9", _W["num"], s("p999")),
            ("max", _W["max"], s("max")), cpu,
            ("p50 rounds", _W["range"], lambda r: _range(r.get("p50_range"), _fmt)),
            floor, ref]


def format_table(table: dict) -> str:
    cols = _columns(table)
    label_w = max([len(r["label"]) for r in table["rows"]] + [6]) + 1
    by = "req/s" if table["metric"] == "throughput" else "p50"
    lines = [f"{table['title']} (µs; × = times slower than floor / "
             f"{table.get('reference') or REFERENCE}, by {by})"]
    head = f"  {'client':<{label_w}}" + "".join(f"{h:>{w}}" for h, w, _ in cols)
    lines.append(head)
    lines.append("  " + "-" * (len(head) - 2))
    for r in table["rows"]:
        if r["status"] != "ok" or not r.get("summary"):
            why = " ".join((r.get("error") or "").split())   # one line, whatever it said
            text = why if why.startswith(r["status"]) else f"{r['status']}: {why}"
            lines.append(f"  {r['label']:<{label_w}}  {text}"[:240])
            continue
        line = f"  {r['label']:<{label_w}}" + "".join(f"{cell(r):>{w}}" for _, w, cell in cols)
        if r.get("note"):
            line += f"  {r['note']}"
        lines.append(line)
    for note in table.get("notes") or ():
        lines.append(f"  · {note}")
    return "\n".join(lines)


def _times(mine: int, theirs: int) -> str:
    if mine <= theirs:
        return f"{theirs / mine:.2f}× faster"
    return f"{mine / theirs:.2f}× slower"


def summary_line(tables: list) -> Optional[str]:
    """fastpool against the fastest other client of the sequential latency table, at p50 and
    at p99.9 (the other clients: every peer, not the floor nor fastpool's other rows)."""
    table = next((t for t in tables if t["mode"] == "latency"), None)
    if table is None:
        return None
    ok = [r for r in table["rows"] if r["status"] == "ok" and r.get("summary")]
    mine = next((r for r in ok if r["client"] == REFERENCE), None)
    others = [r for r in ok if BY_NAME[r["client"]].engine is None]
    if mine is None or not others:
        return None
    best50 = min(others, key=lambda r: r["summary"]["p50"])
    best999 = min(others, key=lambda r: r["summary"]["p999"])
    m, b50, b999 = mine["summary"], best50["summary"], best999["summary"]
    text = (f"summary: fastpool is {_times(m['p50'], b50['p50'])} than the fastest other "
            f"client, {best50['label']}, at p50 ({_fmt(m['p50'])} vs {_fmt(b50['p50'])} µs)")
    if best999 is best50:
        text += f", {_times(m['p999'], b999['p999'])} at p99.9"
    else:
        text += (f"; at p99.9 {_times(m['p999'], b999['p999'])} than the fastest there, "
                 f"{best999['label']}")
    return text + f" ({_fmt(m['p999'])} vs {_fmt(b999['p999'])} µs)"


def clients_lines(doc: dict) -> list:
    """The clients that did not run, each listed once: not installed (with what installs
    them), unavailable, rejected by the checks."""
    lines = []
    missing: dict = {}
    for name, c in doc["clients"].items():
        if c["status"] == "not installed":
            missing.setdefault(c.get("install") or "", []).append(name)
    for hint, names in missing.items():
        lines.append(f"not installed: {', '.join(names)}" + (f" ({hint})" if hint else ""))
    for name, c in doc["clients"].items():
        if c["status"] == "unavailable":
            lines.append(f"unavailable: {name}: {c['reason']}")
        elif c["status"] == "rejected":
            lines.append(f"not measured: {name} " + " ".join(str(c["reason"]).split()))
    return lines


def print_report(doc: dict, tables: list, out: Optional[TextIO] = None,
                 features: Sequence[FeatureTable] = ()) -> None:
    """Header (target, machine, versions), every table, the summary, the feature modes'
    tables, the legend, the clients that did not run, notes."""
    out = sys.stdout if out is None else out
    m, v = doc["machine"], doc["versions"]
    out.write(f"fastpool bench — {doc['target']['description']}\n")
    out.write(f"  {m['cpu_model']} × {m['cpu_count']} cpus, Linux {m['kernel']}, "
              f"Python {v['python']}, {v['openssl_python']}"
              f"{', C engine ' + v['openssl_c_engine'] if v.get('openssl_c_engine') else ''}\n")
    out.write(f"  {doc['date']}, seed {doc['seed']}, {doc['command']}\n")
    loops = sorted({c.get('loop') for c in doc['clients'].values()
                    if c.get('loop') not in (None, '-')})
    if loops:
        out.write(f"  async clients on {', '.join(loops)}\n")
    out.write("\n")
    for t in tables:
        out.write(format_table(t) + "\n\n")
    line = summary_line(tables)
    if line:
        out.write(line + "\n")
    if features and line:
        out.write("\n")
    for f in features:
        out.write(f.format() + "\n\n")
    ran = {r["client"] for t in tables for r in t["rows"]}
    for name, text in LEGEND:
        if name in ran:
            out.write(f"{name}: {text}\n")
    if tables:
        out.write(COLUMNS_LEGEND + "\n")
    for line in clients_lines(doc):
        out.write(line + "\n")
    for note in doc.get("notes", []):
        out.write(f"note: {note}\n")
    parts = ", ".join(f"{k} {v:.0f} s" for k, v in (doc.get("mode_wall_s") or {}).items())
    out.write(f"wall time {doc['wall_time_s']:.1f} s" + (f" ({parts})" if parts else "") + "\n")
    out.flush()
