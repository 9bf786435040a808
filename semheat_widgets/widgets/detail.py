"""Detail view of one input: its heatmap row beside the monitor's reference rows, the VLM's
zero-shot view, and the fault verdict with its reasons."""

from __future__ import annotations

import html
import io

import altair as alt
import ipywidgets as widgets
import numpy as np

from ..engine.bundle import Bundle
from ..engine.heatmaps import Heatmap
from ..charts import heatmap_chart
from .heatmap import EMBED_OPTIONS, enable_offline


def _zero_shot(embedding: np.ndarray, class_emb: np.ndarray, classes, k: int = 3):
    logits = 100.0 * (class_emb @ embedding) / max(np.linalg.norm(embedding), 1e-12)
    p = np.exp(logits - logits.max())
    p /= p.sum()
    order = np.argsort(-p)[:k]
    return [(classes[i], float(p[i])) for i in order]


def detail_facts(bundle: Bundle, i: int) -> dict:
    """Everything the detail view says about record ``i`` (also handy in tests)."""
    r = bundle.rows([i])[0]
    classes = bundle.classes
    adversarial = r.get("kind", "natural") != "natural"
    task = "adversarial" if adversarial else "misclassification"
    prefix = "adv" if adversarial else "misclf"
    class_emb = np.asarray(bundle.state["class_embeddings"])
    facts = {
        "index": int(i), "id": r["id"], "kind": r.get("kind", ""), "split": r.get("split", ""),
        "label": classes[r["label"]], "prediction": classes[r["prediction"]],
        "correct": bool(r["correct"]), "confidence": r.get("confidence"),
        "task": task, "defect_score": r.get(f"{prefix}_score"),
        "flagged": bool(r.get(f"{prefix}_flag", False)),
        "fault": r.get("fault", ""), "oracle_verdict": r.get("oracle_verdict", ""),
        "heatmap_verdict": r.get("heatmap_verdict", ""),
        "oracle_prediction": classes[r["oracle_pred"]] if "oracle_pred" in r else None,
        "vlm_prediction": classes[r["vlm_pred"]] if "vlm_pred" in r else None,
        "top_concepts": list(r.get("top_concepts") or []),
        "vlm_zero_shot": _zero_shot(np.asarray(bundle.arrays["image_emb"][i]), class_emb,
                                    classes),
        "aligned_zero_shot": _zero_shot(np.asarray(bundle.arrays["aligned"][i]), class_emb,
                                        classes),
    }
    return facts


def reference_heatmap(bundle: Bundle, i: int, task: str) -> Heatmap:
    """This input's standardised scores beside the correct / incorrect reference rows of its
    predicted class (the rows the runtime monitor compares it with)."""
    k = int(bundle.column("prediction")[i])
    name = bundle.classes[k]
    own = bundle.single(i).values[0]
    state = bundle.state
    key = f"monitor.{task}"
    c0 = np.asarray(state[f"{key}.correct_rows"])[k] if f"{key}.correct_rows" in state else None
    rows, values, counts = ["this input"], [own], [1]
    if c0 is not None:
        extra = len(own) - len(c0)  # concepts added after the build have no reference
        pad = np.full(extra, np.nan)
        rows += [f"correct {name}", f"{'adversarial' if task == 'adversarial' else 'incorrect'}"
                 f" {name}"]
        values += [np.r_[c0, pad], np.r_[np.asarray(state[f"{key}.incorrect_rows"])[k], pad]]
        counts += [int(state[f"{key}.correct_counts"][k]),
                   int(state[f"{key}.incorrect_counts"][k])]
    return Heatmap("detail", np.vstack(values), np.array(counts), rows,
                   bundle.concept_names, standardized=True)


class DetailView(widgets.VBox):
    """Shows one input in depth; call :meth:`show` with a record index."""

    def __init__(self, bundle: Bundle, columns: list[str] | None = None):
        enable_offline()
        self.bundle = bundle
        self.columns = list(columns or bundle.concept_names)
        self.image = widgets.Image(format="png", layout=widgets.Layout(
            width="128px", height="128px", min_width="128px", object_fit="contain"))
        self.facts = widgets.HTML()
        self.chart = alt.JupyterChart(alt.Chart(alt.Data(values=[])).mark_rect(),
                                      embed_options=EMBED_OPTIONS)
        self.index: int | None = None
        super().__init__([widgets.HTML("<b>Input details</b> — click a tile"),
                          widgets.HBox([self.image, self.facts]), self.chart])
        self.layout.display = "none"

    def show(self, i: int) -> dict:
        from PIL import Image

        self.index = int(i)
        facts = detail_facts(self.bundle, self.index)
        thumb = Image.fromarray(np.asarray(self.bundle.thumbnail(self.index)))
        buf = io.BytesIO()
        thumb.resize((128, 128), Image.NEAREST).save(buf, format="PNG")
        self.image.value = buf.getvalue()
        self.facts.value = render_facts(facts)
        hm = reference_heatmap(self.bundle, self.index, facts["task"])
        self.chart.chart = heatmap_chart(hm, self.columns, selectable=False,
                                         title="this input vs. the monitor's reference rows")
        self.layout.display = None
        return facts


def render_facts(f: dict) -> str:
    """HTML of the facts; every name and label is escaped (rendered as text)."""
    e = lambda x: html.escape(str(x))  # noqa: E731
    num = lambda x: "–" if x is None else f"{x:.3f}"  # noqa: E731
    zs = ", ".join(f"{e(c)} {p:.0%}" for c, p in f["vlm_zero_shot"])
    za = ", ".join(f"{e(c)} {p:.0%}" for c, p in f["aligned_zero_shot"])
    lines = [
        f"<b>input {e(f['id'])}</b> ({e(f['kind'])}, {e(f['split'])} split)",
        f"true <b>{e(f['label'])}</b> → predicted <b>{e(f['prediction'])}</b> "
        f"(confidence {num(f['confidence'])})",
        f"runtime monitor ({e(f['task'])}): defect score {num(f['defect_score'])} → "
        f"<b>{'flagged' if f['flagged'] else 'passed'}</b>",
    ]
    if not f["correct"]:
        lines.append(f"fault: <b>{e(f['fault'] or 'n/a')}</b> — oracle on A z says "
                     f"{e(f['oracle_prediction'])} ({e(f['oracle_verdict'])}), heatmap vote "
                     f"{e(f['heatmap_verdict'])}")
        if f["top_concepts"]:
            lines.append("responsible concepts: " + ", ".join(e(c) for c in f["top_concepts"]))
    lines.append(f"VLM zero-shot on the image: {zs}")
    lines.append(f"zero-shot of the aligned features: {za}")
    return "<div class='semheat-facts'>" + "<br>".join(lines) + "</div>"
