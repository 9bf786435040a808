"""The semantic heatmap as an Altair ``JupyterChart``: switchable kind, clickable cells.

A click selects a (class, concept) cell and exposes it as the ``cell`` trait. Altair facts this
relies on (Altair 6): selections are observed on ``chart.selections`` by name; assigning a new
chart replaces that object, so the observer is re-attached after every redraw.
"""

from __future__ import annotations

import altair as alt
import ipywidgets as widgets
import traitlets

from ..charts import heatmap_chart
from ..engine.bundle import Bundle
from ..engine.heatmaps import Heatmap

KIND_CHOICES = (
    ("differential: correct − incorrect", "differential"),
    ("ground truth (by true label)", "ground_truth"),
    ("output label (by prediction)", "output"),
    ("correct (by prediction)", "correct"),
    ("incorrect (by prediction)", "incorrect"),
    ("misclassified from (by true label)", "misclassified_from"),
    ("ground truth − output", "gt_minus_output"),
)
RECORD_LABELS = {"natural": "natural inputs", "fgsm": "FGSM adversarial", "pgd": "PGD adversarial"}
# SVG keeps every cell a DOM element (with an aria-label), which tests and screen readers use.
EMBED_OPTIONS = {"actions": False, "renderer": "svg"}

_offline_enabled = False


def enable_offline() -> None:
    """Serve the Vega libraries from vl-convert instead of a CDN (once per kernel)."""
    global _offline_enabled
    if not _offline_enabled:
        alt.JupyterChart.enable_offline()
        _offline_enabled = True


class HeatmapView(widgets.VBox):
    """Controls (kind, records, standardised, binarized) above a clickable heatmap."""

    kind = traitlets.Unicode("differential")
    records = traitlets.Unicode("natural")
    standardized = traitlets.Bool(True)
    top_k = traitlets.Int(0)  # binarize to the top-k concepts per row (0: off)
    columns = traitlets.List(traitlets.Unicode())
    cell = traitlets.Dict()  # {"row": class, "column": concept} of the clicked cell

    def __init__(self, bundle: Bundle, kind: str = "differential",
                 columns: list[str] | None = None):
        enable_offline()
        self.bundle = bundle
        present = set(bundle.codes("kind")[1])
        record_choices = [(RECORD_LABELS.get(k, k), k) for k in ("natural", "fgsm", "pgd")
                          if k in present]
        self.kind_box = widgets.Dropdown(options=KIND_CHOICES, value=kind, description="heatmap")
        self.records_box = widgets.Dropdown(options=record_choices, value="natural",
                                            description="inputs")
        self.std_box = widgets.Checkbox(value=True, description="standardised (z)", indent=False)
        self.topk_box = widgets.Dropdown(options=[("off", 0)] + [(f"top {k}", k)
                                                                   for k in (1, 2, 3, 5)],
                                         value=0, description="binarize")
        self.heatmap: Heatmap | None = None
        self._heatmap_key = None  # what self.heatmap was computed for
        self.chart = alt.JupyterChart(alt.Chart(alt.Data(values=[])).mark_rect(),
                                      embed_options=EMBED_OPTIONS)
        controls = widgets.HBox([self.kind_box, self.records_box, self.topk_box, self.std_box])
        super().__init__([controls, self.chart])
        with self.hold_trait_notifications():
            self.kind = kind
            self.columns = list(columns or bundle.concept_names)
        for box, name in ((self.kind_box, "kind"), (self.records_box, "records"),
                          (self.std_box, "standardized"), (self.topk_box, "top_k")):
            widgets.link((box, "value"), (self, name))
        self.observe(self.redraw, names=["kind", "records", "standardized", "top_k", "columns"])
        self.redraw()

    def redraw(self, _change=None) -> None:
        # Hiding or moving a concept only redraws; the statistics are recomputed when the
        # heatmap itself changes (kind, inputs, scaling, binarization, a new concept).
        key = (self.kind, self.records, self.standardized, self.top_k,
               len(self.bundle.concept_names))
        if key != self._heatmap_key:
            hm = self.bundle.heatmap(self.kind, records=self.records,
                                     standardized=self.standardized)
            if self.top_k:
                hm = hm.binarize(top_k=min(self.top_k, hm.shape[1]))
            self.heatmap, self._heatmap_key = hm, key
        hm = self.heatmap
        n = f"{int(hm.counts.sum())} inputs"
        if hm.counts_other is not None:
            n = f"{int(hm.counts.sum())} vs {int(hm.counts_other.sum())} inputs"
        title = f"{dict((v, k) for k, v in KIND_CHOICES)[self.kind]} · " \
                f"{RECORD_LABELS.get(self.records, self.records)} · {n}"
        self.chart.chart = heatmap_chart(hm, self.columns, title=title)
        # A new chart means a new selections object: observe it again.
        self.chart.selections.observe(self._on_select, names=["cell"])
        self.cell = {}

    def _on_select(self, change) -> None:
        points = change["new"].value
        self.cell = dict(points[0]) if points else {}
