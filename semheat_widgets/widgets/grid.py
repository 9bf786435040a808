"""Image grid: the inputs behind a heatmap cell, as thumbnails with their scores.

Input: ``cell`` — a :class:`~.cell.Cell` as :class:`HeatmapView` outputs it, or an error
slice's inputs (``None``: nothing to show). Output: ``selected`` — the record index of the
clicked tile (-1: none). Thumbnails travel as binary PNG buffers; every label is drawn as
text. With ``overlay`` the tiles show the cell's concept activation map over each input
instead.
"""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets

from ..engine.bundle import Selection
from ..engine.tasks import task_of
from .cell import cell_trait
from .base import JS, as_bundle

SORTS = {"concept": "selected concept", "defect": "defect score", "flag": "monitor verdict",
         "confidence": "confidence (low first)", "fault": "fault verdict",
         "label": "true label", "prediction": "predicted label", "id": "input id"}
ASCENDING = {"confidence", "label", "prediction", "id"}  # the rest: largest first
PAGE_SIZE = 24
EMPTY = "Click a heatmap cell to see its inputs."


class TileGrid(anywidget.AnyWidget):
    """A page of tiles, each a thumbnail with lines of text (the image grid's front end).

    Public: ``selected`` (output: the clicked tile's record index, -1: none), ``sort_by``,
    ``page``, ``page_size``. The ``_``-traits are what the browser draws, set by the view that
    fills the grid (the tiles, their PNG bytes, the title, the total, the sort menu)."""

    _esm = JS / "image_grid.js"
    _css = JS / "widgets.css"

    selected = traitlets.Int(-1).tag(sync=True)
    sort_by = traitlets.Unicode("concept").tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(PAGE_SIZE).tag(sync=True)
    _tiles = traitlets.List(traitlets.Dict()).tag(sync=True)
    _images = traitlets.List(traitlets.Bytes()).tag(sync=True)
    _title = traitlets.Unicode("").tag(sync=True)
    _empty_message = traitlets.Unicode(EMPTY).tag(sync=True)
    _total = traitlets.Int(0).tag(sync=True)
    _sort_options = traitlets.List(traitlets.List()).tag(sync=True)

    @property
    def tiles(self) -> list[dict]:
        """What the page shows, one dict per tile (read-only: the view that fills the grid
        sets it)."""
        return [dict(t) for t in self._tiles]

    @property
    def total(self) -> int:
        """How many inputs the grid pages through."""
        return self._total

    @property
    def title(self) -> str:
        return self._title


class ImageGrid(TileGrid):
    """``ImageGrid(bundle)``: a page of thumbnails with labels, concept score, the runtime
    monitor's defect score and verdict, and the fault verdict."""

    cell = cell_trait("input: the heatmap cell (or error slice) whose inputs to show")
    sort_by = traitlets.Enum(tuple(SORTS), default_value="concept").tag(sync=True)
    overlay = traitlets.Bool(False).tag(sync=True)  # tiles show the concept's activation map

    def __init__(self, bundle, classifier=None, **kwargs):
        super().__init__(**kwargs)
        self.bundle = as_bundle(bundle)
        self._classifier, self._given = None, classifier
        self._sort_options = [[k, v] for k, v in SORTS.items()]
        self.indices = np.zeros(0, dtype=np.int64)  # record indices on the current page
        self.observe(self._on_cell, names=["cell"])
        self.observe(self._refresh, names=["page", "sort_by", "overlay"])

    def _on_cell(self, change) -> None:
        cell = change["new"]
        with self.hold_trait_notifications():
            self.page, self.selected = 0, -1
        if not cell:
            self.indices = np.zeros(0, dtype=np.int64)
            with self.hold_sync():
                self._empty_message = EMPTY
                self._tiles, self._images, self._total, self._title = [], [], 0, ""
            return
        self._title = f"{cell.kind.replace('_', ' ')} · {cell.row} · {cell.column}"
        self._refresh()

    def _sort_key(self) -> str | None:
        """The record column (or concept) the current sort reads."""
        cell, b = self.cell, self.bundle
        if self.sort_by == "concept":
            return cell.column if cell.column in b.concept_names else None
        task = task_of(cell.perturbation)  # what the tiles of these inputs show
        key = {"defect": task.column("score"), "flag": task.column("flag")}.get(self.sort_by,
                                                                              self.sort_by)
        return key if b.has_column(key) else None

    def selection(self) -> Selection:
        """The full, sorted selection behind the current cell (all pages)."""
        c = self.cell
        if c.indices is not None:  # a set of inputs pulled in by name (an error slice)
            return _given(self.bundle, c.indices, self._sort_key(),
                          self.sort_by not in ASCENDING)
        return self.bundle.cell_query(c.kind, c.row, self._sort_key(), perturbation=c.perturbation,
                                      descending=self.sort_by not in ASCENDING)

    def _refresh(self, _change=None) -> None:
        if not self.cell:
            return
        sel = self.selection()
        start = self.page * self.page_size
        idx = sel.indices[start:start + self.page_size]
        self.indices = idx
        b, concept = self.bundle, self.cell.column
        task = task_of(self.cell.perturbation)
        scores = b.concept_column(concept)[idx] if concept in b.concept_names else None
        rows = b.rows(idx, ["id", "label", "prediction", "correct", "fault", "perturbation",
                            task.column("score"), task.column("flag")])
        tiles = [{"index": int(i), "id": int(r["id"]), "label": b.classes[r["label"]],
                  "prediction": b.classes[r["prediction"]], "correct": bool(r["correct"]),
                  "concept": concept, "perturbation": r.get("perturbation", ""),
                  "score": None if scores is None else float(scores[n]),
                  "defect": _num(r.get(task.column("score"))),
                  "flagged": bool(r.get(task.column("flag"))), "fault": r.get("fault") or ""}
                 for n, (i, r) in enumerate(zip(idx, rows))]
        with self.hold_sync():
            self._total = sel.total
            if sel.total == 0:
                self._empty_message = "No inputs in this cell."
            self._tiles, self._images = tiles, self._pictures(idx, concept)

    def _pictures(self, idx, concept: str) -> list[bytes]:
        b = self.bundle
        if self.overlay and concept in b.concept_names:
            from ..engine.concepts.cam import map_pngs, open_classifier  # (torch: only for maps)

            if self._classifier is None:
                self._classifier = open_classifier(b, self._given)
            if self._classifier is not None:
                return map_pngs(b, self._classifier, idx, concept)
        return b.thumbnail_pngs(idx)


def _given(bundle, indices, key, descending: bool) -> Selection:
    """A given set of records as a selection, sorted like a cell's."""
    idx = np.asarray(indices, dtype=np.int64)
    if key is not None and len(idx):
        values = (bundle.concept_column(key)[idx] if key in bundle.concept_names
                  else np.asarray(bundle.column(key))[idx])
        if values.dtype.kind not in "OUSb":
            order = np.argsort(-values if descending else values, kind="stable")
            idx = idx[order]
    return Selection(idx, len(idx))


def _num(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)
