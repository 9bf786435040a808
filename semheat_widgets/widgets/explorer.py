"""The explorer: concept picker, heatmap, image grid and detail view, linked.

Click a heatmap cell → the grid shows the inputs behind it (for a differential cell: the
misclassified inputs of that predicted class, most extreme in that concept first) with their
runtime scores; click a tile → the detail view explains that input; type a concept → it becomes
a new heatmap column at once.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..engine.bundle import Bundle
from ..errors import SemheatError
from .detail import DetailView
from .grid import ImageGrid
from .heatmap import HeatmapView
from .picker import ConceptPicker


class Explorer(widgets.VBox):
    """``Explorer(bundle_or_path)``; ``Explorer.toy()`` for the bundled toy world."""

    def __init__(self, bundle, vlm=None, kind: str = "differential"):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self._vlm = vlm
        b = self.bundle
        self.picker = ConceptPicker(b.concept_names, on_add=self._add_concept)
        self.heatmap = HeatmapView(b, kind=kind)
        self.grid = ImageGrid(b)
        self.detail = DetailView(b)
        self.grid.layout = widgets.Layout(flex="1 1 55%", min_width="420px")
        self.detail.layout.flex = "1 1 45%"
        self.picker.observe(self._on_concepts, names=["concepts", "hidden"])
        self.heatmap.observe(self._on_cell, names=["cell"])
        self.grid.observe(self._on_tile, names=["selected"])
        models = b.manifest.get("models", {})
        title = widgets.HTML(f"<b>semheat</b> · {_escape(b.name)} · {b.n} records · "
                             f"classifier {_escape(models.get('classifier', '?'))} · "
                             f"VLM {_escape(models.get('vlm', '?'))}")
        super().__init__([title, widgets.HBox([self.picker, self.heatmap]),
                          widgets.HBox([self.grid, self.detail])])

    # -- construction helpers ------------------------------------------------------------------
    @classmethod
    def toy(cls, which: str = "encoder_fault", directory=None, **build_kwargs) -> "Explorer":
        """Open a bundle of the toy world, building just that bundle on first use (with
        progress bars; under a minute on two CPU cores)."""
        from ..zoo.build import toy_bundle

        return cls(toy_bundle(which, directory, **build_kwargs))

    @property
    def vlm(self):
        if self._vlm is None:
            from ..engine.registry import bundle_vlm

            self._vlm = bundle_vlm(self.bundle)
        return self._vlm

    # -- linking ---------------------------------------------------------------------------
    def _add_concept(self, name: str) -> str | None:
        unknown = self.vlm.unknown_words(name)
        self.bundle.add_concept(name, vlm=self.vlm)
        if unknown:
            return (f"added {name!r}; note: the VLM never learnt {', '.join(unknown)} "
                    f"(the toy CLIP knows a small vocabulary)")
        return None

    def _on_concepts(self, _change=None) -> None:
        visible = self.picker.visible
        self.detail.columns = visible
        self.heatmap.columns = visible

    def _on_cell(self, change) -> None:
        cell = change["new"]
        if not cell:
            self.grid.clear("Click a heatmap cell to see its inputs.")
            return
        self.grid.show_cell(self.bundle, self.heatmap.kind, cell["row"], cell["column"],
                            records=self.heatmap.records)

    def _on_tile(self, change) -> None:
        if change["new"] >= 0:
            self.detail.show(change["new"])

    def select(self, row: str, concept: str) -> None:
        """Select a heatmap cell from Python (the grid follows, as after a click)."""
        if row not in self.bundle.classes or concept not in self.bundle.concept_names:
            raise SemheatError(f"no heatmap cell ({row!r}, {concept!r})")
        self.heatmap.cell = {"row": row, "column": concept}


def _escape(text) -> str:
    import html

    return html.escape(str(text))
