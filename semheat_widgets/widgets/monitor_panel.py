"""Monitor panel: ROC curves of the runtime monitor and the baselines, a threshold slider with
live counts, and a check of any dataset input or an uploaded image.

Inputs: ``task`` (misclassification / adversarial) and ``monitor`` (``concept``, the stacked
concept-space monitor, or ``heatmap``, the paper's; the bundle's own by default). The scores come
from the bundle's fitted monitors; the panel computes none itself. Checking an input says why
the monitor scored it so (:func:`~semheat_widgets.engine.reports.monitors.explain_record`).
"""

from __future__ import annotations

import html

import ipywidgets as widgets
import numpy as np
import traitlets

from ..arguments import as_index, choice
from ..charts import roc_chart
from ..engine.reports.monitors import (bundle_monitors, detector_scores, explain_record,
                                       monitor_report)
from ..engine.metrics import detection_summary
from ..engine.models.registry import load_classifier
from ..engine.detect.heatmap_monitor import runtime_monitor
from ..engine.tasks import TASKS, task_named
from ..errors import SemheatError
from .base import as_bundle, empty_chart

ROC_POINTS = 200
SLIDER_STEPS = 500


class MonitorPanel(widgets.VBox):
    """``MonitorPanel(bundle, classifier=None, task="misclassification")``.

    ``classifier`` (a :class:`~semheat_widgets.engine.models.classifier.ModelSplit`) is needed
    only to check uploaded images; bundles whose classifier can be re-opened by id need none.
    """

    task = traitlets.Enum(tuple(TASKS), default_value="misclassification")
    monitor = traitlets.Unicode("")  # the monitor shown ("": the task's own)

    def __init__(self, bundle, *, classifier=None, task: str = "misclassification"):
        self.bundle = as_bundle(bundle)
        self._classifier = classifier
        self.report = monitor_report(self.bundle, roc_points=ROC_POINTS)
        available = [t.name for t in self.bundle.tasks if "heatmap" in self.report[t.name]]
        if not available:
            raise SemheatError("this bundle has no fitted runtime monitor")
        choice(task, available, "task (this bundle's monitors)")
        self.task_box = widgets.ToggleButtons(options=available,
                                              value=task if task in available else available[0])
        self.monitor_box = widgets.ToggleButtons(description="monitor")
        self._filling = False
        self.chart = empty_chart("line")
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
        self.slider.observe(lambda _c: self._update_counts(), names=["value"])
        widgets.link((self.task_box, "value"), (self, "task"))
        self.monitor_box.observe(self._on_monitor_box, names=["value"])
        self.observe(lambda _c: self._draw_task(), names=["task", "monitor"])
        super().__init__([
            widgets.HTML("<b>Runtime monitor</b>"), self.task_box, self.monitor_box,
            widgets.HBox([self.chart, widgets.VBox([self.slider, self.counts])]),
            widgets.HBox([self.index_box, self.check_button, self.upload]), self.result])
        self.task = self.task_box.value
        self._draw_task()

    def _on_monitor_box(self, change) -> None:
        if change["new"] and not self._filling:
            self.monitor = change["new"]

    def _draw_task(self) -> None:
        task = task_named(self.task)
        names = bundle_monitors(self.bundle, task)
        name = self.monitor if self.monitor in names else names[0]
        self._filling = True  # the box follows the task; not a choice of the user's
        try:
            self.monitor_box.tooltips = [_MONITOR_TIPS.get(m, m) for m in names]
            self.monitor_box.options = names
            self.monitor_box.value = name
        finally:
            self._filling = False
        self.shown = name  # the monitor whose scores the slider counts
        monitor = self.bundle.detector(name, task)
        self.chart.chart = roc_chart(self.report[task.name])
        scores = detector_scores(self.bundle, task)[name]
        member, positive = task.masks(self.bundle, "eval")
        self._eval = scores[member], positive[member]  # what every slider tick counts over
        thr = float(np.median(monitor.thresholds_))
        lo, hi = min(float(np.min(self._eval[0])), thr), max(float(np.max(self._eval[0])), thr)
        with self.slider.hold_trait_notifications():  # min, max and value checked together
            self.slider.min, self.slider.max = lo, hi
            self.slider.step = (hi - lo) / SLIDER_STEPS or 0.001
            self.slider.value = thr
        self._update_counts()

    def counts_at(self, threshold: float) -> dict:
        """Caught / missed / false alarms of the monitor on the eval split."""
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
        """Verdict of the shown monitor on dataset record ``i`` at the slider's threshold, and
        what raised its score (:func:`~semheat_widgets.engine.reports.monitors.explain_record`)."""
        i = as_index(i, self.bundle.n, "input")
        if task_named(self.task) not in self.bundle.tasks:
            raise SemheatError(f"no {self.task} monitor")
        out = explain_record(self.bundle, i, monitor=self.shown)
        if out["task"] == self.task:  # the slider belongs to this task's monitor
            out["flagged"] = out["defect_score"] > self.slider.value
        self.result.value = _verdict_html(out)
        return out

    def check_image(self, image_bytes: bytes) -> dict:
        """Classify an uploaded image and run the runtime monitor on it."""
        import torch

        from ..engine.image_files import open_rgb  # (torch: only when an image is checked)

        im = open_rgb(image_bytes, "the uploaded image")
        if self._classifier is None:  # loaded once, on the first upload
            self._classifier = load_classifier(self.bundle.models.classifier)
        x = torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)[None]
        logits, score, _flag = runtime_monitor(self.bundle, self._classifier, self.task,
                                               monitor=self.shown)(x)
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


_MONITOR_TIPS = {"concept": "concept-space monitor: nine CLIP-space signals, stacked",
                 "heatmap": "the paper's monitor: similarity to correct vs defective rows"}


def _verdict_html(r: dict) -> str:
    e = lambda x: html.escape(str(x))  # noqa: E731
    verdict = "FLAGGED as a likely defect" if r["flagged"] else "passed"
    label = f"true {e(r['label'])}, " if r.get("label") else ""
    sims = (f"; similarity to incorrect {r['sim_incorrect']:.3f}, to correct "
            f"{r['sim_correct']:.3f}") if "sim_correct" in r else ""
    why = ("<br><small>what raised the score most: " + ", ".join(
        f"{e(name)} ({value:+.2f})" for name, value in r["reasons"]) + "</small>"
           ) if r.get("reasons") else ""
    task = f" ({e(r['task'])} monitor)" if "task" in r else ""
    return (f"{label}predicted <b>{e(r['prediction'])}</b>{task}: defect score "
            f"{r['defect_score']:.3f}{sims} → <b>{verdict}</b>{why}")
