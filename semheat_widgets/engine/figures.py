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

from ..errors import SemheatError
from .bundle import Bundle
from .detect.concept_monitor import top_reasons
from .detect.names import MONITORS
from .detect.protocol import detector_labels, score_column
from .heatmaps import ConfusionSums, Standardizer, heatmap
from .localize import VERDICTS as VERDICT_KINDS
from .localize import concept_ranking, image_concept_scores, responsibility, verdict_counts
from .metrics import auroc, detection_summary, roc_curve, threshold_at_fpr
from .tasks import TASKS, Task, task_named, task_of

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
    if bundle.has_column("fault_decided"):
        conf, decided = verdict_confidence(bundle)
        out["decided_counts"] = verdict_counts(decided[wrong])
        out["decided_confidence"] = {v: _r(float(conf[wrong & (decided == v)].mean()))
                                     for v in VERDICT_KINDS if (wrong & (decided == v)).any()}
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
                 **_confidence_figures(bundle, m, probe, kind),
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
            # the paper's reading (what the aligned features show), kept beside
            aligned = [c for c, _ in concept_ranking(_responsibility(bundle, m, shown=False),
                                                     bundle.concept_names)]
            entry["responsible_concept_rank_aligned"] = aligned.index(concept) + 1 \
                if concept in aligned else None
        truth[kind] = entry
    out["ground_truth"] = truth
    return out


def verdict_confidence(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, decided)`` of every record: the bundle's columns, or — for a bundle
    written before they existed — recomputed exactly as the pipeline does (concept probe fit
    on the ``fit`` split, oracle temperature on ``calib``; see :mod:`.localize`)."""
    if bundle.has_column("fault_decided"):
        return (bundle.column("fault_confidence").astype(np.float64),
                bundle.column("fault_decided").astype(str))
    from .localize import FaultLocalizer

    fit, cal = bundle.mask(split="fit"), bundle.mask(split="calib")
    z = bundle.standardizer(bundle.scores().astype(np.float64))
    labels = bundle.column("label").astype(int)
    gt = bundle.heatmap("ground_truth", records="natural", split="fit").values
    loc = FaultLocalizer(bundle.class_embeddings, gt).fit_probe(z[fit], labels[fit], z[cal],
                                                                labels[cal])
    aligned = np.asarray(bundle.arrays["aligned"])
    loc.fit_oracle_scale(aligned[cal], labels[cal])
    out = loc.localize(aligned, z, labels, bundle.column("prediction").astype(int))
    return out.confidence.astype(np.float64), out.decided.astype(str)


def _confidence_figures(bundle: Bundle, m: np.ndarray, probe, kind: str) -> dict:
    """How the verdict's confidence holds on known faults: the share decided (coverage), the
    accuracy of the decided ones, and the calibration error (ECE, 5 bins of confidence) —
    against the probe truth where there is one, the construction otherwise."""
    conf, decided = verdict_confidence(bundle)
    truth = np.where(np.isin(probe, ("encoder", "head")), probe, "") if probe is not None \
        else np.full(bundle.n, kind, dtype=object)
    known = m & (truth != "")
    if not known.any():
        return {}
    fault = bundle.column("fault").astype(str)
    hit = fault[known] == truth[known]
    c = conf[known]
    edges = np.linspace(0.5, 1.0, 6)
    ece = sum(float(np.mean(b)) * abs(float(hit[b].mean()) - float(c[b].mean()))
              for b in ((c >= lo) & ((c < hi) | (hi == 1.0)) for lo, hi in
                        zip(edges[:-1], edges[1:])) if b.any())
    d = decided[known] != "undecided"
    return {"coverage": _r(float(d.mean())),
            "decided_accuracy": _share(decided[known][d] == truth[known][d]),
            "mean_confidence": _r(float(c.mean())), "confidence_ece": _r(ece)}


def _share(hits: np.ndarray):
    return _r(float(np.mean(hits))) if len(hits) else None


def _responsibility(bundle: Bundle, mask: np.ndarray, shown: bool = True) -> np.ndarray:
    """Responsibility rows (see :mod:`.localize`) of the masked misclassified records; what the
    inputs show is read by the VLM from their images where the bundle keeps the image
    embeddings (``shown``), from the aligned features otherwise."""
    idx = np.flatnonzero(mask)
    s = bundle.standardizer(bundle.scores(idx).astype(np.float64))
    gt = bundle.heatmap("ground_truth", records="natural", split="fit").values
    labels = bundle.column("label")[idx].astype(int)
    preds = bundle.column("prediction")[idx].astype(int)
    if not shown or "image_emb" not in bundle.arrays:
        return responsibility(s, gt, labels, preds)
    shown_std, shown_truth = shown_scores(bundle, idx)
    return responsibility(s, gt, labels, preds, shown_std, shown_truth)


def shown_scores(bundle: Bundle, rows) -> tuple[np.ndarray, np.ndarray]:
    """What the images of ``rows`` show, read by the VLM from their pixels: standardised
    concept scores of their image embeddings, and the ground-truth heatmap of those scores
    over the natural ``fit`` inputs (the reference the bundle's heatmaps use)."""
    T = bundle.concept_embeddings
    emb = bundle.arrays["image_emb"]
    fit = np.flatnonzero(bundle.mask(perturbation="natural", split="fit"))
    p_fit = image_concept_scores(np.asarray(emb[fit]), T).astype(np.float64)
    st = Standardizer.fit(p_fit, bundle.concept_names)
    stats = ConfusionSums.from_scores(p_fit, bundle.column("label")[fit],
                                      bundle.column("prediction")[fit], len(bundle.classes))
    truth = heatmap("ground_truth", stats, bundle.classes, bundle.concept_names, st).values
    return st(image_concept_scores(np.asarray(emb[np.asarray(rows)]), T).astype(np.float64)), \
        truth


def _r(x: float, nd: int = DIGITS):
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else round(float(x), nd)


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
