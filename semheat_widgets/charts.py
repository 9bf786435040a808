"""Altair chart builders shared by the widgets and the standalone HTML report (no Jupyter).

Every label reaches the browser as data that Vega draws as text, never as HTML.
"""

from __future__ import annotations

import altair as alt

from .engine.detect.registry import detector_labels
from .engine.heatmaps import DIFFERENTIAL_KINDS, Heatmap

CELL_RANGE = (14, 30)  # pixels per heatmap cell: as large as fits, within these bounds
HEATMAP_PIXELS = 600  # the width a heatmap aims at (cells stay square)
EMPTY_FILL = "#d9d9d9"
PICKED = "picked"  # the chart parameter holding the selected cell, {"row": ..., "column": ...}
NO_MISTAKES = "no mistakes"
LEGEND = {"differential": ["correct − mistakes (z)", "blue: the mistakes", "show it more"],
          "gt_minus_output": ["true class − prediction (z)"],
          "incorrect": ["z-score of the mistakes"], "correct": ["z-score of the correct"]}


def cell_size(n_columns: int) -> int:
    """Square cells as large as the aimed width allows for ``n_columns`` concepts."""
    lo, hi = CELL_RANGE
    return int(min(hi, max(lo, HEATMAP_PIXELS // max(n_columns, 1))))


def cell_meaning(kind: str, row: str, column: str, value, n: int, n_other) -> str:
    """What a cell says, in words (the tooltip)."""
    if value is None:
        return f"no inputs in this group of {row}"
    base = kind.removeprefix("binarized_")
    if kind.startswith("binarized_"):
        return (f"{column} is {'among' if value else 'not among'} the concepts that most mark "
                f"{row} here")
    if base == "differential":
        more = "more" if value < 0 else "less"
        return (f"mistakes predicted {row} show {column} {abs(value):.1f} σ {more} than correct "
                f"{row} predictions ({n_other} mistakes, {n} correct)")
    if base == "gt_minus_output":
        return (f"true {row} inputs show {column} {value:+.1f} σ against inputs predicted {row} "
                f"({n} true, {n_other} predicted)")
    group = {"ground_truth": f"true {row} inputs", "output": f"inputs predicted {row}",
             "correct": f"correct {row} predictions", "incorrect": f"mistakes predicted {row}",
             "misclassified_from": f"{row} inputs classified wrongly"}.get(base, row)
    return f"{group} show {column} {value:+.2f} σ from the average ({n} inputs)"


def heatmap_chart(hm: Heatmap, columns: list[str], *, selectable: bool = True,
                  title: str | None = None, picked: dict | None = None) -> alt.Chart:
    """An Altair chart of ``hm`` restricted to (and ordered by) ``columns``.

    Selectable charts outline the cell named by their ``picked`` parameter (set from Python
    through ``JupyterChart.params``; ``picked`` is its first value), and report clicks through
    the point selection ``cell``. Each cell's tooltip says in words what it means; a row whose
    group of mistakes is empty says so in its label.
    """
    # Names travel as data only: the display order is a numeric field of each cell, never a
    # list of names (Vega-Lite compiles a sort list into an expression, and a name holding
    # U+2028 or a quote would break it and make the chart vanish).
    col_order = {c: j for j, c in enumerate(columns)}
    row_order = {r: i for i, r in enumerate(hm.rows)}
    base = hm.kind.removeprefix("binarized_")
    mistakes = hm.counts_other if base == "differential" else (
        hm.counts if base == "incorrect" else None)
    labels = {r: f"{r} · {NO_MISTAKES}" if mistakes is not None and mistakes[i] == 0 else r
              for i, r in enumerate(hm.rows)}
    data = []
    for c in hm.to_rows():
        if c["column"] not in col_order:
            continue
        meaning = cell_meaning(hm.kind, c["row"], c["column"], c["value"], c["n"],
                               c.get("n_other"))
        data.append(dict(c, col_order=col_order[c["column"]], row_order=row_order[c["row"]],
                         row_label=labels[c["row"]], meaning=meaning,
                         aria=f"class: {c['row']}; concept: {c['column']}; {meaning}"))
    binary = hm.kind.startswith("binarized")
    diverging = hm.standardized or base in DIFFERENTIAL_KINDS
    if binary:
        colour = alt.Color("value:Q", title="present",
                           scale=alt.Scale(domain=[0, 1], range=["#f7f7f7", "#d95f02"]),
                           legend=None)
    elif diverging:
        colour = alt.Color("value:Q", title=LEGEND.get(base, "z-score" if hm.standardized
                                                       else "score"),
                           scale=alt.Scale(scheme="blueorange", domainMid=0))
    else:
        colour = alt.Color("value:Q", title="score", scale=alt.Scale(scheme="viridis"))
    tooltip = [alt.Tooltip("meaning:N", title="cell"), alt.Tooltip("value:Q", format=".2f")]
    cell = cell_size(len(columns))
    chart = alt.Chart(alt.Data(values=data)).mark_rect(invalid=None, strokeWidth=2.5).encode(
        x=alt.X("column:N", sort=alt.EncodingSortField("col_order", op="min"), title=None,
                axis=alt.Axis(labelAngle=-45, labelLimit=160)),
        y=alt.Y("row_label:N", sort=alt.EncodingSortField("row_order", op="min"), title=None,
                axis=alt.Axis(labelLimit=200)),
        tooltip=tooltip, description=alt.Description("aria:N"),  # what screen readers say
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
                                                  alt.value("transparent")))
        chart = chart.add_params(sel, mark)
    else:
        chart = chart.encode(color=colour_rule, stroke=alt.value("transparent"))
    return chart.properties(width=cell * max(len(columns), 1), height=cell * len(hm.rows),
                            title=title or "").configure(background="transparent")


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
    return (diagonal + lines).properties(width=300, height=300).configure(
        background="transparent")
