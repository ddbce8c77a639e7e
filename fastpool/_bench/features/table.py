"""FeatureTable: what a feature mode measured, as one titled table: a row per client (the
first cell its label), numbers below 10 printed with two decimals, others with one, notes
under it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Union

Cell = Union[str, int, float, None]


@dataclass
class FeatureTable:
    mode: str                     #: "pipeline", "hedge", "choice", "busy-poll"
    title: str                    #: one line: what was measured, on what, how often
    columns: list[str]            #: header labels; the first is the client's
    rows: list[list[Cell]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Cell) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{self.mode}: a row of {len(cells)} cells for "
                             f"{len(self.columns)} columns")
        self.rows.append(list(cells))

    def format(self) -> str:
        """The table as text: the title, the header, one line per row, the notes."""
        text = [[_cell(c) for c in row] for row in self.rows]
        widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(self.columns)]
        lines = [self.title]
        lines.append("  ".join(h.ljust(widths[0]) if i == 0 else h.rjust(widths[i])
                               for i, h in enumerate(self.columns)))
        for r in text:
            lines.append("  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i])
                                   for i, c in enumerate(r)))
        lines.extend(self.notes)
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "title": self.title, "columns": list(self.columns),
                "rows": [list(r) for r in self.rows], "notes": list(self.notes)}

    def column(self, name: str) -> list[Cell]:
        """The cells of one column (tests, and the summary of a mode)."""
        i = self.columns.index(name)
        return [r[i] for r in self.rows]

    def cell(self, client: str, name: str) -> Optional[Cell]:
        i = self.columns.index(name)
        for r in self.rows:
            if r[0] == client:
                return r[i]
        return None


def _cell(value: Cell) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        if abs(value) < 10:  # ratios and small times: 1.23, not 1.2
            return f"{value:.2f}"
        return f"{value:,.1f}" if abs(value) < 1e6 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)
