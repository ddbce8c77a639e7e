"""``--plot FILE.png``: latency on log axes, so that the tail (p99, p99.9) is as visible as
the median (matplotlib, optional).

Top: the sequential latency table as a CCDF per client (the fraction of requests slower than
x, both axes logarithmic: p50, p99 and p99.9 are the crossings of the dotted lines at 0.5,
0.01 and 0.001). Bottom, when the sporadic mode ran: each client's p50 against the idle gap
before the request, from back to back ("warm") to the longest gap (and the p90 of the floor
and of fastpool, dotted). Without a latency table, the top panel shows the first table that
has samples.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, cast

MISSING = ("--plot needs matplotlib, which is not installed: "
           "pip install 'fastpool[plot]' (or pip install matplotlib)")

#: Rows drawn thick: the floor and the reference.
_BOLD = ("floor", "fastpool")


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
        if t["mode"] != "sporadic" and any(len(r["samples"]) for r in t["rows"]):
            return t
    return None


def _style(names: list) -> dict:
    """name -> (color, linestyle, width): distinct for up to 40 clients."""
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    cmap = plt.get_cmap("tab20")
    assert isinstance(cmap, ListedColormap)  # tab20 is a list of 20 colors
    # matplotlib types .colors as any array-like; for tab20 it is a tuple of RGB triples
    tab = list(cast(Sequence[tuple[float, float, float]], cmap.colors))
    # without the reds and the greys, which would pass for fastpool's and the floor's lines
    tab = [c for i, c in enumerate(tab) if i not in (6, 7, 14, 15)]
    colors = tab[0::2] + tab[1::2]     # the strong shades first
    out: dict[str, tuple[Any, str, float]] = {}   # a color name or an RGB triple
    i = 0
    for name in names:
        if name == "floor":
            out[name] = ("black", "-", 2.6)
        elif name == "fastpool":
            out[name] = ("#d62728", "-", 2.6)
        else:
            out[name] = (colors[i % len(colors)], ("-", "--", "-.")[i // len(colors) % 3], 1.4)
            i += 1
    return out


def _ccdf(ax, table: dict, style: dict) -> int:
    plotted = 0
    rows = [r for r in table["rows"] if r["status"] == "ok" and len(r["samples"])]
    rows.sort(key=lambda r: r["summary"]["p50"])
    low = 1.0
    for row in rows:
        xs = sorted(v / 1e3 for v in row["samples"])
        n = len(xs)
        ys = [(n - k) / n for k in range(n)]   # fraction at or above each sample
        low = min(low, 1 / n)
        color, ls, width = style[row["label"]]
        ax.step(xs, ys, where="post", color=color, linestyle=ls, linewidth=width,
                label=f"{row['label']}  p50 {row['summary']['p50'] / 1e3:,.1f}  "
                      f"p99.9 {row['summary']['p999'] / 1e3:,.0f} µs",
                zorder=3 if row["client"] in _BOLD else 2)
        plotted += 1
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(max(low, 1e-5) * 0.8, 1.05)
    for q, name in ((0.5, "p50"), (0.01, "p99"), (0.001, "p99.9")):
        if q >= low:
            ax.axhline(q, color="grey", linestyle=":", linewidth=0.8)
            ax.text(1.0, q, f" {name}", transform=ax.get_yaxis_transform(), va="center",
                    fontsize=8, color="grey")
    ax.set_xlabel("latency (µs, log scale)")
    ax.set_ylabel("fraction of requests slower")
    ax.set_title(f"{table['title']}: CCDF", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.06, 1.0), frameon=False)
    return plotted


def _sporadic(ax, tables: list, warm: Optional[dict], style: dict) -> bool:
    gap_tables = sorted((t for t in tables if t["mode"] == "sporadic"),
                        key=lambda t: t["setting"])
    if not gap_tables:
        return False
    labels = ["warm"] + [t["title"].rsplit("after ", 1)[-1].replace(" idle", "")
                         for t in gap_tables]
    names = []
    for t in gap_tables:
        for r in t["rows"]:
            if r["status"] == "ok" and r["label"] not in names:
                names.append(r["label"])
    warm_rows = {r["label"]: r for r in (warm or {}).get("rows", []) if r["status"] == "ok"}

    def last_p50(name):
        r = next((r for r in gap_tables[-1]["rows"] if r["label"] == name), None)
        return r["summary"]["p50"] if r is not None and r.get("summary") else float("inf")

    for name in sorted(names, key=last_p50):
        color, ls, width = style.get(name, ("grey", "-", 1.0))
        p50, p90, xs = [], [], []
        w = warm_rows.get(name)
        if w is not None:
            xs.append(0)
            p50.append(w["summary"]["p50"] / 1e3)
            p90.append(w["summary"]["p90"] / 1e3)
        for i, t in enumerate(gap_tables, start=1):
            r = next((r for r in t["rows"] if r["label"] == name), None)
            if r is not None and r["status"] == "ok" and r.get("summary"):
                xs.append(i)
                p50.append(r["summary"]["p50"] / 1e3)
                p90.append(r["summary"]["p90"] / 1e3)
        ax.plot(xs, p50, marker="o", markersize=3, color=color, linestyle=ls, linewidth=width,
                label=name, zorder=3 if name in _BOLD else 2)
        if name in _BOLD:
            ax.plot(xs, p90, color=color, linestyle=":", linewidth=1.2, zorder=3)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels)
    ax.set_xlabel("idle gap before the request (warm: back to back, the latency table)")
    ax.set_ylabel("latency (µs, log scale)")
    ax.set_title("sporadic: p50 after each idle gap (floor and fastpool: p90 dotted)",
                 fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.06, 1.0), frameon=False)
    return True


def write(tables: list, path: str, subtitle: str) -> bool:
    """Writes the figure; False when no table has samples to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = _pick(tables)
    has_sporadic = any(t["mode"] == "sporadic" for t in tables)
    if table is None and not has_sporadic:
        return False
    panels = (table is not None) + has_sporadic
    fig, axes = plt.subplots(panels, 1, figsize=(12, 5.2 * panels), dpi=110, squeeze=False)
    names = []
    for t in tables:
        for r in t["rows"]:
            if r["label"] not in names:
                names.append(r["label"])
    style = _style(names)
    i = 0
    plotted = False
    if table is not None:
        plotted = _ccdf(axes[i][0], table, style) > 0
        i += 1
    if has_sporadic:
        warm = table if table is not None and table["mode"] == "latency" else None
        plotted = _sporadic(axes[i][0], tables, warm, style) or plotted
    if not plotted:
        plt.close(fig)
        return False
    fig.suptitle(f"fastpool bench — {subtitle}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
