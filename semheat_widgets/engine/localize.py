"""Fault localization of misclassified inputs: encoder or head, and which concepts.

**The paper's rule** (``rule="paper"``; Hu et al., "Debugging and Runtime Analysis of Neural
Networks with VLMs (A Case Study)", CAIN 2025, arXiv 2503.17416): an oracle in VLM space
classifies the aligned embedding ``A z`` zero-shot against class prompts, giving ``ŷ_A``. If
``ŷ_A = y`` the features still carry the true class and the **head** is at fault; if
``ŷ_A = ŷ`` the features already look like the wrong class and the **encoder** is at fault;
otherwise the oracle is *undecided*, and a second vote decides: the input's standardised concept
scores ``s_i`` against the ground-truth heatmap rows of ``y`` and ``ŷ`` (cosine), closer to
``y`` → head, closer to ``ŷ`` → encoder.

**The consensus rule** (``rule="consensus"``, this project's default): the head is blamed only
when two readers of the aligned features agree that they still carry the true class — the VLM
oracle above, and a *concept probe*: a multinomial logistic regression from the standardised
concept profile to the true class, fit on the reference (``fit``) inputs of the classifier's
own distribution, its strength chosen by log-loss on ``calib``. Otherwise the encoder is blamed.
The concept probe reads concepts as the classifier's own data taught them, so a concept that
was spuriously tied to a class there pulls an input towards that class, as it does for the
classifier's head; the oracle keeps the VLM's view. Measured on a family of seeded faults (see
``semheat localize --family``), it matches a linear probe of the classifier's own features far
more often than the paper's rule, at a small cost on head faults.

Responsible concepts of an input: concepts it shows unusually strongly for its true class that
are also typical of the predicted class, ``r_j = min(s_ij − GT[y]_j, GT[ŷ]_j − GT[y]_j)``.
The zero-shot prediction of the VLM on the raw image is kept beside, as a check of whether the
image itself is ambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SemheatError
from .vectors import unit_rows, zero_shot

VERDICTS = ("encoder", "head", "undecided")
RULES = ("consensus", "paper")
PROBE_STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0)  # inverse ridge strengths tried for the probe
PROBE_MAX_ROWS = 50_000  # reference (and calibration) inputs the probe is fit (tuned) on, at most


@dataclass
class Localization:
    """Per-input results (arrays of length N; entries of correct inputs are empty strings)."""

    oracle_pred: np.ndarray  # zero-shot class of A z
    oracle_verdict: np.ndarray  # (object arrays of str)
    heatmap_verdict: np.ndarray
    paper_verdict: np.ndarray  # the paper's rule
    probe_verdict: np.ndarray  # the concept probe's vote ("" without a probe)
    verdict: np.ndarray  # the chosen rule's: encoder / head / undecided / "" if correct
    responsibility: np.ndarray  # N x C float32, NaN rows for correct inputs

    def top_concepts(self, columns, k: int = 3) -> list[list[str]]:
        """The ``k`` most responsible concepts of every input (empty for correct inputs)."""
        out: list[list[str]] = [[] for _ in range(len(self.responsibility))]
        rows = np.flatnonzero(~np.isnan(self.responsibility).all(axis=1))
        r = np.nan_to_num(self.responsibility[rows].astype(np.float64), nan=-np.inf)
        top = np.argsort(-r, axis=1, kind="stable")[:, :k]
        for i, row in zip(rows, top):
            out[i] = [columns[j] for j in row]
        return out


class FaultLocalizer:
    """Localizes faults given class text embeddings and the ground-truth heatmap (standardised).

    ``ground_truth`` is the ``K x C`` standardised ground-truth heatmap from held-out records;
    rows without examples (NaN) make the heatmap vote abstain for that class. The consensus
    rule needs :meth:`fit_probe` first.
    """

    def __init__(self, class_embeddings: np.ndarray, ground_truth: np.ndarray,
                 rule: str = "consensus"):
        self.class_embeddings = np.asarray(class_embeddings, dtype=np.float32)
        self.ground_truth = np.asarray(ground_truth, dtype=np.float64)
        if self.class_embeddings.shape[0] != self.ground_truth.shape[0]:
            raise SemheatError(f"{self.class_embeddings.shape[0]} class embeddings but "
                               f"{self.ground_truth.shape[0]} heatmap rows")
        if rule not in RULES:
            raise SemheatError(f"unknown localization rule {rule!r}; choose from {RULES}")
        self.rule = rule
        self.probe_ = None

    def fit_probe(self, scores_std, labels, calib_scores_std, calib_labels,
                  max_rows: int = PROBE_MAX_ROWS, seed: int = 0) -> "FaultLocalizer":
        """The concept probe: logistic regression from standardised concept profiles to true
        classes on reference inputs, its strength chosen by log-loss on calibration inputs.
        A few concepts need no more than ``max_rows`` inputs of each: larger sets are
        subsampled (seeded), which keeps large analyses fast."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss

        scores_std, labels = _subsample(scores_std, labels, max_rows, seed)
        calib_scores_std, calib_labels = _subsample(calib_scores_std, calib_labels, max_rows,
                                                    seed + 1)
        k = len(self.class_embeddings)
        if len(np.unique(labels)) < 2:
            raise SemheatError("the concept probe needs reference inputs of several classes")
        best = None
        for c in PROBE_STRENGTHS:
            model = LogisticRegression(C=c, max_iter=3000).fit(scores_std, labels)
            proba = _full_proba(model, calib_scores_std, k)
            loss = log_loss(calib_labels, proba, labels=np.arange(k)) if len(calib_labels) \
                else 0.0
            if best is None or loss < best[0]:
                best = (loss, c, model)
        self.probe_strength_, self.probe_ = best[1], best[2]
        return self

    def localize(self, aligned: np.ndarray | None, scores_std: np.ndarray, labels, predictions,
                 *, oracle_pred: np.ndarray | None = None) -> Localization:
        """Verdicts of every input. The oracle's class comes from the aligned embeddings, or is
        given as ``oracle_pred`` (computed chunk by chunk over a large analysis)."""
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        n = len(labels)
        oracle = zero_shot(aligned, self.class_embeddings) if oracle_pred is None \
            else np.asarray(oracle_pred)
        if not (len(oracle) == len(scores_std) == len(predictions) == n):
            raise SemheatError("aligned embeddings, scores, labels and predictions differ "
                               "in length")
        wrong = labels != predictions
        oracle_v = _votes(wrong, oracle == labels, oracle == predictions)

        gt = self.ground_truth
        s = unit_rows(np.asarray(scores_std, dtype=np.float64)[wrong])  # (only mistakes vote)
        g = unit_rows(np.nan_to_num(gt))
        sim_true, sim_pred = np.zeros(n), np.zeros(n)
        sim_true[wrong] = (s * g[labels[wrong]]).sum(1)
        sim_pred[wrong] = (s * g[predictions[wrong]]).sum(1)
        usable = ~np.isnan(gt).any(1)
        decided = wrong & usable[labels] & usable[predictions]
        heat_v = _votes(wrong, decided & (sim_true > sim_pred), decided & (sim_pred > sim_true))
        paper = np.where(oracle_v == "undecided", heat_v, oracle_v)

        probe_v = np.full(n, "", dtype=object)
        if self.probe_ is not None and wrong.any():
            proba = _full_proba(self.probe_, np.asarray(scores_std)[wrong],
                                len(self.class_embeddings))
            rows = np.arange(int(wrong.sum()))
            true_likelier = proba[rows, labels[wrong]] > proba[rows, predictions[wrong]]
            probe_v[wrong] = np.where(true_likelier, "head", "encoder")
        if self.rule == "consensus":
            if self.probe_ is None:
                raise SemheatError("the consensus rule needs fit_probe() first")
            verdict = np.where(wrong, np.where((oracle_v == "head") & (probe_v == "head"),
                                               "head", "encoder"), "")
        else:
            verdict = paper

        resp = np.full(scores_std.shape, np.nan, dtype=np.float32)
        if wrong.any():
            resp[wrong] = responsibility(np.asarray(scores_std)[wrong], gt, labels[wrong],
                                         predictions[wrong])
        # object arrays of a few shared strings: 8 bytes a row, not 4 per character
        return Localization(oracle, oracle_v, heat_v, paper.astype(object), probe_v,
                            verdict.astype(object), resp)


