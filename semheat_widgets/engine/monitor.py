"""The heatmap runtime monitor: flag inputs whose concept profile looks like past mistakes.

Following Hu et al. (CAIN 2025, arXiv 2503.17416): for an input predicted ``k`` with
standardised concept scores ``s``, compare ``s`` with the *correct* and the *incorrect*
reference rows of class ``k`` (from held-out data); the defect score is
``sim(s, incorrect[k]) − sim(s, correct[k])`` (cosine by default). A threshold calibrated on
held-out data, globally or per class, to a target false-alarm rate turns it into a verdict.
For adversarial inputs the incorrect rows come from attacked versions of the held-out set.

At runtime this costs two tiny matrix products on top of the classifier's forward pass
(:class:`RuntimeMonitor`).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SemheatError
from .metrics import threshold_at_fpr

SIMILARITIES = ("cosine", "euclidean")


def _group_means(scores: np.ndarray, groups: np.ndarray, n_groups: int):
    sums = np.zeros((n_groups, scores.shape[1]))
    np.add.at(sums, groups, scores)
    counts = np.bincount(groups, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


class HeatmapMonitor:
    """Reference rows per predicted class and a calibrated threshold (scikit-learn style)."""

    def __init__(self, similarity: str = "cosine"):
        if similarity not in SIMILARITIES:
            raise SemheatError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.similarity = similarity

    def fit(self, scores, predictions, defect, n_classes: int) -> "HeatmapMonitor":
        """Reference rows: mean scores of non-defective and defective inputs per prediction.

        A class without defective (or without correct) examples falls back to the mean over
        all classes, so every class can be monitored.
        """
        scores = np.asarray(scores, dtype=np.float64)
        predictions = np.asarray(predictions)
        defect = np.asarray(defect, dtype=bool)
        if not (len(scores) == len(predictions) == len(defect)):
            raise SemheatError("scores, predictions and defect flags differ in length")
        if not np.isfinite(scores).all():
            raise SemheatError("concept scores contain NaN or inf")
        if defect.all() or not defect.any():
            raise SemheatError("the monitor needs both defective and correct reference inputs")
        ok, n_ok = _group_means(scores[~defect], predictions[~defect], n_classes)
        bad, n_bad = _group_means(scores[defect], predictions[defect], n_classes)
        ok[n_ok == 0] = scores[~defect].mean(0)
        bad[n_bad == 0] = scores[defect].mean(0)
        self.correct_rows_, self.incorrect_rows_ = ok, bad
        self.correct_counts_, self.incorrect_counts_ = n_ok, n_bad
        self.thresholds_ = np.zeros(n_classes)
        return self

    def _sim(self, s: np.ndarray, ref: np.ndarray) -> np.ndarray:
        if self.similarity == "cosine":
            num = (s * ref).sum(1)
            return num / np.maximum(np.linalg.norm(s, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
        return -np.linalg.norm(s - ref, axis=1)

    def similarities(self, scores, predictions) -> tuple[np.ndarray, np.ndarray]:
        """``(sim to incorrect row, sim to correct row)`` of each input's predicted class."""
        if not hasattr(self, "correct_rows_"):
            raise SemheatError("the monitor is not fitted yet")
        s = np.asarray(scores, dtype=np.float64)
        p = np.asarray(predictions)
        return self._sim(s, self.incorrect_rows_[p]), self._sim(s, self.correct_rows_[p])

    def score(self, scores, predictions) -> np.ndarray:
        """Defect score per input: similarity to incorrect minus similarity to correct."""
        bad, ok = self.similarities(scores, predictions)
        return bad - ok

    def calibrate(self, scores, predictions, defect, target_fpr: float = 0.05,
                  per_class: bool = False) -> "HeatmapMonitor":
        """Thresholds so that at most ``target_fpr`` of the non-defective inputs are flagged.

        Per class where asked and where that class has non-defective inputs; elsewhere the
        global threshold.
        """
        d = self.score(scores, predictions)
        defect = np.asarray(defect, dtype=bool)
        p = np.asarray(predictions)
        glob = threshold_at_fpr(d[~defect], target_fpr)
        self.thresholds_ = np.full(len(self.correct_rows_), glob)
        if per_class:
            for k in range(len(self.thresholds_)):
                neg = d[(p == k) & ~defect]
                if len(neg):
                    self.thresholds_[k] = threshold_at_fpr(neg, target_fpr)
        self.target_fpr_, self.per_class_ = target_fpr, per_class
        return self

    def predict(self, scores, predictions) -> np.ndarray:
        """True where an input is flagged as a likely defect."""
        p = np.asarray(predictions)
        return self.score(scores, p) > self.thresholds_[p]

    # -- persistence -----------------------------------------------------------------------
    def state(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}.correct_rows": self.correct_rows_.astype(np.float32),
                f"{prefix}.incorrect_rows": self.incorrect_rows_.astype(np.float32),
                f"{prefix}.correct_counts": self.correct_counts_.astype(np.int64),
                f"{prefix}.incorrect_counts": self.incorrect_counts_.astype(np.int64),
                f"{prefix}.thresholds": self.thresholds_.astype(np.float32)}

    @classmethod
    def from_state(cls, state: dict, prefix: str, similarity: str = "cosine"):
        self = cls(similarity)
        self.correct_rows_ = np.asarray(state[f"{prefix}.correct_rows"], dtype=np.float64)
        self.incorrect_rows_ = np.asarray(state[f"{prefix}.incorrect_rows"], dtype=np.float64)
        self.correct_counts_ = np.asarray(state[f"{prefix}.correct_counts"])
        self.incorrect_counts_ = np.asarray(state[f"{prefix}.incorrect_counts"])
        self.thresholds_ = np.asarray(state[f"{prefix}.thresholds"], dtype=np.float64)
        return self


