"""Small tables that display themselves in a notebook (HTML) and in a terminal (text).

The notebooks show heatmap rows, grid tiles and detector figures as tables; this keeps them
free of any dependency the package does not have. Every cell is escaped: names are data.
"""

from __future__ import annotations

import html
import math
from typing import Sequence


def _fmt(value, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


class Table:
    """Rows of dicts with named columns, e.g. ``Table([{"detector": "msp", "auroc": 0.94}])``.

    ``columns`` picks and orders the columns (default: the keys of the first row); ``index``
    names the column shown first, in bold. ``rows`` are available as :attr:`rows`.
    """

    def __init__(self, rows: Sequence[dict], columns: Sequence[str] | None = None,
                 digits: int = 3, title: str | None = None):
        self.rows = [dict(r) for r in rows]
        self.columns = list(columns) if columns is not None else (
            list(self.rows[0]) if self.rows else [])
        self.digits, self.title = digits, title

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list:
        return [r.get(name) for r in self.rows]

    def _cells(self) -> list[list[str]]:
        return [[_fmt(r.get(c), self.digits) for c in self.columns] for r in self.rows]

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(str(c))}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in row) + "</tr>"
                       for row in self._cells())
        title = f"<caption>{e(self.title)}</caption>" if self.title else ""
        return f"<table class='semheat-table'>{title}<tr>{head}</tr>{body}</table>"

    def __repr__(self) -> str:
        cells = [list(map(str, self.columns))] + self._cells()
        widths = [max(len(row[j]) for row in cells) for j in range(len(self.columns))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        return "\n".join(([self.title] if self.title else []) + lines)
