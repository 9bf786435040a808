"""Runtime-monitor figures of a saved bundle (``semheat monitor``'s JSON), and why a monitor
flagged one record.

Everything is measured on the ``eval`` split, which no fitting or calibration step has seen.

- misclassification: natural ``eval`` inputs; positives are the misclassified ones.
- adversarial: natural ``eval`` inputs classified correctly (negatives) against attacked
  ``eval`` inputs whose attack succeeded (positives); also per attack.

Each detector gets its threshold from the ``calib`` split at the bundle's target false-alarm
rate (the task's monitor: the thresholds stored in the bundle, per class where it was
calibrated per class); the detection accuracy reported is the accuracy of that flag on ``eval``.
"""

from __future__ import annotations

import numpy as np

from ...errors import SemheatError
from ..bundle import Bundle
from ..detect.concept_monitor import top_reasons
from ..detect.names import MONITORS
from ..detect.registry import detector_labels, score_column
from ..metrics import auroc, detection_summary, roc_curve, threshold_at_fpr
from ..tasks import TASKS, Task, task_named, task_of
from .rounding import DIGITS
from .rounding import rounded


def detector_scores(bundle: Bundle, task: Task | str) -> dict[str, np.ndarray]:
    """Defect scores per detector (higher = more likely a defect), for every record: the
    registered detectors whose column this bundle holds, in registry order."""
    task = task_named(task) if isinstance(task, str) else task
    out = {}
    for name in detector_labels():
        column = score_column(name, task)
        if bundle.has_column(column):
            out[name] = bundle.column(column).astype(np.float64)
    return out


def monitor_report(bundle: Bundle, roc_points: int = 0) -> dict:
    """AUROC and calibrated detection figures of every detector, per task."""
    out = {"bundle": bundle.name, "n_records": bundle.n}
    for task in TASKS.values():
        info = bundle.monitor_info(task)
        target = info.get("target_fpr", 0.05)
        member, positive = task.masks(bundle, "eval")
        cmember, cpositive = task.masks(bundle, "calib")
        res = {"n_positive": int(positive.sum()), "n_negative": int((member & ~positive).sum()),
               "target_fpr": target}
        if not info.get("available", False) or not positive.any():
            res["available"] = False
            out[task.name] = res
            continue
        monitor = info.get("monitor", "heatmap")
        stored = bundle.monitor(task).thresholds_[bundle.column("prediction")[member]]
        scores = detector_scores(bundle, task)
        for name, s in scores.items():
            entry = {"auroc": rounded(auroc(s[member], positive[member]))}
            neg_cal = s[cmember & ~cpositive]
            if len(neg_cal):
                # the task's monitor keeps its own (possibly per-class) thresholds; the others
                # get one calibrated the same way
                thr = stored if name == monitor else threshold_at_fpr(neg_cal, target)
                summ = detection_summary(s[member], positive[member], thr)
                entry.update(accuracy=rounded(summ["accuracy"]), tpr=rounded(summ["tpr"]),
                             fpr=rounded(summ["fpr"]))
            if roc_points:
                fpr, tpr, _ = roc_curve(s[member], positive[member], roc_points)
                entry["roc"] = {"fpr": fpr.round(DIGITS).tolist(),
                                "tpr": tpr.round(DIGITS).tolist()}
            res[name] = entry
        if task.name == "adversarial":
            res["per_attack"] = {}
            for attack in sorted(set(bundle.codes("perturbation")[1]) - {"natural"}):
                m, pos = task.masks(bundle, "eval", attack)
                if pos.any():
                    res["per_attack"][attack] = {
                        name: rounded(auroc(s[m], pos[m])) for name, s in scores.items()}
                    res["per_attack"][attack]["n_positive"] = int(pos.sum())
        res["monitor"] = monitor
        if "combined_with" in info:
            res["combined_with"] = info["combined_with"]
        out[task.name] = res
    return out


def explain_record(bundle: Bundle, i: int, n: int = 3, monitor: str | None = None) -> dict:
    """Why a runtime monitor (the task's own by default, or ``monitor`` by name: ``concept``,
    ``heatmap``) scored record ``i`` as it did: its defect score, threshold and flag, and for
    a monitor that explains itself (the concept-space monitor) the ``n`` largest contributions
    (concepts and named CLIP-space signals); the paper's monitor gives its two similarities.
    Figures unrounded."""
    if not 0 <= i < bundle.n:
        raise SemheatError(f"no record {i}: the bundle has {bundle.n}")
    task = task_of(str(bundle.column("perturbation")[i]))
    info = bundle.monitor_info(task)
    if not info.get("available", False):
        raise SemheatError(f"the bundle has no fitted {task.name} monitor")
    name = monitor or info.get("monitor", "heatmap")
    if name not in bundle_monitors(bundle, task):
        raise SemheatError(f"the bundle has no fitted {name!r} monitor for {task.name}; "
                           f"it has {bundle_monitors(bundle, task)}")
    fitted, evidence = bundle.detector(name, task), bundle.evidence([i])
    k = int(evidence.predictions[0])
    score = float(fitted.score_samples(evidence)[0])
    out = {"index": int(i), "task": task.name, "monitor": name,
           "prediction": bundle.classes[k],
           "label": bundle.classes[int(bundle.column("label")[i])],
           "defect_score": score, "threshold": float(fitted.thresholds_[k]),
           "flagged": bool(score > fitted.thresholds_[k])}
    if hasattr(fitted, "explain"):
        names = bundle.concept_names[:fitted.n_concepts]
        why = fitted.explain(evidence)
        out["base"] = float(why.base)
        out["reasons"] = [[label, float(v)] for label, v in top_reasons(why, names, 0, n)]
    else:
        bad, ok = fitted.similarities(evidence)
        out.update(sim_incorrect=float(bad[0]), sim_correct=float(ok[0]))
    return out


def bundle_monitors(bundle: Bundle, task: Task | str) -> list[str]:
    """The runtime monitors (``concept``, ``heatmap``) a bundle has fitted for ``task``, the
    task's own first. Bundles written before the concept monitor hold only ``heatmap``."""
    task = task_named(task) if isinstance(task, str) else task
    info = bundle.monitor_info(task)
    if not info.get("available", False):
        return []
    names = [m for m in MONITORS if bundle.has_column(score_column(m, task))]
    own = info.get("monitor", "heatmap")
    return sorted(set(names) | {own}, key=lambda m: (m != own, m))
