"""The explorer in marimo: the same widgets, laid out by marimo instead of ipywidgets boxes.

marimo displays anywidgets (``mo.ui.anywidget``) but not ipywidgets containers or controls.
Every view a click travels through is an anywidget — the concept picker, the heatmap chart
(Altair's ``JupyterChart``) with its keyboard strip, and the image grid — so in marimo the
explorer is those widgets stacked, linked in Python by the same trait links as in Jupyter
(marimo's comm hands a click to the widget as ``set_state``, so the links fire the same way).
The heatmap's controls become marimo dropdowns; the detail view and the suggestion panel are
ipywidgets boxes and are left out (a line under the grid says so).

``Explorer`` calls :func:`marimo_layout` from ``_display_``, the hook marimo looks for, so a
cell ending in ``sw.Explorer(path)`` shows it; Jupyter never calls that hook.
"""

from __future__ import annotations

import html

from .heatmap import KIND_LABELS, PERTURBATION_LABELS, TOP_K_CHOICES

LEFT_OUT = ("In marimo the explorer shows the concept picker, the heatmap and the image grid; "
            "the input detail view and the concept suggestions need JupyterLab, Notebook 7 or "
            "Voila.")


def _dropdown(mo, view, trait: str, options: dict, label: str):
    """A marimo dropdown bound one way to a trait of ``view`` (labels shown, keys set)."""
    by_key = {key: text for text, key in options.items()}
    return mo.ui.dropdown(options=options, value=by_key[getattr(view, trait)], label=label,
                          on_change=lambda key: setattr(view, trait, key))


def marimo_layout(explorer):
    """The explorer's widgets in a marimo ``vstack`` (see the module docstring)."""
    import marimo as mo

    heatmap, bundle = explorer.heatmap, explorer.bundle
    present = set(bundle.codes("perturbation")[1])
    perturbations = {PERTURBATION_LABELS.get(k, k): k for k in PERTURBATION_LABELS if k in present}
    boxes = [
        _dropdown(mo, heatmap, "kind", {v: k for k, v in KIND_LABELS.items()}, "heatmap"),
        _dropdown(mo, heatmap, "perturbation", perturbations, "inputs"),
        _dropdown(mo, heatmap, "top_k",
                  {"off": 0, **{f"top {k}": k for k in TOP_K_CHOICES}}, "binarize"),
        mo.ui.checkbox(value=heatmap.standardized, label="standardised (z)",
                       on_change=lambda v: setattr(heatmap, "standardized", bool(v))),
    ]
    # marimo keeps a UI element only while Python holds it: an unreferenced dropdown's changes
    # are dropped. The explorer (a live widget) holds them.
    explorer.marimo_controls = boxes
    controls = mo.hstack(boxes, justify="start", gap=1)
    m = bundle.models
    title = mo.Html(f"<div><b>semheat</b> · {html.escape(bundle.name)} · {bundle.n} records "
                    f"· classifier {html.escape(m.classifier or '?')} · "
                    f"VLM {html.escape(m.vlm or '?')}</div>")
    return mo.vstack([
        title,
        mo.hstack([mo.ui.anywidget(explorer.picker),
                   mo.vstack([controls, mo.ui.anywidget(heatmap.chart),
                              mo.ui.anywidget(heatmap.key_strip)])],
                  justify="start", align="start", widths=[1, 3]),
        mo.ui.anywidget(explorer.grid),
        mo.Html(f"<small>{html.escape(LEFT_OUT)}</small>"),
    ])
