"""``--plot FILE.png``: latency CDFs per client on a log time axis (matplotlib, optional)."""

from __future__ import annotations

from typing import Optional

MISSING = ("--plot needs matplotlib, which is not installed: "
           "pip install 'fastpool[plot]' (or pip install matplotlib)")


def available() -> Optional[str]:
    """None when matplotlib can be used, else the message to show."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return MISSING
    return None


def _pick(tables: list) -> Optional[dict]:
    """The sequential latency table, else the first table with samples."""
    for t in tables:
        if t["mode"] == "latency":
            return t
    for t in tables:
        if any(len(r["samples"]) for r in t["rows"]):
            return t
    return None


def write(tables: list, path: str, subtitle: str) -> bool:
    """Writes the CDF figure; False when no table has samples to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = _pick(tables)
    if table is None:
        return False
    fig, ax = plt.subplots(figsize=(10, 6), dpi=120)
    colors = plt.get_cmap("tab20").colors
    styles = ["-", "--", "-.", ":"]
    plotted = 0
    for i, row in enumerate(table["rows"]):
        if row["status"] != "ok" or not len(row["samples"]):
            continue
        xs = sorted(v / 1e3 for v in row["samples"])
        n = len(xs)
        ys = [(k + 1) / n for k in range(n)]
        width = 2.4 if row["client"] in ("fastpool", "floor") else 1.3
        ax.plot(xs, ys, styles[(i // len(colors)) % len(styles)], linewidth=width,
                color=colors[(2 * i) % len(colors) + (i * 2 // len(colors)) % 2],
                label=f"{row['label']}  (p50 {row['summary']['p50'] / 1e3:.1f} µs)")
        plotted += 1
    if not plotted:
        plt.close(fig)
        return False
    ax.set_xscale("log")
    ax.set_xlabel("latency (µs, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    ax.set_ylim(0, 1.0)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(f"fastpool bench: {table['title']}\n{subtitle}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
