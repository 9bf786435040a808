"""The contract between the views: a :class:`Cell` is what one view selects and the next one
shows (the heatmap's selected cell -> the image grid and the suggested concepts; an error
slice -> the image grid), and :class:`SelectsOnClick` is how the heatmap-like views turn a
click on their chart into a selection."""

from __future__ import annotations

from dataclasses import dataclass

import traitlets


@dataclass(frozen=True)
class Cell:
    """A selected heatmap cell, or a set of inputs given by name.

    ``kind`` is the heatmap kind (``differential``, ``ground_truth``, ...; ``slice`` for an
    error slice, ``compare`` for a comparison's cell), ``perturbation`` the inputs it reads
    (``natural``, ``fgsm``, ``pgd``), ``row`` a class and ``column`` a concept (or a slice's name).
    ``indices``, when given, are the inputs themselves (an error slice); otherwise the inputs
    are the bundle's cell query for (``kind``, ``row``, ``perturbation``)."""

    kind: str
    perturbation: str
    row: str
    column: str
    indices: tuple[int, ...] | None = None

    @property
    def position(self) -> dict:
        """Where it sits in a chart: ``{"row", "column"}`` (the chart's ``picked`` parameter)."""
        return {"row": self.row, "column": self.column}


def cell_trait(help: str) -> traitlets.Instance:
    """A ``Cell`` trait; ``None`` when nothing is selected."""
    return traitlets.Instance(Cell, allow_none=True, default_value=None, help=help)


class SelectsOnClick:
    """For views with a chart of cells and a ``select(row, column)`` method: a click on the
    chart (its ``cell`` selection) selects that cell."""

    def _on_click(self, change) -> None:
        points = change["new"].value
        if points:
            self.select(points[0]["row"], points[0]["column"])
