"""Image grid: the inputs behind a heatmap cell, as thumbnails with their scores."""

from __future__ import annotations

import anywidget
import numpy as np
import traitlets

from ..engine.bundle import Bundle, Selection
from ._assets import asset

SORTS = (("concept", "selected concept"), ("misclf_score", "defect score"),
         ("misclf_flag", "monitor verdict"), ("confidence", "confidence (low first)"),
         ("fault", "fault verdict"), ("label", "true label"), ("prediction", "predicted label"),
         ("id", "input id"))
ASCENDING = {"confidence", "label", "prediction", "id"}  # the rest: largest first


class ImageGrid(anywidget.AnyWidget):
    """A page of thumbnails (sent as binary PNG buffers) with labels, concept score, runtime
    defect score and verdict, and fault verdict. ``selected`` holds the clicked record index."""

    _esm = asset("image_grid.js")
    _css = asset("widgets.css")

    tiles = traitlets.List(traitlets.Dict()).tag(sync=True)
    images = traitlets.List(traitlets.Bytes()).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    empty_message = traitlets.Unicode("Click a heatmap cell to see its inputs.").tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(24).tag(sync=True)
    sort_by = traitlets.Unicode("concept").tag(sync=True)
    sort_options = traitlets.List(traitlets.List()).tag(sync=True)
    selected = traitlets.Int(-1).tag(sync=True)

    def __init__(self, bundle: Bundle | None = None, **kwargs):
        super().__init__(**kwargs)
        self.sort_options = [list(s) for s in SORTS]
        self.bundle = bundle
        self._query: dict | None = None  # the filters of the cell being shown
        self.indices = np.zeros(0, dtype=np.int64)  # record indices on the current page
        self.observe(self._refresh, names=["page", "sort_by"])

    def show_cell(self, bundle: Bundle, heatmap_kind: str, row: str, concept: str | None,
                  records: str | None = "natural", title: str | None = None) -> None:
        """Show the inputs behind one heatmap cell (first page)."""
        self.bundle = bundle
        self._query = {"heatmap_kind": heatmap_kind, "row": row, "concept": concept,
                       "records": records}
        self.title = title or f"{heatmap_kind.replace('_', ' ')} · {row} · {concept}"
        with self.hold_trait_notifications():
            self.page = 0
            self.selected = -1
        self._refresh()

    def clear(self, message: str | None = None) -> None:
        self._query = None
        self.indices = np.zeros(0, dtype=np.int64)
        with self.hold_sync():
            if message:
                self.empty_message = message
            self.tiles, self.images, self.total, self.title = [], [], 0, ""

    def selection(self) -> Selection:
        """The full, sorted selection behind the current cell (all pages)."""
        q, b = self._query, self.bundle
        key = q["concept"] if self.sort_by == "concept" else self.sort_by
        if q["records"] != "natural" and key in ("misclf_score", "misclf_flag"):
            key = "adv_" + key.removeprefix("misclf_")  # what the tiles of attacked inputs show
        if key is not None and key not in b.concept_names and not b.has_column(key):
            key = None
        return b.cell_query(q["heatmap_kind"], q["row"], key, records=q["records"],
                            descending=self.sort_by not in ASCENDING)

    def _refresh(self, _change=None) -> None:
        if self._query is None or self.bundle is None:
            return
        sel = self.selection()
        start = self.page * self.page_size
        idx = sel.indices[start:start + self.page_size]
        self.indices = idx
        b = self.bundle
        concept = self._query["concept"]
        scores = b.concept_column(concept)[idx] if concept in b.concept_names else None
        classes = b.classes
        rows = b.rows(idx, ["id", "label", "prediction", "correct", "fault", "kind",
                            "misclf_score", "misclf_flag", "adv_score", "adv_flag"])
        tiles = []
        for n, (i, r) in enumerate(zip(idx, rows)):
            adversarial = r.get("kind") not in (None, "natural")
            tiles.append({
                "index": int(i), "id": int(r["id"]), "label": classes[r["label"]],
                "prediction": classes[r["prediction"]], "correct": bool(r["correct"]),
                "concept": concept or "", "kind": r.get("kind", ""),
                "score": None if scores is None else float(scores[n]),
                "defect": _num(r.get("adv_score" if adversarial else "misclf_score")),
                "flagged": bool(r.get("adv_flag" if adversarial else "misclf_flag")),
                "fault": r.get("fault") or "",
            })
        images = [b.thumbnail_png(int(i)) for i in idx]
        with self.hold_sync():
            self.total = sel.total
            self.empty_message = "No inputs in this cell." if sel.total == 0 else \
                self.empty_message
            self.tiles, self.images = tiles, images


def _num(x):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)
