"""Detail view of one input: its heatmap row beside the monitor's reference rows, the VLM's
zero-shot view, and the fault verdict with its reasons.

Input: ``index`` — the record to show (-1: none). Beside the input, its *concept activation
map* (where the classifier's own features show the chosen ``concept``; default: its most
responsible concept) and the class activation map of its predicted class, for contrast.
"""

from __future__ import annotations

import html
import io

import ipywidgets as widgets
import numpy as np
import traitlets

from ..arguments import as_index

from ..charts import heatmap_chart
from ..engine.bundle import Bundle
from ..engine.reports.monitors import explain_record
from ..engine.heatmaps import Heatmap
from ..engine.tasks import task_of
from ..engine.vectors import zero_shot_probabilities
from ..errors import SemheatError
from .base import as_bundle, empty_chart

TOP_CLASSES = 3  # zero-shot classes listed
ZOOM = 128  # pixels the thumbnail is shown at


def _top_classes(probabilities: np.ndarray, classes, k: int = TOP_CLASSES):
    order = np.argsort(-probabilities)[:k]
    return [(classes[i], float(probabilities[i])) for i in order]


def detail_facts(bundle: Bundle, i: int) -> dict:
    """Everything the detail view says about record ``i`` (also handy in tests)."""
    r = bundle.rows([i])[0]
    classes = bundle.classes
    task = task_of(r.get("perturbation", "natural"))
    class_emb = bundle.class_embeddings
    zs = zero_shot_probabilities(np.stack([bundle.arrays["image_emb"][i],
                                           bundle.arrays["aligned"][i]]), class_emb)
    out = {
        "index": int(i), "id": r["id"], "perturbation": r.get("perturbation", ""),
        "split": r.get("split", ""), "label": classes[r["label"]],
        "prediction": classes[r["prediction"]], "correct": bool(r["correct"]),
        "confidence": r.get("confidence"), "task": task.name,
        "defect_score": r.get(task.column("score")),
        "flagged": bool(r.get(task.column("flag"), False)),
        "fault": r.get("fault", ""), "oracle_verdict": r.get("oracle_verdict", ""),
        "heatmap_verdict": r.get("heatmap_verdict", ""),
        "oracle_prediction": classes[r["oracle_pred"]] if "oracle_pred" in r else None,
        "vlm_prediction": classes[r["vlm_pred"]] if "vlm_pred" in r else None,
        "top_concepts": list(r.get("top_concepts") or []),
        "vlm_zero_shot": _top_classes(zs[0], classes),
        "aligned_zero_shot": _top_classes(zs[1], classes),
        "monitor": None, "reasons": [],
    }
    if task in bundle.tasks:
        why = explain_record(bundle, i)
        out.update(monitor=why["monitor"], reasons=why.get("reasons", []))
    return out


def reference_heatmap(bundle: Bundle, i: int, task) -> Heatmap:
    """This input's standardised scores beside the correct / defective reference rows of its
    predicted class (the rows the runtime monitor compares it with)."""
    k = int(bundle.column("prediction")[i])
    name = bundle.classes[k]
    own = bundle.single(i).values[0]
    rows, values, counts = ["this input"], [own], [1]
    if task in bundle.tasks:
        mon = bundle.detector("heatmap", task)  # every bundle holds the paper's monitor
        pad = np.full(len(own) - mon.n_concepts, np.nan)  # later concepts have no reference
        rows += [f"correct {name}", f"{task.defect_word} {name}"]
        values += [np.r_[mon.correct_rows_[k], pad], np.r_[mon.incorrect_rows_[k], pad]]
        counts += [int(mon.correct_counts_[k]), int(mon.incorrect_counts_[k])]
    return Heatmap("detail", np.vstack(values), np.array(counts), rows,
                   bundle.concept_names, standardized=True)


def _picture(caption: str):
    size = f"{ZOOM}px"
    image = widgets.Image(format="png", layout=widgets.Layout(
        width=size, height=size, min_width=size, object_fit="contain"))
    label = widgets.HTML(f"<small>{html.escape(caption)}</small>",
                         layout=widgets.Layout(width=size))
    return image, widgets.VBox([image, label], layout=widgets.Layout(min_width=size,
                                                                       flex="0 0 auto"))


