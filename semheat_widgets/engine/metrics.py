"""Detection metrics: AUROC, ROC curves, and thresholds at a target false-alarm rate.

Convention everywhere: a *higher* score means *more likely a defect* (the positive class).
"""

from __future__ import annotations

import numpy as np

from ..errors import SemheatError


def _check(scores, positives):
    scores = np.asarray(scores, dtype=np.float64).ravel()
    positives = np.asarray(positives, dtype=bool).ravel()
    if scores.shape != positives.shape:
        raise SemheatError(f"scores and labels differ in length: {scores.size} vs "
                           f"{positives.size}")
    if not np.isfinite(scores).all():
        raise SemheatError("scores contain NaN or inf")
    return scores, positives


def _counts_by_score(scores, positives):
    """The distinct scores, ascending, with how many positives and negatives hold each."""
    distinct, which = np.unique(scores, return_inverse=True)
    total = np.bincount(which, minlength=distinct.size)
    pos = np.bincount(which[positives], minlength=distinct.size)
    return distinct, pos, total - pos


def auroc(scores, positives) -> float:
    """Area under the ROC curve (the same as scikit-learn's, ties counted as half); NaN when
    one of the two classes is empty.

    Computed in NumPy as the Mann-Whitney statistic (the rank-sum with tied scores given
    their average rank): the share of (positive, negative) pairs the score orders correctly,
    a tied pair counting one half. The pairs are counted per distinct score in exact integer
    arithmetic and divided once at the end."""
    scores, positives = _check(scores, positives)
    if positives.all() or not positives.any():
        return float("nan")
    _, pos, neg = _counts_by_score(scores, positives)
    pos, neg = pos.astype(np.int64), neg.astype(np.int64)
    below = np.cumsum(neg) - neg  # negatives strictly below each distinct score
    twice_pairs = int(np.dot(pos, 2 * below + neg))  # 2 x (ordered pairs + half the ties)
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    return float(twice_pairs / (2 * n_pos * n_neg))


ROC_POINTS = 256  # the most points a plotted ROC curve keeps


def roc_curve(scores, positives, max_points: int = ROC_POINTS):
    """``(fpr, tpr, thresholds)`` as scikit-learn's ``roc_curve(..., drop_intermediate=False)``
    gives them (flag a defect when ``score >= threshold``; one threshold per distinct score,
    descending, after a first ``+inf``), thinned to at most ``max_points`` points for plotting
    (both ends kept)."""
    scores, positives = _check(scores, positives)
    if positives.all() or not positives.any():
        return np.array([0.0, 1.0]), np.array([0.0, 1.0]), np.array([np.inf, -np.inf])
    distinct, pos, neg = _counts_by_score(scores, positives)
    tps = np.r_[0, np.cumsum(pos[::-1])].astype(np.float64)
    fps = np.r_[0, np.cumsum(neg[::-1])].astype(np.float64)
    thr = np.r_[np.inf, distinct[::-1]]
    fpr, tpr = fps / fps[-1], tps / tps[-1]
    if tpr.size > max_points:
        keep = np.unique(np.r_[0, np.linspace(0, tpr.size - 1, max_points - 1).astype(int)])
        tpr, fpr, thr = tpr[keep], fpr[keep], thr[keep]
    return fpr, tpr, thr


def threshold_at_fpr(negative_scores, target_fpr: float) -> float:
    """The smallest threshold whose false-alarm rate on ``negative_scores`` is <= target.

    A defect is flagged when ``score > threshold``.
    """
    neg = np.sort(np.asarray(negative_scores, dtype=np.float64).ravel())
    if neg.size == 0:
        raise SemheatError("cannot calibrate a threshold without negative examples")
    if not 0.0 <= target_fpr <= 1.0:
        raise SemheatError(f"target false-alarm rate must be in [0, 1], got {target_fpr}")
    allowed = int(np.floor(target_fpr * neg.size))  # how many negatives may exceed it
    if allowed >= neg.size:
        return float(-np.inf)
    return float(neg[neg.size - 1 - allowed])


def class_thresholds(scores, defect, predictions, n_classes: int, target_fpr: float,
                     per_class: bool = False) -> np.ndarray:
    """One threshold per predicted class at ``target_fpr`` of the non-defective scores: the
    global one, or each class's own where ``per_class`` and that class has non-defective
    inputs."""
    scores, defect = np.asarray(scores), np.asarray(defect, dtype=bool)
    if len(defect) != len(scores):
        raise SemheatError(f"{len(defect)} defect flags for {len(scores)} inputs")
    out = np.full(n_classes, threshold_at_fpr(scores[~defect], target_fpr))
    if per_class:
        for k in range(n_classes):
            neg = scores[(predictions == k) & ~defect]
            if len(neg):
                out[k] = threshold_at_fpr(neg, target_fpr)
    return out


def detection_summary(scores, positives, threshold) -> dict:
    """Counts and rates when flagging ``score > threshold`` (one threshold, or one per input)."""
    scores, positives = _check(scores, positives)
    flagged = scores > np.asarray(threshold, dtype=np.float64)
    caught = int((flagged & positives).sum())
    missed = int((~flagged & positives).sum())
    false_alarms = int((flagged & ~positives).sum())
    passed = int((~flagged & ~positives).sum())
    n = max(scores.size, 1)
    return {
        "caught": caught, "missed": missed, "false_alarms": false_alarms, "passed": passed,
        "accuracy": (caught + passed) / n,
        "tpr": caught / max(caught + missed, 1),
        "fpr": false_alarms / max(false_alarms + passed, 1),
    }
