"""Altair chart builders shared by the widgets and the standalone HTML report (no Jupyter).

Every label reaches the browser as data that Vega draws as text, never as HTML.
"""

from __future__ import annotations

import altair as alt

from .engine.detectors import detector_labels
from .engine.heatmaps import DIFFERENTIAL_KINDS, Heatmap

CELL = 22  # pixels per heatmap cell
EMPTY_FILL = "#eeeeee"
PICKED = "picked"  # the chart parameter holding the selected cell, {"row": ..., "column": ...}


def heatmap_chart(hm: Heatmap, columns: list[str], *, selectable: bool = True,
                  title: str | None = None, picked: dict | None = None) -> alt.Chart:
    """An Altair chart of ``hm`` restricted to (and ordered by) ``columns``.

    Selectable charts outline the cell named by their ``picked`` parameter (set from Python
    through ``JupyterChart.params``; ``picked`` is its first value), and report clicks through
    the point selection ``cell``.
    """
    # Names travel as data only: the display order is a numeric field of each cell, never a
    # list of names (Vega-Lite compiles a sort list into an expression, and a name holding
    # U+2028 or a quote would break it and make the chart vanish).
    col_order = {c: j for j, c in enumerate(columns)}
    row_order = {r: i for i, r in enumerate(hm.rows)}
    data = [dict(c, col_order=col_order[c["column"]], row_order=row_order[c["row"]])
            for c in hm.to_rows() if c["column"] in col_order]
    binary = hm.kind.startswith("binarized")
    diverging = hm.standardized or hm.kind.removeprefix("binarized_") in DIFFERENTIAL_KINDS
    if binary:
        colour = alt.Color("value:Q", title="present",
                           scale=alt.Scale(domain=[0, 1], range=["#f7f7f7", "#d95f02"]),
                           legend=None)
    elif diverging:
        colour = alt.Color("value:Q", title="z-score" if hm.standardized else "score",
                           scale=alt.Scale(scheme="blueorange", domainMid=0))
    else:
        colour = alt.Color("value:Q", title="score", scale=alt.Scale(scheme="viridis"))
    tooltip = [alt.Tooltip("row:N", title="class"), alt.Tooltip("column:N", title="concept"),
               alt.Tooltip("value:Q", format=".2f"), alt.Tooltip("n:Q", title="inputs")]
    if hm.counts_other is not None:
        tooltip.append(alt.Tooltip("n_other:Q", title="inputs (subtracted)"))
    chart = alt.Chart(alt.Data(values=data)).mark_rect(invalid=None, strokeWidth=2).encode(
        x=alt.X("column:N", sort=alt.EncodingSortField("col_order", op="min"), title=None,
                axis=alt.Axis(labelAngle=-45, labelLimit=120)),
        y=alt.Y("row:N", sort=alt.EncodingSortField("row_order", op="min"), title=None),
        tooltip=tooltip,
    )
    colour_rule = alt.condition("datum.value === null", alt.value(EMPTY_FILL), colour)
    if selectable:
        sel = alt.selection_point(name="cell", fields=["row", "column"], on="click",
                                  clear="dblclick", empty=False)
        mark = alt.param(name=PICKED, value=picked or None)
        outlined = (f"{PICKED} && datum.row === {PICKED}.row && "
                    f"datum.column === {PICKED}.column")  # names stay data: no name in here
        chart = chart.encode(color=colour_rule,
                             stroke=alt.condition(outlined, alt.value("#111111"),
                                                  alt.value("white")))
        chart = chart.add_params(sel, mark)
    else:
        chart = chart.encode(color=colour_rule, stroke=alt.value("white"))
    return chart.properties(width=CELL * max(len(columns), 1), height=CELL * len(hm.rows),
                            title=title or "")


def roc_chart(task_report: dict) -> alt.Chart:
    rows = []
    for det, label in detector_labels().items():
        entry = task_report.get(det)
        if not entry or "roc" not in entry:
            continue
        auc = entry.get("auroc")
        name = f"{label} (AUROC {auc:.3f})" if auc is not None else f"{label} (AUROC n/a)"
        rows += [{"detector": name, "fpr": f, "tpr": t}
                 for f, t in zip(entry["roc"]["fpr"], entry["roc"]["tpr"])]
    lines = alt.Chart(alt.Data(values=rows)).mark_line(interpolate="step-after").encode(
        x=alt.X("fpr:Q", title="false-alarm rate", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("tpr:Q", title="defects caught", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("detector:N", title=None, legend=alt.Legend(orient="bottom", columns=1,
                                                                      labelLimit=320)),
        tooltip=["detector:N", alt.Tooltip("fpr:Q", format=".3f"),
                 alt.Tooltip("tpr:Q", format=".3f")])
    diagonal = alt.Chart(alt.Data(values=[{"x": 0, "y": 0}, {"x": 1, "y": 1}])).mark_line(
        strokeDash=[4, 4], color="#999").encode(x="x:Q", y="y:Q")
    return (diagonal + lines).properties(width=300, height=300)
