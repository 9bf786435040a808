"""What every widget shares: how a bundle is given, where the front-end modules live, and how
Altair renders offline."""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt

from ..engine.bundle import Bundle
from ..errors import SemheatTypeError

JS = Path(__file__).resolve().parent / "js"  # the anywidget ES modules and their CSS
# SVG keeps every cell a DOM element (with an aria-label), which tests and screen readers use.
EMBED_OPTIONS = {"actions": False, "renderer": "svg"}

_offline_enabled = False


def as_bundle(bundle) -> Bundle:
    """A :class:`Bundle`, given one or the path of one (anything else: one line)."""
    if isinstance(bundle, Bundle):
        return bundle
    if not isinstance(bundle, (str, os.PathLike)):
        raise SemheatTypeError(f"a widget needs a Bundle or the path of one, got "
                               f"{type(bundle).__name__}")
    return Bundle.load(bundle)


def enable_offline() -> None:
    """Serve the Vega libraries from vl-convert instead of a CDN (once per kernel)."""
    global _offline_enabled
    if not _offline_enabled:
        alt.JupyterChart.enable_offline()
        _offline_enabled = True


def empty_chart(mark: str = "rect") -> alt.JupyterChart:
    """An Altair chart widget that follows JupyterLab's theme (see ``widgets.css``)."""
    enable_offline()
    chart = alt.JupyterChart(getattr(alt.Chart(alt.Data(values=[])), f"mark_{mark}")(),
                             embed_options=EMBED_OPTIONS)
    chart.add_class("semheat-chart")
    return chart

