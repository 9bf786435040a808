"""The explorer: concept picker, heatmap, image grid and detail view, linked.

Click a heatmap cell → the grid shows the inputs behind it (for a differential cell: the
misclassified inputs of that predicted class, most extreme in that concept first) with their
runtime scores; click a tile → the detail view explains that input; type a concept → it becomes
a new heatmap column at once. The links are one-way trait links (``dlink``) from each view's
output to the next one's input::

    picker.visible ──> heatmap.columns, detail.columns
    heatmap.cell ────> grid.cell
    grid.selected ───> detail.index
    heatmap.cell ────> discovery.cell  (suggested concepts; a click adds a column)
    discovery.pulled ─> grid.cell      (an error slice's inputs)
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from .detail import DetailView
from .discovery_panel import DiscoveryPanel
from .grid import ImageGrid
from .heatmap import HeatmapView
from .picker import ConceptPicker
from .base import as_bundle


class Explorer(widgets.VBox):
    """``Explorer(bundle_or_path, vlm=None, classifier=None, vocabulary=None)`` (the phrases
    concept discovery suggests from; default: the VLM's); ``Explorer.toy()`` for the
    bundled toy world. The VLM (new concepts) and the classifier (activation maps) are re-opened
    from the bundle's model ids when not given."""

    def __init__(self, bundle, *, vlm=None, classifier=None, kind: str = "differential",
                 vocabulary=None):
        self.bundle = b = as_bundle(bundle)
        self.picker = ConceptPicker(b, vlm=vlm)
        self.heatmap = HeatmapView(b, kind=kind)
        self.grid = ImageGrid(b, classifier=classifier,
                              layout=widgets.Layout(flex="1 1 55%", min_width="420px"))
        self.detail = DetailView(b, classifier=classifier)
        self.detail.layout.flex = "1 1 45%"
        widgets.dlink((self.picker, "visible"), (self.heatmap, "columns"))
        widgets.dlink((self.picker, "visible"), (self.detail, "columns"))
        widgets.dlink((self.heatmap, "cell"), (self.grid, "cell"))
        widgets.dlink((self.grid, "selected"), (self.detail, "index"))
        self.discovery = DiscoveryPanel(b, self.picker, vocabulary=vocabulary)
        widgets.dlink((self.heatmap, "cell"), (self.discovery, "cell"))
        widgets.dlink((self.discovery, "pulled"), (self.grid, "cell"))
        m = b.models
        title = widgets.HTML(f"<b>semheat</b> · {html.escape(b.name)} · {b.n} records · "
                             f"classifier {html.escape(m.classifier or '?')} · "
                             f"VLM {html.escape(m.vlm or '?')}")
        super().__init__([title, widgets.HBox([self.picker, self.heatmap,
                                                    self.discovery]),
                          widgets.HBox([self.grid, self.detail])])

    @classmethod
    def toy(cls, which: str = "encoder_fault", directory=None, **build_kwargs) -> "Explorer":
        """Open a bundle of the toy world, building just that bundle on first use (with
        progress bars; under a minute on two CPU cores)."""
        from ..zoo.toy_dir import toy_bundle

        return cls(toy_bundle(which, directory, **build_kwargs))

    def select(self, row: str, concept: str) -> None:
        """Select (and outline) a heatmap cell from Python; the grid follows, as after a
        click."""
        self.heatmap.select(row, concept)

    def _display_(self):
        """What marimo shows for an explorer (Jupyter never calls this): the same widgets in a
        marimo layout, see :mod:`.marimo_host`."""
        from .marimo_host import marimo_layout

        return marimo_layout(self)