class DetailView(widgets.VBox):
    """``DetailView(bundle, classifier=None)``: one input in depth; set ``index`` to show a
    record. The classifier (re-opened by id when not given) draws the activation maps."""

    index = traitlets.Int(-1)  # input
    columns = traitlets.List(traitlets.Unicode())  # the concepts shown, in order
    concept = traitlets.Unicode("")  # the concept whose map is shown

    def __init__(self, bundle, columns: list[str] | None = None, classifier=None):
        self.bundle = as_bundle(bundle)
        self._classifier, self._given = None, classifier
        self.image, image_box = _picture("input")
        self.map_image, map_box = _picture("concept map")
        self.cam_image, cam_box = _picture("class map of the prediction")
        self.concept_box = widgets.Dropdown(description="map of", options=[],
                                            layout=widgets.Layout(width="260px"))
        self.map_note = widgets.HTML()
        self.facts_html = widgets.HTML()
        self.status = widgets.HTML()  # one line when an index was refused
        self.chart = empty_chart()
        self.facts: dict = {}  # what the view says about the input shown (detail_facts)
        pictures = widgets.HBox([image_box, map_box, cam_box],
                                layout=widgets.Layout(flex_flow="row wrap", grid_gap="6px"))
        super().__init__([widgets.HTML("<b>Input details</b> — click a tile"), pictures,
                          widgets.HBox([self.concept_box, self.map_note]), self.status,
                          self.facts_html, self.chart])
        self.layout.display = "none"
        self.columns = list(columns or self.bundle.concept_names)
        self.concept_box.observe(self._on_concept_box, names=["value"])
        self.observe(self._show, names=["index", "columns"])
        self.observe(self._draw_maps, names=["concept"])

    @property
    def classifier(self):
        if self._classifier is None:
            from ..engine.concepts.cam import open_classifier  # (torch: only once a map is drawn)

            self._classifier = open_classifier(self.bundle, self._given)
        return self._classifier

    @traitlets.validate("index")
    def _valid_index(self, proposal):
        """-1 (nothing shown) or a record of the bundle; anything else keeps the input shown
        and says why in one line."""
        value = proposal["value"]
        if value == -1 or not hasattr(self, "bundle"):
            return value
        try:
            value = as_index(value, self.bundle.n, "index")
        except SemheatError as exc:
            self.status.value = f"<small>{html.escape(str(exc))}</small>"
            return self.index
        self.status.value = ""
        return value

    def _on_concept_box(self, change) -> None:
        if change["new"]:
            self.concept = change["new"]

    def _draw_maps(self, _change=None) -> None:
        """The chosen concept's map on the input shown."""
        if self.index < 0 or not self.concept or self.classifier is None:
            return
        from ..engine.concepts.cam import map_pngs

        self.map_image.value = map_pngs(self.bundle, self.classifier, [self.index],
                                        self.concept)[0]
        self.map_note.value = (f"<small>where the classifier's features show "
                               f"<b>{html.escape(self.concept)}</b>; bright = more</small>")

    def _draw_class_map(self) -> None:
        if self.classifier is None:
            self.map_note.value = ("<i>activation maps need the classifier: "
                                   "DetailView(bundle, classifier=...)</i>")
            return
        from ..engine.concepts.cam import class_map_png

        try:
            self.cam_image.value = class_map_png(self.bundle, self.classifier, self.index)
        except SemheatError:  # a classifier without average pooling has no class map
            self.cam_image.value = b""

    def _show(self, _change=None) -> None:
        if self.index < 0:
            self.layout.display = "none"
            return
        from PIL import Image

        facts = self.facts = detail_facts(self.bundle, self.index)
        thumb = Image.fromarray(np.asarray(self.bundle.thumbnail(self.index)))
        buf = io.BytesIO()
        thumb.resize((ZOOM, ZOOM), Image.NEAREST).save(buf, format="PNG")
        self.image.value = buf.getvalue()
        self.facts_html.value = render_facts(facts)
        hm = reference_heatmap(self.bundle, self.index, task_of(facts["perturbation"]))
        self.chart.chart = heatmap_chart(hm, self.columns, selectable=False,
                                         title="this input vs. the monitor's reference rows")
        self._draw_class_map()
        options = list(self.columns)
        default = next((c for c in facts["top_concepts"] if c in options), None)
        keep = self.concept if self.concept in options else None
        with self.concept_box.hold_trait_notifications():
            self.concept_box.options = options
        chosen = keep or default or (options[0] if options else "")
        self.concept_box.value = chosen or None
        if chosen == self.concept:
            self._draw_maps()
        else:
            self.concept = chosen
        self.layout.display = None


def render_facts(f: dict) -> str:
    """HTML of the facts; every name and label is escaped (rendered as text)."""
    e = lambda x: html.escape(str(x))  # noqa: E731
    num = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    zs = ", ".join(f"{e(c)} {p:.0%}" for c, p in f["vlm_zero_shot"])
    za = ", ".join(f"{e(c)} {p:.0%}" for c, p in f["aligned_zero_shot"])
    lines = [
        f"<b>input {e(f['id'])}</b> ({e(f['perturbation'])}, {e(f['split'])} split)",
        f"true <b>{e(f['label'])}</b> → predicted <b>{e(f['prediction'])}</b> "
        f"(confidence {num(f['confidence'])})",
        f"runtime monitor ({e(f.get('monitor') or 'none')}, {e(f['task'])}): defect score "
        f"{num(f['defect_score'])} → "
        f"<b>{'flagged' if f['flagged'] else 'passed'}</b>",
    ]
    if f.get("reasons"):
        lines.append("what raised the score most: " + ", ".join(
            f"{e(name)} ({value:+.2f})" for name, value in f["reasons"]))
    if not f["correct"]:
        lines.append(f"fault: <b>{e(f['fault'] or 'n/a')}</b> — oracle on A z says "
                     f"{e(f['oracle_prediction'])} ({e(f['oracle_verdict'])}), heatmap vote "
                     f"{e(f['heatmap_verdict'])}")
        if f["top_concepts"]:
            lines.append("responsible concepts: " + ", ".join(e(c) for c in f["top_concepts"]))
    lines.append(f"VLM zero-shot on the image: {zs}")
    lines.append(f"zero-shot of the aligned features: {za}")
    return "<div class='semheat-facts'>" + "<br>".join(lines) + "</div>"
