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


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    # Boundaries of runs of equal values.
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])
    ends = np.r_[starts[1:], x.size]
    avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def auroc(scores, positives) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n_pos n_neg)), ties counted as half.

    NaN when one of the two classes is empty.
    """
    scores, positives = _check(scores, positives)
    n_pos = int(positives.sum())
    n_neg = positives.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def roc_curve(scores, positives, max_points: int = 256):
    """``(fpr, tpr, thresholds)``: flag a defect when ``score >= threshold``.

    Thinned to at most ``max_points`` points (always keeping both ends) for plotting.
    """
    scores, positives = _check(scores, positives)
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positives[order]
    last = np.r_[s[1:] != s[:-1], True]  # last element of each run of equal scores
    tp = np.cumsum(p)[last]
    fp = np.cumsum(~p)[last]
    n_pos, n_neg = max(int(p.sum()), 1), max(int((~p).sum()), 1)
    tpr = np.r_[0.0, tp / n_pos]
    fpr = np.r_[0.0, fp / n_neg]
    thr = np.r_[np.inf, s[last]]
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
