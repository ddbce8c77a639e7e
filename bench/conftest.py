"""bench/: after pytest-benchmark's own table, one compact matrix of medians (ns per call):
a row per case, a column per engine or peer (what each includes: bench/test_micro_parse.py)."""

from __future__ import annotations

_COLUMNS = ["c", "c+headers", "python", "python+headers", "httptools", "h11"]


def _median_ns(bench) -> float | None:
    """None for a benchmark that recorded nothing (skipped after the fixture was set up)."""
    stats = getattr(bench, "stats", None)
    stats = getattr(stats, "stats", stats)  # Metadata.stats is a Stats; tolerate either
    if stats is None or not getattr(stats, "data", None):
        return None
    try:
        return stats.median * 1e9
    except Exception:  # a summary must never fail the run
        return None


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    benches = getattr(session, "benchmarks", None) or []
    if not benches or getattr(session, "disabled", False):
        return
    rows: dict[str, dict[str, float]] = {}
    for b in benches:
        info = getattr(b, "extra_info", None) or {}
        case, impl = info.get("case"), info.get("impl")
        ns = _median_ns(b)
        if case is None or impl is None or ns is None:
            continue
        rows.setdefault(case, {})[impl] = ns
    if not rows:
        return
    cols = [c for c in _COLUMNS if any(c in r for r in rows.values())]
    width = max(len(c) for c in rows) + 2
    w = terminalreporter.write_line
    terminalreporter.section("median ns per call (n/a: skipped or not applicable)")
    w("case".ljust(width) + "".join(f"{c:>15s}" for c in cols))
    for case in sorted(rows, key=_order):
        r = rows[case]
        w(case.ljust(width) + "".join(
            f"{r[c]:>15,.0f}" if c in r else f"{'n/a':>15s}" for c in cols))
    w("h11 rows are pedantic (one call per timed round): each includes the 'overhead' constant.")


def _order(case: str):
    kinds = ["parse ticker-137", "parse ticker-300", "parse book-2k", "parse chunked-64k",
             "build GET", "build POST", "overhead"]
    for i, k in enumerate(kinds):
        if case.startswith(k):
            return (i, case)
    return (len(kinds), case)