class RuntimeMonitor(torch.nn.Module):
    """Classifier + monitor in one module: ``forward(images) -> (logits, defect_score, flag)``.

    Everything after the classifier's own forward pass is a handful of small tensor ops:
    ``s = norm(z W + b) T^T``, standardise, compare with two reference rows.
    """

    def __init__(self, split, aligner, concept_embeddings, standardizer, monitor: HeatmapMonitor):
        super().__init__()
        self.split = split
        self.similarity = monitor.similarity
        f32 = dict(dtype=torch.float32)
        dev = split.device

        def buf(name, value):
            self.register_buffer(name, torch.as_tensor(np.asarray(value), **f32).to(dev))

        buf("W", aligner.W_)
        buf("b", aligner.b_)
        buf("T", concept_embeddings)
        buf("mu", standardizer.mean)
        buf("sigma", standardizer.std)
        ok, bad = monitor.correct_rows_, monitor.incorrect_rows_
        if self.similarity == "cosine":  # unit rows: a cosine is then one dot product
            ok = ok / np.maximum(np.linalg.norm(ok, axis=1, keepdims=True), 1e-12)
            bad = bad / np.maximum(np.linalg.norm(bad, axis=1, keepdims=True), 1e-12)
        buf("ok", ok)
        buf("bad", bad)
        buf("thr", monitor.thresholds_)

    @torch.inference_mode()
    def forward(self, images):
        z, logits = self.split.features_and_logits(images)
        return (logits,) + self.check(z, logits)

    def check(self, z: torch.Tensor, logits: torch.Tensor):
        """Defect score and flag from features and logits already computed."""
        a = torch.nn.functional.normalize(z.float() @ self.W + self.b, dim=1)
        s = (a @ self.T.T - self.mu) / self.sigma
        k = logits.argmax(1)
        if self.similarity == "cosine":
            s = torch.nn.functional.normalize(s, dim=1)
            score = (s * self.bad[k]).sum(1) - (s * self.ok[k]).sum(1)
        else:
            score = (s - self.ok[k]).norm(dim=1) - (s - self.bad[k]).norm(dim=1)
        return score, score > self.thr[k]
