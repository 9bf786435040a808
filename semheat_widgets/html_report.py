"""A standalone HTML report of a bundle, for people who don't run Jupyter.

    semheat report BUNDLE --html OUT.html

One file that opens offline: the Vega libraries are inlined (bundled by vl-convert), the
thumbnails are embedded as data URIs. It shows the differential heatmap, the inputs behind its
most telling cells, the error slices of the mistakes with their names and inputs, the
localization figures and the runtime-monitor figures with ROC curves.
Every name and label is escaped (or drawn by Vega as text), never interpreted as HTML.
"""

from __future__ import annotations

import base64
import html
import unicodedata
import json
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .charts import heatmap_chart, roc_chart
from .engine.detect.registry import detector_labels
from .engine.bundle import Bundle
from .engine.reports.localization import localization_report
from .engine.reports.monitors import monitor_report
from .errors import SemheatError
from .safe_io import REPORT_TAG, atomic_write, check_replaceable, recover, writer_lock

_INVISIBLE = ("Cf", "Cc")


def e(text, quote: bool = True) -> str:
    """``text`` as HTML text: escaped, and without invisible format characters (no bidi
    override from a bundle written elsewhere can reorder the page)."""
    text = "".join(ch for ch in str(text) if ch in "\t\n"
                   or unicodedata.category(ch) not in _INVISIBLE)
    return html.escape(text, quote)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 8px 0; } td, th { padding: 3px 10px;
border-bottom: 1px solid #eee; text-align: left; } th { background: #f6f6f6; }
.cell { margin: 14px 0; } .thumbs { display: flex; flex-wrap: wrap; gap: 6px; }
.thumb { font-size: 11px; width: 100px; } .thumb img { width: 96px; height: 96px;
image-rendering: pixelated; border: 2px solid #e8a0a0; } .muted { color: #777; }
"""


def _png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _script_json(obj) -> str:
    """JSON safe inside a <script> element: no ``</script>`` can close it early."""
    return (json.dumps(obj).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026"))


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{e(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in r)
                   + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def telling_cells(bundle: Bundle, k: int = 4, min_n: int = 5,
                  hm=None) -> list[tuple[str, str, float]]:
    """Up to ``k`` telling cells of the differential heatmap, one per predicted class: where
    its misclassified inputs (at least ``min_n`` of them) show a concept far more than its
    correct ones (the most negative cell of the row), strongest first. ``hm``: that
    differential heatmap, when the caller has it already."""
    hm = bundle.heatmap("differential") if hm is None else hm
    rows = []
    for i, name in enumerate(hm.rows):
        if hm.counts_other[i] < min_n or np.isnan(hm.values[i]).all():
            continue
        j = int(np.nanargmin(hm.values[i]))
        rows.append((name, hm.columns[j], float(hm.values[i, j])))
    return sorted(rows, key=lambda r: r[2])[:k]


def _effect(phrase: dict, space: str) -> str:
    if f"effect_{space}" not in phrase:
        return "–"
    return f"{phrase[f'effect_{space}']:.2f} ± {phrase[f'se_{space}']:.2f}"


def slices_section(bundle: Bundle, top: int = 3, per_slice: int = 8) -> str:
    """The ``top`` largest error slices of the mistakes (:meth:`Bundle.slices`): each named by
    its top phrase (said to be confident only past the false-discovery control), with its size,
    predicted and true classes, accuracy and verdicts, its top phrases in both spaces and
    ``per_slice`` of its inputs."""
    head = ("<h2>Error slices</h2><p>The mistakes of each predicted class grouped where they "
            "look alike in CLIP space, each named by the phrase that best separates it from the "
            "correct inputs of that class (effect in z-units, in what the classifier reads and "
            "in what the image shows).</p>")
    try:
        found = bundle.slices()[:top]
    except SemheatError as exc:
        return head + f"<p class='muted'>no error slices: {e(str(exc).splitlines()[0])}</p>"
    if not found:
        return head + "<p class='muted'>no slice of at least a few mistakes.</p>"
    classes = bundle.classes
    parts = [head]
    for sl in found:
        d = sl.to_dict()
        said = ("named with confidence" if d["confident"] else
                "<i>name not confident</i> (it does not pass the false-discovery control)")
        verdicts = ", ".join(f"{e(v)} {share:.0%}" for v, share in d["verdict"].items())
        true = ", ".join(f"{e(c)} {n}" for c, n in d["classes"].items())
        phrases = _table(["phrase", "effect in what the classifier reads (± s.e.)",
                          "effect in the image (± s.e.)"],
                         [[p["phrase"], _effect(p, "aligned"), _effect(p, "image")]
                          for p in d["phrases"]])
        idx = sl.indices[:per_slice]
        tiles = "".join(
            f"<div class='thumb'><img src='{_png_uri(bundle.thumbnail_png(int(i)))}' "
            f"alt='input {int(r['id'])}'><br>{e(classes[r['label']])} → "
            f"{e(sl.predicted)}</div>"
            for i, r in zip(idx, bundle.rows(idx, ["id", "label"])))
        parts.append(f"<div class='cell'><b>“{e(d['name'])}”</b> — {d['size']} mistakes "
                     f"predicted {e(d['predicted'])} (true: {true}); accuracy "
                     f"{d['accuracy']:.2f} where they lie; verdicts: {verdicts or '–'}; "
                     f"{said}{phrases}<div class='thumbs'>{tiles}</div></div>")
    return "".join(parts)


def bundle_section(bundle: Bundle, key: str, charts: dict, *, cells: int = 6,
                   per_cell: int = 8, maps: bool = True, slices: bool = True) -> str:
    """The HTML of one bundle; its chart specs go into ``charts`` under ids ``key-...``.

    ``maps``: draw concept maps under the thumbnails (re-opens the classifier: imports torch);
    ``slices``: the error slices (embeds the vocabulary with the bundle's VLM, cached after the
    first time); without both the report reads only the bundle."""
    hm = bundle.heatmap("differential")
    charts[f"{key}-heatmap"] = heatmap_chart(
        hm, bundle.concept_names, selectable=False,
        title="differential: correct − incorrect (z-scores)").to_dict()
    mon = monitor_report(bundle, roc_points=120)
    loc = localization_report(bundle)
    models = bundle.manifest.get("models", {})
    parts = [f"<h1>{e(bundle.name)}</h1>",
             f"<p class='muted'>{bundle.n} records · classifier "
             f"{e(str(models.get('classifier')))} · VLM {e(str(models.get('vlm')))} · natural "
             f"accuracy {bundle.manifest.get('accuracy', float('nan')):.3f}</p>",
             "<h2>Differential heatmap</h2><p>Rows are predicted classes, columns concepts. "
             "A cell is the mean concept score of the correct inputs of that prediction minus "
             "that of the incorrect ones: blue cells are concepts the mistakes show more; grey "
             "cells have no inputs.</p>", f"<div id='chart-{key}-heatmap'></div>",
             "<h2>Where the mistakes are</h2>"]
    classes = bundle.classes
    classifier = None
    if maps:
        from .engine.concepts.cam import map_pngs, open_classifier

        classifier = open_classifier(bundle)
    for row, concept, value in telling_cells(bundle, cells, hm=hm):
        sel = bundle.cell_query("differential", row, concept, limit=per_cell)
        maps = map_pngs(bundle, classifier, sel.indices, concept) if classifier is not None \
            else [None] * len(sel.indices)
        tiles = []
        for i, r, m in zip(sel.indices, bundle.rows(sel.indices, ["id", "label", "fault"]), maps):
            overlay = (f"<img class='map' src='{_png_uri(m)}' alt='where the classifier sees "
                       f"{e(concept)}'>") if m is not None else ""
            tiles.append(f"<div class='thumb'><img src='{_png_uri(bundle.thumbnail_png(int(i)))}'"
                         f" alt='input {int(r['id'])}'>{overlay}<br>{e(classes[r['label']])} → "
                         f"{e(row)}<br>fault: {e(r.get('fault') or '–')}</div>")
        note = (f"; under each, where the classifier's own features show {e(concept)}"
                if classifier is not None else "")
        parts.append(f"<div class='cell'><b>predicted {e(row)} · {e(concept)}</b> "
                     f"(difference {value:.2f}, {sel.total} misclassified inputs; the "
                     f"strongest in {e(concept)} first{note})<div class='thumbs'>"
                     f"{''.join(tiles)}</div></div>")
    if slices:
        parts.append(slices_section(bundle))
    parts.append("<h2>Fault localization</h2>")
    parts.append(_table(["verdict", "misclassified natural inputs"],
                        [[k, v] for k, v in loc["counts"].items()]))
    if loc.get("decided_counts"):
        parts.append("<p>With its confidence: a verdict weaker than the threshold is "
                     "<i>undecided</i> rather than a confident guess.</p>")
        parts.append(_table(["verdict (with confidence)", "misclassified natural inputs",
                             "mean confidence"],
                            [[k, v, loc["decided_confidence"].get(k)]
                             for k, v in loc["decided_counts"].items()]))
    for kind, g in loc.get("ground_truth", {}).items():
        extra = ""
        if "responsible_concept" in g:
            extra = (f"; known responsible concept {e(g['responsible_concept'])} ranked "
                     f"{g['responsible_concept_rank']}")
        if g.get("coverage") is not None:
            extra += (f"; decided (confidence ≥ the bundle's threshold) for "
                      f"{g['coverage']:.0%}, of which {g['decided_accuracy']:.3f} right; mean "
                      f"confidence {g['mean_confidence']:.2f}")
        parts.append(f"<p>Known {e(kind)} faults (eval split): {g['n']}, localized correctly "
                     f"{g['accuracy']:.3f}{extra}.</p>")
    parts.append("<h2>Runtime monitor</h2>")
    for task in ("misclassification", "adversarial"):
        t = mon[task]
        if not t.get("available", True) or "heatmap" not in t:
            parts.append(f"<p class='muted'>{e(task)}: not available</p>")
            continue
        labels = detector_labels()
        rows = [[labels[d], t[d]["auroc"], t[d].get("accuracy"), t[d].get("tpr"),
                 t[d].get("fpr")] for d in labels if d in t]
        parts.append(f"<h3>{e(task)}</h3><p class='muted'>{t['n_positive']} defects, "
                     f"{t['n_negative']} correct inputs (eval split); thresholds at a "
                     f"{t['target_fpr']:.0%} false-alarm target on the calib split.</p>")
        parts.append(_table(["detector", "AUROC", "accuracy", "TPR", "FPR"], rows))
        charts[f"{key}-roc-{task}"] = roc_chart(t).properties(title=task).to_dict()
        parts.append(f"<div id='chart-{key}-roc-{task}'></div>")
    return "<section>" + "".join(parts) + "</section>"


def comparison_section(comparison, charts: dict, per_kind: int = 8) -> str:
    """The "did the fix work?" section: accuracy, flips, known faults, the differential delta
    heatmap and the concepts that stopped or started separating right from wrong."""
    r = comparison.to_json()
    charts["cmp-delta"] = heatmap_chart(
        comparison.delta, comparison.delta.columns, selectable=False,
        title="differential after − before (z-scores)").to_dict()
    parts = [f"<h1>Did the fix work? {e(r['before'])} → {e(r['after'])}</h1>",
             f"<p>{r['n_inputs']} {e(r['split'])} inputs: accuracy {r['accuracy']['before']} → "
             f"{r['accuracy']['after']}; {r['flipped']['fixed']} fixed (wrong → right), "
             f"{r['flipped']['broken']} broken (right → wrong).</p>"]
    if r["known_faults"]:
        parts.append(_table(["known fault", "before", "after", "fall"],
                            [[k, v.get("before"), v.get("after"), v.get("fall")]
                             for k, v in r["known_faults"].items()]))
    parts.append(_table(["class", "accuracy before", "after", "fixed", "broken"],
                        [[c, v["accuracy_before"], v["accuracy_after"], v["fixed"],
                          v["broken"]] for c, v in r["per_class"].items()]))
    parts.append("<div id='chart-cmp-delta'></div>")
    rows = [[c, ", ".join(x["concept"] for x in sep["stopped"]),
             ", ".join(x["concept"] for x in sep["started"])]
            for c, sep in r["separating"].items() if sep["stopped"] or sep["started"]]
    if rows:
        parts.append("<h2>Concepts that stopped or started separating right from wrong</h2>")
        parts.append(_table(["class", "stopped", "started"], rows))
    fixed, broken = comparison.flips()
    classes = comparison.before.classes
    for name, mask in (("fixed", fixed), ("broken", broken)):
        idx = comparison.rows[mask][:per_kind]
        if not len(idx):
            continue
        label = lambda b, col, i: e(classes[int(b.column(col)[i])])  # noqa: E731
        tiles = [f"<div class='thumb'><img src='{_png_uri(comparison.after.thumbnail_png(int(i)))}'"
                 f" alt='input {int(i)}'><br>{label(comparison.before, 'label', i)}: "
                 f"{label(comparison.before, 'prediction', i)} → "
                 f"{label(comparison.after, 'prediction', i)}</div>" for i in idx]
        parts.append(f"<div class='cell'><b>{name}</b> ({int(mask.sum())} inputs)"
                     f"<div class='thumbs'>{''.join(tiles)}</div></div>")
    return "<section>" + "".join(parts) + "</section>"


def render_report(bundles, *, cells: int = 6, per_cell: int = 8, compare_with=None,
                  maps: bool = True, slices: bool = True) -> str:
    """One self-contained HTML page reporting on one or more bundles (and, with
    ``compare_with``, on the first one against that bundle of the same inputs)."""
    import vl_convert as vlc

    bundles = [bundles] if isinstance(bundles, Bundle) else list(bundles)
    charts: dict[str, dict] = {}
    comparison = None
    if compare_with is not None:  # checked first: a mismatch must not wait for the report
        after = compare_with if isinstance(compare_with, Bundle) else Bundle.load(compare_with)
        comparison = bundles[0].compare(after)
    sections = [bundle_section(b, f"b{n}", charts, cells=cells, per_cell=per_cell, maps=maps,
                               slices=slices) for n, b in enumerate(bundles)]
    if comparison is not None:
        sections.insert(0, comparison_section(comparison, charts))
    title = " · ".join(b.name for b in bundles)
    embeds = "\n".join(
        f"vegaEmbed('#chart-{name}', {_script_json(spec)}, {{actions: false, renderer: 'svg'}});"
        for name, spec in charts.items())
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'>" + REPORT_TAG +
            f"<title>semheat report · {e(title)}</title><style>{STYLE}</style>"
            f"<script>{vlc.javascript_bundle()}</script></head><body>"
            f"<p class='muted'>semheat report · made {datetime.now(timezone.utc):%Y-%m-%d %H:%M}"
            f" UTC</p>{''.join(sections)}<script>{embeds}</script></body></html>")


def write_report(bundles, out, compare_with=None, **kwargs) -> Path:
    """Write the report of one or more bundles (objects or paths) to ``out`` atomically."""
    items = bundles if isinstance(bundles, (list, tuple)) else [bundles]
    out = Path(out)
    if out.is_dir():
        raise SemheatError(f"{out} is a directory; give the report a file name, e.g. "
                           f"{out / 'report.html'}")
    if not out.parent.is_dir():
        raise SemheatError(f"cannot write {out}: folder {out.parent} does not exist")
    check_replaceable(out, ("report",), "a report")
    with writer_lock(out):
        recover(out)
        items = [b if isinstance(b, Bundle) else Bundle.load(b) for b in items]
        text = render_report(items, compare_with=compare_with, **kwargs)
        check_replaceable(out, ("report",), "a report")
        atomic_write(out, text)
    return out
