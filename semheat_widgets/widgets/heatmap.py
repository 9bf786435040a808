"""The semantic heatmap as an Altair ``JupyterChart``: switchable kind, clickable cells.

Input: ``columns`` (the concepts shown, in order). Output: ``cell`` — the selected
:class:`~.cell.Cell` (kind, perturbation, row, column; ``None``: none), set by a click in the
browser, by the keyboard (a focusable strip under the chart: arrows move, Enter opens) or by
:meth:`select`. The selection
sticks when the heatmap is redrawn (another kind, other inputs, binarized, concepts hidden or
moved) as long as its cell exists; when it cannot, a line says why.

Altair facts this relies on (Altair 6): a click reaches Python through the point selection
``cell``, observed on ``chart.selections`` by name; assigning a new chart replaces that object,
so the observer is re-attached after every redraw. A selection cannot be set from Python, so
the outlined cell is a chart parameter (``picked``) that Python sets.
"""

from __future__ import annotations

import html

import anywidget
import ipywidgets as widgets
import traitlets

from ..arguments import choice
from ..charts import PICKED, heatmap_chart
from ..engine.heatmaps import KINDS, Heatmap
from ..engine.tasks import METHODS, NATURAL
from ..errors import SemheatError
from .cell import Cell, SelectsOnClick, cell_trait
from .base import JS, as_bundle, empty_chart

KIND_LABELS = {
    "differential": "differential: correct − incorrect",
    "ground_truth": "ground truth (by true label)",
    "output": "output label (by prediction)",
    "correct": "correct (by prediction)",
    "incorrect": "incorrect (by prediction)",
    "misclassified_from": "misclassified from (by true label)",
    "gt_minus_output": "ground truth − output",
}
PERTURBATION_LABELS = {NATURAL: "natural inputs", "fgsm": "FGSM adversarial",
                       "pgd": "PGD adversarial"}
TOP_K_CHOICES = (1, 2, 3, 5)


class CellKeys(anywidget.AnyWidget):
    """The keyboard strip of a heatmap: says where the cursor is, sends the keys pressed."""

    _esm = JS / "cell_keys.js"
    _css = JS / "widgets.css"
    _label = traitlets.Unicode("").tag(sync=True)  # where the cursor is, in words
    # keys arrive as a synced request with a nonce, as the concept picker's do
    _request = traitlets.Dict().tag(sync=True)


