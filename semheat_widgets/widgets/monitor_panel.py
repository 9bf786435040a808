"""Monitor panel: ROC curves of the heatmap monitor and the baselines, a threshold slider with
live counts, and a check of any dataset input or an uploaded image."""

from __future__ import annotations

import html

import altair as alt
import ipywidgets as widgets
import numpy as np

from ..engine.analyze import monitor_state
from ..engine.bundle import Bundle
from ..engine.metrics import detection_summary
from ..engine.report import detector_scores, monitor_report, task_masks
from ..errors import SemheatError
from ..charts import roc_chart
from .heatmap import EMBED_OPTIONS, enable_offline

class MonitorPanel(widgets.VBox):
    """``MonitorPanel(bundle_or_path, classifier=None)``.

    ``classifier`` (a :class:`~semheat_widgets.engine.split.ModelSplit`) is needed only to
    check uploaded images; toy bundles re-open their own.
    """

    def __init__(self, bundle, classifier=None, task: str = "misclassification"):
        enable_offline()
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self._classifier = classifier
        self.report = monitor_report(self.bundle, roc_points=200)
        available = [t for t in ("misclassification", "adversarial")
                     if self.report[t].get("available", True) and "heatmap" in self.report[t]]
        if not available:
            raise SemheatError("this bundle has no fitted runtime monitor")
        self.task_box = widgets.ToggleButtons(options=available,
                                              value=task if task in available else available[0])
        self.chart = alt.JupyterChart(alt.Chart(alt.Data(values=[])).mark_line(),
                                      embed_options=EMBED_OPTIONS)
        self.slider = widgets.FloatSlider(description="threshold", continuous_update=True,
                                          readout_format=".3f", layout={"width": "420px"})
        self.counts = widgets.HTML()
        self.index_box = widgets.BoundedIntText(value=0, min=0, max=self.bundle.n - 1,
                                                description="input #")
        self.check_button = widgets.Button(description="check input")
        self.upload = widgets.FileUpload(accept="image/*", multiple=False,
                                         description="upload image")
        self.result = widgets.HTML()
        self.check_button.on_click(lambda _b: self.check_index(self.index_box.value))
        self.upload.observe(self._on_upload, names=["value"])
        self.task_box.observe(lambda _c: self._draw_task(), names=["value"])
        self.slider.observe(lambda _c: self._update_counts(), names=["value"])
        super().__init__([
            widgets.HTML("<b>Runtime monitor</b>"), self.task_box,
            widgets.HBox([self.chart, widgets.VBox([self.slider, self.counts])]),
            widgets.HBox([self.index_box, self.check_button, self.upload]), self.result])
        self._draw_task()

    @property
    def task(self) -> str:
        return self.task_box.value

    def _draw_task(self) -> None:
        task = self.task
        self.chart.chart = roc_chart(self.report[task])
        scores = detector_scores(self.bundle, task)["heatmap"]
        member, positive = task_masks(self.bundle, task, "eval")
        self._eval = scores[member], positive[member]  # what every slider tick counts over
        lo, hi = float(np.min(self._eval[0])), float(np.max(self._eval[0]))
        thr = float(np.median(monitor_state(self.bundle, task).thresholds_))
        with self.slider.hold_trait_notifications():  # min, max and value checked together
            self.slider.min, self.slider.max = min(lo, thr), max(hi, thr)
            self.slider.step = (max(hi, thr) - min(lo, thr)) / 500 or 0.001
            self.slider.value = thr
        self._update_counts()

    def counts_at(self, threshold: float) -> dict:
        """Caught / missed / false alarms of the heatmap monitor on the eval split."""
        return detection_summary(*self._eval, threshold)

    def _update_counts(self) -> None:
        c = self.counts_at(self.slider.value)
        self.counts.value = (
            "<table><tr><td>caught</td><td><b>{caught}</b></td></tr>"
            "<tr><td>missed</td><td><b>{missed}</b></td></tr>"
            "<tr><td>false alarms</td><td><b>{false_alarms}</b></td></tr>"
            "<tr><td>passed</td><td>{passed}</td></tr>"
            "<tr><td>TPR / FPR</td><td>{tpr:.3f} / {fpr:.3f}</td></tr></table>"
            "<small>eval split, flag when defect score &gt; threshold</small>").format(**c)

    # -- checking inputs -------------------------------------------------------------------
    def check_index(self, i: int) -> dict:
        """Verdict of the monitor on dataset record ``i`` (from the bundle's cached scores)."""
        b = self.bundle
        if not 0 <= i < b.n:
            raise SemheatError(f"no input {i}")
        task = self.task
        mon = monitor_state(b, task)
        s = b.standardizer(b.scores([i]).astype(np.float64))[:, :mon.correct_rows_.shape[1]]
        pred = b.column("prediction")[[i]]
        bad, ok = mon.similarities(s, pred)
        score = float(bad[0] - ok[0])
        out = {"index": i, "prediction": b.classes[int(pred[0])],
               "label": b.classes[int(b.column("label")[i])], "defect_score": score,
               "sim_incorrect": float(bad[0]), "sim_correct": float(ok[0]),
               "flagged": score > self.slider.value}
        self.result.value = _verdict_html(out)
        return out

    def check_image(self, image_bytes: bytes) -> dict:
        """Classify an uploaded image and run the runtime monitor on it."""
        import torch

        from ..data.images import open_rgb
        from ..engine.analyze import runtime_monitor
        from ..engine.registry import load_classifier

        im = open_rgb(image_bytes, "the uploaded image")
        if self._classifier is None:  # loaded once, on the first upload
            self._classifier = load_classifier(
                self.bundle.manifest.get("models", {}).get("classifier", ""))
        split = self._classifier
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)[None]
        rt = runtime_monitor(self.bundle, split, self.task)
        with torch.inference_mode():
            z, logits = split.features_and_logits(x)
            score, _flag = rt.check(z, logits)
        pred = int(logits.argmax(1)[0])
        out = {"prediction": self.bundle.classes[pred], "defect_score": float(score[0]),
               "flagged": float(score[0]) > self.slider.value, "label": None}
        self.result.value = _verdict_html(out)
        return out

    def _on_upload(self, change) -> None:
        files = change["new"]
        if not files:
            return
        item = files[0] if isinstance(files, (list, tuple)) else next(iter(files.values()))
        try:
            self.check_image(bytes(item["content"]))
        except SemheatError as exc:
            self.result.value = f"<span style='color:#a00'>{html.escape(str(exc))}</span>"


def _verdict_html(r: dict) -> str:
    e = lambda x: html.escape(str(x))  # noqa: E731
    verdict = "FLAGGED as a likely defect" if r["flagged"] else "passed"
    label = f"true {e(r['label'])}, " if r.get("label") else ""
    sims = (f"; similarity to incorrect {r['sim_incorrect']:.3f}, to correct "
            f"{r['sim_correct']:.3f}") if "sim_correct" in r else ""
    return (f"{label}predicted <b>{e(r['prediction'])}</b>: defect score "
            f"{r['defect_score']:.3f}{sims} → <b>{verdict}</b>")

