"""Compare view: did the fix work, and what did it break — in concept terms.

``CompareView(before, after)`` shows the differential heatmap's change (after − before, each in
its own model's z-scores; blue: the mistakes of that predicted class now show the concept less
than its correct inputs do relative to before) and, for a clicked cell ``(class, concept)``, the
inputs of that class that flipped — fixed (wrong → right) and broken (right → wrong) — those
showing the concept most first, with both models' predictions and defect scores on each tile.

Output: ``cell`` (the clicked :class:`~.cell.Cell`), which the flipped-inputs grid follows.
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import traitlets

from ..charts import PICKED, heatmap_chart
from ..engine.tasks import MISCLASSIFICATION
from ..errors import SemheatError
from .cell import Cell, SelectsOnClick, cell_trait
from .grid import PAGE_SIZE, TileGrid
from .base import as_bundle, empty_chart


class FlippedGrid(TileGrid):
    """The flipped inputs of a comparison cell (the image grid's front end, two-model tiles)."""

    _sort_options = traitlets.List(traitlets.List(), default_value=[["concept",
                                                                    "selected concept"]]
                                   ).tag(sync=True)
    _empty_message = traitlets.Unicode("Click a cell to see the inputs that flipped.").tag(
        sync=True)


class CompareView(SelectsOnClick, widgets.VBox):
    """``CompareView(before, after)``: bundles (or paths) of the same inputs."""

    cell = cell_trait("output: the clicked cell (kind compare)")

    def __init__(self, before, after):
        self.comparison = as_bundle(before).compare(as_bundle(after))
        c = self.comparison
        r = c.to_json()
        self.summary = widgets.HTML(_summary(r))
        self.chart = empty_chart()
        self.chart.chart = heatmap_chart(
            c.delta, c.delta.columns, title="differential after − before (z-scores)")
        self.chart.selections.observe(self._on_click, names=["cell"])
        self.grid = FlippedGrid()
        self.grid.observe(self._draw, names=["page"])
        super().__init__([self.summary, widgets.HBox([self.chart, self.grid])])
        self.observe(lambda _c: self._draw(), names=["cell"])

    def select(self, row: str, concept: str) -> None:
        """Select (and outline) a cell, as a click does."""
        if row not in self.comparison.delta.rows or concept not in self.comparison.delta.columns:
            raise SemheatError(f"no cell ({row!r}, {concept!r})")
        self.grid.page = 0
        self.cell = Cell("compare", "natural", row, concept)
        setattr(self.chart.params, PICKED, self.cell.position)

    def flipped(self) -> np.ndarray:
        """Record indices behind the selected cell (all pages)."""
        return self.comparison.flipped(self.cell.row, self.cell.column)

    def _draw(self, _change=None) -> None:
        if not self.cell:
            return
        c, idx = self.comparison, self.flipped()
        page = idx[self.grid.page * PAGE_SIZE:(self.grid.page + 1) * PAGE_SIZE]
        classes, concept = c.before.classes, self.cell.column
        z = c.after.concept_column(concept)
        score = MISCLASSIFICATION.column("score")
        tiles = []
        for i in page:
            i = int(i)
            before, after = (int(b.column("prediction")[i]) for b in (c.before, c.after))
            label = int(c.before.column("label")[i])
            fixed = after == label
            tiles.append({
                "index": i, "id": int(c.before.column("id")[i]), "correct": fixed,
                "lines": [f"{classes[label]}: {classes[before]} → {classes[after]}",
                          f"{'fixed' if fixed else 'broken'} · {concept} {z[i]:.2f}",
                          f"defect {_num(c.before, score, i)} → {_num(c.after, score, i)}"]})
        with self.grid.hold_sync():
            self.grid._title = f"flipped · {self.cell.row} · {concept}"
            self.grid._total = len(idx)
            self.grid._tiles = tiles
            self.grid._images = [c.after.thumbnail_png(int(i)) for i in page]


def _num(bundle, column: str, i: int) -> str:
    return f"{float(bundle.column(column)[i]):.2f}" if bundle.has_column(column) else "–"


def _summary(r: dict) -> str:
    e = html.escape
    known = "; ".join(f"known {e(k)} faults {v.get('before')} → {v.get('after')}"
                      for k, v in r["known_faults"].items())
    return (f"<b>{e(r['before'])} → {e(r['after'])}</b>: accuracy {r['accuracy']['before']} → "
            f"{r['accuracy']['after']} on {r['n_inputs']} {e(r['split'])} inputs; "
            f"<b>{r['flipped']['fixed']}</b> fixed, <b>{r['flipped']['broken']}</b> broken"
            + (f"; {known}" if known else ""))
