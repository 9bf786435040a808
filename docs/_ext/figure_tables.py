"""``{figure-table}`` directive: a table of measured figures read from a JSON results file.

The figures pages never carry numbers typed by hand: each table names a JSON file kept in
``benchmarks/`` (written by the command that measured it) and the keys to show, with their labels
and goals. A missing file or key fails the build (warnings are errors), so a table cannot silently
go stale against a renamed figure.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from docutils.parsers.rst import Directive, directives

ROOT = Path(__file__).resolve().parents[2]


def _lookup(data, dotted: str):
    for part in dotted.split("."):
        if not isinstance(data, dict) or part not in data:
            raise KeyError(dotted)
        data = data[part]
    return data


def _fmt(value, digits: int) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if value is None:
        return "–"
    return str(value)


class FigureTable(Directive):
    """Rows ``key | label | goal`` (one per content line) rendered against a JSON file."""

    required_arguments = 1  # path of the JSON file, relative to the repository root
    has_content = True
    option_spec = {"digits": directives.nonnegative_int, "caption": directives.unchanged}

    def run(self):
        path = ROOT / self.arguments[0]
        digits = self.options.get("digits", 3)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise self.error(f"figure-table: cannot read {path}: {exc}") from None
        rows = []
        for line in self.content:
            if not line.strip():
                continue
            key, label, goal = ([c.strip() for c in line.split("|")] + ["", ""])[:3]
            try:
                value = _lookup(data, key)
            except KeyError:
                raise self.error(f"figure-table: {path.name} has no figure {key!r}") from None
            rows.append((label or key, _fmt(value, digits), goal))
        return [self._table(rows)]

    def _table(self, rows):
        table = nodes.table()
        if "caption" in self.options:
            table += nodes.title(text=self.options["caption"])
        group = nodes.tgroup(cols=3)
        table += group
        for width in (60, 15, 25):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        head += self._row(("figure", "measured", "goal"))
        body = nodes.tbody()
        group += body
        for row in rows:
            body += self._row(row)
        return table

    @staticmethod
    def _row(cells):
        row = nodes.row()
        for text in cells:
            entry = nodes.entry()
            entry += nodes.paragraph(text=text)
            row += entry
        return row


def setup(app):
    app.add_directive("figure-table", FigureTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
