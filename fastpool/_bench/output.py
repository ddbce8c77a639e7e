"""What the terminal shows: progress while running (on a terminal only) and the tables."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

COLUMNS = ("p50", "p90", "p99", "p999", "max", "mean")
HEADERS = ("p50", "p90", "p99", "p99.9", "max", "mean", "req/s", "× floor", "× fastpool")


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


def _unit(table: dict) -> tuple:
    """(name, divisor): microseconds everywhere, so that tables compare at a glance."""
    return "µs", 1e3


def _fmt(value: Optional[float], div: float) -> str:
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


def _fmt_ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}"


def format_table(table: dict) -> str:
    unit, div = _unit(table)
    label_w = max([len(r["label"]) for r in table["rows"]] + [6]) + 1
    widths = (8, 8, 8, 8, 9, 8, 10, 8, 11)
    lines = [f"{table['title']} ({unit}; × = times slower than floor / "
             f"{table.get('reference') or 'fastpool'}, by "
             f"{'req/s' if table['metric'] == 'throughput' else 'p50'})"]
    head = f"  {'client':<{label_w}}" + "".join(f"{h:>{w}}" for h, w in zip(HEADERS, widths))
    lines.append(head)
    lines.append("  " + "-" * (len(head) - 2))
    for r in table["rows"]:
        s = r.get("summary")
        if r["status"] != "ok" or not s:
            why = r.get("error") or ""
            text = why if why.startswith(r["status"]) else f"{r['status']}: {why}"
            lines.append(f"  {r['label']:<{label_w}}  {text}"[:200])
            continue
        cells = [_fmt(s[c], div) for c in COLUMNS]
        cells += [_fmt_rate(r.get("req_per_s")), _fmt_ratio(r.get("x_floor")),
                  _fmt_ratio(r.get("x_fastpool"))]
        line = f"  {r['label']:<{label_w}}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths))
        if r.get("note"):
            line += f"  {r['note']}"
        lines.append(line)
    for note in table.get("notes") or ():
        lines.append(f"  · {note}")
    return "\n".join(lines)


def print_report(doc: dict, tables: list, out: Optional[TextIO] = None) -> None:
    """Header (target, machine, versions), then every table, then notes."""
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
    for note in doc.get("notes", []):
        out.write(f"note: {note}\n")
    out.write(f"wall time {doc['wall_time_s']:.1f} s\n")
    out.flush()
