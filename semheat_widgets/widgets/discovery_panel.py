"""Suggested concepts and error slices, beside the explorer's heatmap.

Plain ipywidgets (they render in JupyterLab without new JavaScript), wired to the other views
through their Python traits:

- ``cell`` (input, from the heatmap): the selected cell's inputs are run through
  :meth:`Bundle.discover`; the list shows each phrase with its effect in the image space and
  in the aligned space. Clicking a phrase adds it as a heatmap column (through the concept
  picker, as if typed).
- *find slices*: :meth:`Bundle.slices` lists the mistakes' error slices; clicking one sets
  ``pulled`` (output), a grid cell holding the slice's inputs, which the explorer sends to the
  image grid.

Labels are ipywidgets ``Button`` / ``Label`` descriptions: text, never HTML.
"""

from __future__ import annotations

import ipywidgets as widgets

from ..errors import SemheatError
from .cell import Cell, cell_trait

SUGGESTIONS = 8
AUTO_PHRASES = 1000  # vocabularies this small are embedded on the first click; larger on demand
WRONG_KINDS = ("differential", "incorrect", "gt_minus_output", "misclassified_from")


class DiscoveryPanel(widgets.VBox):
    """``DiscoveryPanel(bundle, picker)``; ``cell`` in, ``pulled`` out."""

    cell = cell_trait("input: the heatmap's selected cell")
    pulled = cell_trait("output: the inputs of a clicked error slice, for the image grid")

    def __init__(self, bundle, picker, *, vocabulary=None, k: int = SUGGESTIONS, **kwargs):
        self.bundle, self.picker, self.vocabulary, self.k = bundle, picker, vocabulary, k
        self.status = widgets.Label("select a heatmap cell to see suggested concepts")
        self.suggest = widgets.Button(description="suggest concepts", tooltip="rank the "
                                      "vocabulary's phrases for the selected cell (embeds the "
                                      "vocabulary once per VLM)")
        self.suggest.on_click(lambda _b: self.show_suggestions(force=True))
        self.suggestions = widgets.VBox([])
        self.find = widgets.Button(description="find slices", tooltip="group the mistakes "
                                   "into error slices, each named by a phrase")
        self.find.on_click(lambda _b: self.show_slices())
        self.slice_list = widgets.VBox([])
        self.found = []
        self.rows: list[dict] = []
        # k rows made once and refilled on each click: no new widgets (and no new views for
        # the browser to build) per click
        self._pool = [self._new_row(i) for i in range(k)]
        super().__init__([widgets.Label("suggested concepts (effect: image · aligned)"),
                          self.status, self.suggest, self.suggestions, self.find, self.slice_list],
                         layout=widgets.Layout(min_width="260px", max_width="340px"), **kwargs)
        self.observe(self._on_cell, names=["cell"])

    def _inputs(self, cell: Cell):
        kind = "incorrect" if cell.kind.removeprefix("binarized_") in WRONG_KINDS else cell.kind
        return self.bundle.cell_query(kind, cell.row, None, perturbation=cell.perturbation)

    def _small(self) -> bool:
        """Whether suggestions come at once on a click (embeddings ready or few phrases)."""
        if self.bundle.__dict__.get("_phrases"):
            return True
        from ..engine.concepts.discover import vocabulary_for

        try:
            voc = self.vocabulary or vocabulary_for(self.bundle.models.vlm)
        except SemheatError:
            return False
        return hasattr(voc, "vectors") or len(voc) <= AUTO_PHRASES

    def _on_cell(self, change) -> None:
        self.suggestions.children, self.rows = (), []
        if not change["new"]:
            self.status.value = "select a heatmap cell to see suggested concepts"
            return
        if self._small():
            self.show_suggestions()
        else:
            self.status.value = "press 'suggest concepts' for this cell"

    def show_suggestions(self, force: bool = False) -> None:
        """Rank the vocabulary for the selected cell and list the top phrases."""
        cell = self.cell
        if not cell:
            self.status.value = "select a heatmap cell first"
            return
        try:
            found = self.bundle.discover(self._inputs(cell), self.vocabulary, k=self.k,
                                         vlm=self.picker.vlm)
        except SemheatError as exc:
            self.suggestions.children, self.rows = (), []
            self.status.value = str(exc).splitlines()[0]
            return
        except Exception as exc:  # a callback from the browser must not die silently
            self.status.value = f"could not suggest concepts: {type(exc).__name__}: {exc}"
            return
        self.rows = found.top(self.k)
        self.status.value = (f"{found.n_selection} inputs vs {found.n_reference} correct of "
                             f"the same predicted class")
        for (button, effect), r in zip((row.children for row in self._pool), self.rows):
            button.description = r["phrase"]
            button.tooltip = "add as a heatmap column; prompts: " + " | ".join(r["prompts"])
            effect.value = (f"{r.get('effect_image', float('nan')):+.2f} · "
                            f"{r.get('effect_aligned', float('nan')):+.2f}")
        self.suggestions.children = tuple(self._pool[:len(self.rows)])

    def _new_row(self, i: int):
        """Suggestion row ``i``: a button that adds ``self.rows[i]``'s phrase, and its effects."""
        button = widgets.Button(layout=widgets.Layout(width="150px"))
        button.on_click(lambda _b: self.add(self.rows[i]["phrase"]))
        return widgets.HBox([button, widgets.Label()])

    def add(self, phrase: str) -> bool:
        """Add a suggested phrase as a heatmap column (what a click does)."""
        ok = self.picker.add(phrase)
        self.status.value = self.picker.message
        return ok

    def show_slices(self) -> None:
        """Find the error slices and list them (what *find slices* does)."""
        try:
            self.found = self.bundle.slices(vocabulary=self.vocabulary, vlm=self.picker.vlm)
        except SemheatError as exc:
            self.status.value = str(exc).splitlines()[0]
            return
        items = []
        for n, s in enumerate(self.found):
            name = s.name if s.confident else f"({s.name}?)"
            b = widgets.Button(description=f"{name} · {len(s.indices)} → {s.predicted}",
                               tooltip=f"accuracy {s.accuracy:.2f}; verdict {s.verdict}; "
                                       f"d={s.effect:.2f}", layout=widgets.Layout(width="300px"))
            b.on_click(lambda _b, n=n: self.pull(n))
            items.append(b)
        self.slice_list.children = tuple(items)
        if not items:
            self.status.value = "no error slice found"

    def pull(self, n: int) -> None:
        """Send slice ``n``'s inputs to the grid (what clicking a slice does)."""
        s = self.found[n]
        self.pulled = Cell("slice", "natural", s.predicted, s.name,
                           indices=tuple(int(i) for i in s.indices))
