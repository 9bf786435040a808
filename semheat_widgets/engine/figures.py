"""Figures of a saved bundle: monitor AUROCs and localization counts (the CLI's JSON).

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

from .bundle import Bundle
from .detectors import detector_labels, score_column
from .localize import concept_ranking, responsibility, verdict_counts
from .metrics import auroc, detection_summary, roc_curve, threshold_at_fpr
from .tasks import TASKS, Task, task_named

DIGITS = 4  # figures are rounded to this many decimals in reports


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
            entry = {"auroc": _r(auroc(s[member], positive[member]))}
            neg_cal = s[cmember & ~cpositive]
            if len(neg_cal):
                # the task's monitor keeps its own (possibly per-class) thresholds; the others
                # get one calibrated the same way
                thr = stored if name == monitor else threshold_at_fpr(neg_cal, target)
                summ = detection_summary(s[member], positive[member], thr)
                entry.update(accuracy=_r(summ["accuracy"]), tpr=_r(summ["tpr"]),
                             fpr=_r(summ["fpr"]))
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
                        name: _r(auroc(s[m], pos[m])) for name, s in scores.items()}
                    res["per_attack"][attack]["n_positive"] = int(pos.sum())
        res["monitor"] = monitor
        if "combined_with" in info:
            res["combined_with"] = info["combined_with"]
        out[task.name] = res
    return out


def localization_report(bundle: Bundle) -> dict:
    """Fault verdict counts of misclassified natural inputs, and accuracy against ground truth.

    Ground truth comes from a ``gt_fault`` column (toy bundles: the culprit known by
    construction) and, where present, a ``probe_fault`` column (the culprit according to a
    linear probe of the classifier's own features, see :mod:`semheat_widgets.zoo.family`). Each
    misclassified ``eval`` input with a known culprit is checked against the verdict of the
    bundle's rule (``accuracy``) and of the paper's rule (``paper_accuracy``); for encoder
    faults the rank of the known responsible concept (``gt_concept``) is reported too.
    """
    natural = bundle.mask(perturbation="natural")
    wrong = natural & ~bundle.column("correct").astype(bool)
    fault = bundle.column("fault").astype(str)
    paper = bundle.column("fault_paper").astype(str) if bundle.has_column("fault_paper") \
        else fault
    oracle = bundle.column("oracle_verdict").astype(str)
    out = {"bundle": bundle.name, "n_misclassified": int(wrong.sum()),
           "rule": bundle.manifest.get("localization", {}).get("rule", "paper"),
           "counts": verdict_counts(fault[wrong]), "paper_counts": verdict_counts(paper[wrong]),
           "oracle_counts": verdict_counts(oracle[wrong])}
    if not bundle.has_column("gt_fault"):
        return out
    gt = bundle.column("gt_fault").astype(str)
    probe = bundle.column("probe_fault").astype(str) if bundle.has_column("probe_fault") \
        else None
    evaluated = wrong & bundle.mask(split="eval")
    truth = {}
    for kind in ("encoder", "head"):
        m = evaluated & (gt == kind)
        if not m.any():
            continue
        entry = {"n": int(m.sum()), "accuracy": _share(fault[m] == kind),
                 "paper_accuracy": _share(paper[m] == kind),
                 "oracle_accuracy": _share(oracle[m] == kind), "verdicts": verdict_counts(fault[m])}
        if probe is not None:
            known = m & np.isin(probe, ("encoder", "head"))
            entry.update(n_probe=int(known.sum()),
                         probe_agrees_with_construction=_share(probe[m] == kind),
                         probe_accuracy=_share(fault[known] == probe[known]),
                         probe_paper_accuracy=_share(paper[known] == probe[known]))
        if kind == "encoder" and bundle.has_column("gt_concept"):
            concept = str(bundle.column("gt_concept")[np.flatnonzero(m)[0]])
            ranking = concept_ranking(_responsibility(bundle, m), bundle.concept_names)
            names = [c for c, _ in ranking]
            entry["responsible_concept"] = concept
            entry["responsible_concept_rank"] = names.index(concept) + 1 if concept in names \
                else None
            entry["top_concepts"] = names[:5]
        truth[kind] = entry
    out["ground_truth"] = truth
    return out


def _share(hits: np.ndarray):
    return _r(float(np.mean(hits))) if len(hits) else None


def _responsibility(bundle: Bundle, mask: np.ndarray) -> np.ndarray:
    """Responsibility rows (see :mod:`.localize`) of the masked misclassified records."""
    idx = np.flatnonzero(mask)
    s = bundle.standardizer(bundle.scores(idx).astype(np.float64))
    gt = bundle.heatmap("ground_truth", records="natural", split="fit").values
    return responsibility(s, gt, bundle.column("label")[idx].astype(int),
                          bundle.column("prediction")[idx].astype(int))


def _r(x: float, nd: int = DIGITS):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd)