def _subsample(X, y, max_rows: int, seed: int):
    X, y = np.asarray(X), np.asarray(y)
    if len(y) <= max_rows:
        return X, y
    keep = np.sort(np.random.default_rng(seed).choice(len(y), size=max_rows, replace=False))
    return X[keep], y[keep]


def _votes(wrong, head, encoder) -> np.ndarray:
    out = np.full(len(wrong), "", dtype=object)
    out[wrong] = "undecided"
    out[wrong & head] = "head"
    out[wrong & encoder] = "encoder"
    return out


def _full_proba(model, X, n_classes: int) -> np.ndarray:
    """Class probabilities over all ``n_classes`` (a class absent from training gets 0)."""
    out = np.zeros((len(X), n_classes))
    if len(X):
        out[:, model.classes_] = model.predict_proba(X)
    return out


def responsibility(scores_std, ground_truth, labels, predictions) -> np.ndarray:
    """``r_ij = min(s_ij − GT[y_i]_j, GT[ŷ_i]_j − GT[y_i]_j)`` for misclassified inputs."""
    s = np.asarray(scores_std, dtype=np.float64)
    gy = ground_truth[np.asarray(labels)]
    gp = ground_truth[np.asarray(predictions)]
    return np.minimum(s - gy, gp - gy)


def verdict_counts(verdicts) -> dict[str, int]:
    verdicts = np.asarray(verdicts).astype(str)
    return {v: int((verdicts == v).sum()) for v in VERDICTS}


def concept_ranking(responsibility: np.ndarray, columns) -> list[tuple[str, float]]:
    """Concepts ranked by mean responsibility over the given (misclassified) inputs."""
    r = np.asarray(responsibility, dtype=np.float64)
    r = r[~np.isnan(r).all(axis=1)] if r.ndim == 2 else r
    if r.size == 0:
        return []
    mean = np.nanmean(r, axis=0)
    order = np.argsort(-mean, kind="stable")
    return [(columns[j], float(mean[j])) for j in order]