class HeatmapView(SelectsOnClick, widgets.VBox):
    """``HeatmapView(bundle, kind="differential", perturbation="natural")``: controls above a
    clickable heatmap."""

    kind = traitlets.Enum(KINDS, default_value="differential")
    perturbation = traitlets.Enum((NATURAL, *METHODS), default_value=NATURAL)
    standardized = traitlets.Bool(True)
    top_k = traitlets.Int(0)  # binarize to the top-k concepts per row (0: off)
    columns = traitlets.List(traitlets.Unicode())  # input: the concepts shown, in order
    cell = cell_trait("output: the selected cell (None when none)")

    def __init__(self, bundle, *, kind: str = "differential", perturbation: str = NATURAL,
                 columns: list[str] | None = None):
        self.bundle = as_bundle(bundle)
        present = set(self.bundle.codes("perturbation")[1])
        choice(kind, KINDS, "heatmap kind")
        choice(perturbation, [k for k in (NATURAL, *METHODS) if k in present], "perturbation")
        if columns is not None:
            for c in columns:
                choice(c, self.bundle.concept_names, "concept (columns)")
        self.kind_box = widgets.Dropdown(options=[(v, k) for k, v in KIND_LABELS.items()],
                                         value=kind, description="heatmap")
        self.perturbation_box = widgets.Dropdown(
            options=[(PERTURBATION_LABELS.get(k, k), k) for k in (NATURAL, *METHODS)
                     if k in present],
            value=perturbation, description="inputs")
        self.std_box = widgets.Checkbox(value=True, description="standardised (z)", indent=False)
        self.topk_box = widgets.Dropdown(options=[("off", 0)] + [(f"top {k}", k)
                                                                   for k in TOP_K_CHOICES],
                                         value=0, description="binarize")
        self.heatmap: Heatmap | None = None
        self._heatmap_key = None  # what self.heatmap was computed for
        self.chart = empty_chart()
        self.key_strip = CellKeys()
        self.status = widgets.HTML()
        self.cursor: tuple[int, int] | None = None  # (row, column) index of the keyboard cursor
        super().__init__([widgets.HBox([self.kind_box, self.perturbation_box, self.topk_box,
                                        self.std_box]), self.chart, self.key_strip, self.status])
        self.key_strip.observe(self._on_key, names=["_request"])
        with self.hold_trait_notifications():
            self.kind, self.perturbation = kind, perturbation
            self.columns = list(columns or self.bundle.concept_names)
        for box, name in ((self.kind_box, "kind"), (self.perturbation_box, "perturbation"),
                          (self.std_box, "standardized"), (self.topk_box, "top_k")):
            widgets.link((box, "value"), (self, name))
        self.observe(self.redraw,
                     names=["kind", "perturbation", "standardized", "top_k", "columns"])
        self.redraw()

    @traitlets.validate("perturbation")
    def _present(self, proposal):
        if hasattr(self, "bundle") and proposal["value"] not in self.bundle.codes(
                "perturbation")[1]:
            raise traitlets.TraitError(f"this bundle has no {proposal['value']!r} inputs")
        return proposal["value"]

    def _compute(self) -> Heatmap:
        # Hiding or moving a concept only redraws; the statistics are recomputed when the
        # heatmap itself changes (kind, inputs, scaling, binarization, a new concept).
        key = (self.kind, self.perturbation, self.standardized, self.top_k,
               len(self.bundle.concept_names))
        if key != self._heatmap_key:
            hm = self.bundle.heatmap(self.kind, perturbation=self.perturbation,
                                     standardized=self.standardized)
            if self.top_k:
                hm = hm.binarize(top_k=min(self.top_k, hm.shape[1]))
            self.heatmap, self._heatmap_key = hm, key
        return self.heatmap

    def redraw(self, _change=None) -> None:
        hm = self._compute()
        n = f"{int(hm.counts.sum())} inputs"
        if hm.counts_other is not None:
            n = f"{int(hm.counts.sum())} vs {int(hm.counts_other.sum())} inputs"
        inputs = PERTURBATION_LABELS.get(self.perturbation, self.perturbation)
        title = f"{KIND_LABELS[self.kind]} · {inputs} · {n}"
        keep = self._still_there(self.cell)
        if self.cell and not keep:
            self.status.value = (f"<small>selection cleared: concept "
                                 f"<b>{html.escape(self.cell.column)}</b> is no longer "
                                 f"shown</small>")
        elif keep:
            self.status.value = ""
        self.chart.chart = heatmap_chart(hm, self.columns, title=title,
                                         picked=keep.position if keep else None)
        # A new chart means a new selections object: observe it again.
        self.chart.selections.observe(self._on_click, names=["cell"])
        self.cell = keep
        self._sync_cursor()

    def _still_there(self, cell: Cell | None) -> Cell | None:
        """The selected cell moved to the current kind and inputs, or None when it no longer
        exists (its concept hidden or gone)."""
        if cell is None or cell.column not in self.columns or \
                cell.row not in self.bundle.classes:
            return None
        return Cell(self.kind, self.perturbation, cell.row, cell.column)

    def select(self, row: str, column: str) -> None:
        """Select (and outline) the cell ``(row, column)``, as a click does."""
        if row not in self.bundle.classes or column not in self.columns:
            raise SemheatError(f"no heatmap cell ({row!r}, {column!r}) in view")
        self.cell = Cell(self.kind, self.perturbation, row, column)
        setattr(self.chart.params, PICKED, self.cell.position)
        self.status.value = ""
        self._sync_cursor()

    # -- keyboard --------------------------------------------------------------------------
    def _sync_cursor(self) -> None:
        """The cursor follows the selection (or stays where it was, within bounds)."""
        if self.cell:
            self.cursor = (self.bundle.classes.index(self.cell.row),
                           self.columns.index(self.cell.column))
        elif self.cursor is not None:
            self.cursor = (min(self.cursor[0], len(self.bundle.classes) - 1),
                           min(self.cursor[1], max(len(self.columns) - 1, 0)))
        self._say()

    def _say(self) -> None:
        if self.cursor is None or not self.columns:
            self.key_strip._label = "no cell selected"
            return
        from ..charts import cell_meaning

        i, j = self.cursor
        row, column = self.bundle.classes[i], self.columns[j]
        hm = self.heatmap
        k = hm.columns.index(column)
        value = hm.values[i, k]
        other = None if hm.counts_other is None else int(hm.counts_other[i])
        meaning = cell_meaning(hm.kind, row, column, None if value != value else float(value),
                               int(hm.counts[i]), other)
        opened = " (open)" if self.cell and self.cell.position == {"row": row,
                                                                   "column": column} else ""
        self.key_strip._label = f"{row} · {column}{opened}: {meaning}"

    def _on_key(self, change) -> None:
        """Apply the keys of the browser's log that are new (see ``cell_keys.js``)."""
        request = change["new"] or {}
        keys = request.get("keys")
        if keys is None:  # one key, as Python callers (and the tests) send it
            self._apply_key(request)
            return
        session = request.get("session")
        if session != self._key_session:
            self._key_session, self._key_seen = session, 0
        for key in keys:
            if key.get("seq", 0) > self._key_seen:
                self._key_seen = key["seq"]
                self._apply_key(key)

    _key_session, _key_seen = None, 0

    def _apply_key(self, request: dict) -> None:
        n_rows, n_cols = len(self.bundle.classes), len(self.columns)
        if not n_cols:
            return
        if request.get("clear"):
            self.cell, self.cursor = None, None
            setattr(self.chart.params, PICKED, None)
            self._say()
            return
        if self.cursor is None:
            self.cursor = (0, 0)
        elif "move" in request:
            di, dj = request["move"]
            self.cursor = (min(max(self.cursor[0] + di, 0), n_rows - 1),
                           min(max(self.cursor[1] + dj, 0), n_cols - 1))
        i, j = self.cursor
        if request.get("open"):
            self.select(self.bundle.classes[i], self.columns[j])
            return
        setattr(self.chart.params, PICKED, {"row": self.bundle.classes[i],
                                            "column": self.columns[j]})
        self._say()

