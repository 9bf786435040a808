"""The heatmap runtime monitor: flag inputs whose concept profile looks like past mistakes.

Following Hu et al. (CAIN 2025, arXiv 2503.17416): for an input predicted ``k`` with
standardised concept scores ``s``, compare ``s`` with the *correct* and the *incorrect*
reference rows of class ``k`` (from held-out data); the defect score is
``sim(s, incorrect[k]) − sim(s, correct[k])`` (cosine by default). A threshold calibrated on
held-out data, globally or per class, to a target false-alarm rate turns it into a verdict.
For adversarial inputs the incorrect rows come from attacked versions of the held-out set.

The monitor owns its concepts' standardisation and covers exactly the concepts it was fitted
with (concepts added to a bundle later are ignored). :func:`defect_score` is the one formula,
used offline on NumPy arrays and at runtime, on tensors, by :class:`RuntimeMonitor` — a few
small tensor operations on top of the classifier's own forward pass.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ...errors import SemheatError
from ..bundle.store import row_chunks
from ..vectors import SCORE_CHUNK, row_norms, unit_rows
from .protocol import Evidence, ThresholdMonitor

SIMILARITIES = ("cosine", "euclidean")


def similarity(s, ref, kind: str):
    """Row-wise similarity of concept profiles: cosine, or minus the Euclidean distance.
    NumPy arrays or torch tensors alike."""
    if kind == "cosine":
        return (unit_rows(s) * unit_rows(ref)).sum(1)
    return -row_norms(s - ref)


def defect_score(s, ok, bad, kind: str):
    """``sim(s, bad) − sim(s, ok)`` row by row (``ok``/``bad``: each row's reference rows)."""
    return similarity(s, bad, kind) - similarity(s, ok, kind)


def _means_and_counts(scores: np.ndarray, groups: np.ndarray, n_groups: int):
    """Mean row of ``scores`` per group and the group sizes (an empty group: a NaN row)."""
    sums = np.zeros((n_groups, scores.shape[1]))
    np.add.at(sums, groups, scores)
    counts = np.bincount(groups, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None], counts


class HeatmapMonitor(ThresholdMonitor):
    """Reference rows per predicted class, a standardiser and calibrated thresholds.

    ``mean`` / ``std``: the per-concept standardisation of the concept scores it is given
    (fitted on held-out data by the pipeline). Fitted state ends in ``_``.
    """

    name, label, per_task, order = "heatmap", "heatmap monitor (paper)", True, 0

    @property
    def n_classes(self) -> int:
        return len(self.correct_rows_)

    def __init__(self, similarity: str = "cosine", mean=None, std=None):
        if similarity not in SIMILARITIES:
            raise SemheatError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        self.similarity = similarity
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float64)
        self.std = None if std is None else np.asarray(std, dtype=np.float64)

    # -- standardisation and the concepts covered -----------------------------------------
    @property
    def n_concepts(self) -> int:
        return self.correct_rows_.shape[1]

    def standardized(self, concept_scores) -> np.ndarray:
        """z-scores of the concepts this monitor covers (later columns are left out)."""
        raw = np.asarray(concept_scores, dtype=np.float64)
        c = len(self.mean)
        if raw.shape[1] < c:
            raise SemheatError(f"the monitor covers {c} concepts; the scores have "
                               f"{raw.shape[1]}")
        return (raw[:, :c] - self.mean) / self.std

    # -- fitting ----------------------------------------------------------------------------
    def fit(self, evidence: Evidence, defect=None) -> "HeatmapMonitor":
        """Reference rows: mean standardised scores of the non-defective and the defective
        inputs per prediction. A class without defective (or without correct) examples falls
        back to the mean over all classes, so every class can be monitored."""
        raw = evidence.need("concept_scores", "heatmap")
        if self.mean is None:
            self.mean, self.std = raw.mean(0), raw.std(0)
        if not np.isfinite(np.asarray(raw, dtype=np.float64)).all():
            raise SemheatError("concept scores contain NaN or inf")
        scores, predictions = self.standardized(raw), evidence.predictions
        defect = np.asarray(defect, dtype=bool)
        if not (len(scores) == len(predictions) == len(defect)):
            raise SemheatError("scores, predictions and defect flags differ in length")
        if defect.all() or not defect.any():
            raise SemheatError("the monitor needs both defective and correct reference inputs")
        n_classes = np.asarray(evidence.logits).shape[1]
        ok, n_ok = _means_and_counts(scores[~defect], predictions[~defect], n_classes)
        bad, n_bad = _means_and_counts(scores[defect], predictions[defect], n_classes)
        ok[n_ok == 0] = scores[~defect].mean(0)
        bad[n_bad == 0] = scores[defect].mean(0)
        self.correct_rows_, self.incorrect_rows_ = ok, bad
        self.correct_counts_, self.incorrect_counts_ = n_ok, n_bad
        self.thresholds_ = np.zeros(n_classes)
        return self

    # -- scoring ----------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "correct_rows_"):
            raise SemheatError("the monitor is not fitted yet")

    def score_samples(self, evidence: Evidence) -> np.ndarray:
        """Defect score per input: similarity to incorrect minus similarity to correct."""
        bad, ok = self.similarities(evidence)
        return bad - ok

    def similarities(self, evidence: Evidence) -> tuple[np.ndarray, np.ndarray]:
        """``(similarity to the incorrect row, to the correct row)`` of each input's
        predicted class (what the views explain a score with); in chunks of rows."""
        self._check_fitted()
        raw = evidence.need("concept_scores", "heatmap")
        p = evidence.predictions
        bad, ok = np.empty(len(p)), np.empty(len(p))
        for rows in row_chunks(len(p), SCORE_CHUNK):
            s = self.standardized(raw[rows])
            bad[rows] = similarity(s, self.incorrect_rows_[p[rows]], self.similarity)
            ok[rows] = similarity(s, self.correct_rows_[p[rows]], self.similarity)
        return bad, ok

    def predict(self, evidence: Evidence) -> np.ndarray:
        """True where an input is flagged as a likely defect."""
        return self.score_samples(evidence) > self.thresholds_[evidence.predictions]

    # -- persistence -----------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {"correct_rows": self.correct_rows_.astype(np.float32),
                "incorrect_rows": self.incorrect_rows_.astype(np.float32),
                "correct_counts": self.correct_counts_.astype(np.int64),
                "incorrect_counts": self.incorrect_counts_.astype(np.int64),
                "thresholds": self.thresholds_.astype(np.float32),
                "mean": self.mean.astype(np.float32), "std": self.std.astype(np.float32)}

    @classmethod
    def from_state(cls, state: dict, info: dict) -> "HeatmapMonitor":
        self = cls(info.get("similarity", "cosine"), state["mean"], state["std"])
        self.correct_rows_ = np.asarray(state["correct_rows"], dtype=np.float64)
        self.incorrect_rows_ = np.asarray(state["incorrect_rows"], dtype=np.float64)
        self.correct_counts_ = np.asarray(state["correct_counts"])
        self.incorrect_counts_ = np.asarray(state["incorrect_counts"])
        self.thresholds_ = np.asarray(state["thresholds"], dtype=np.float64)
        return self


@lru_cache(maxsize=None)
def _runtime_monitor_class():
    """:class:`RuntimeMonitor`, defined on first use: it is a ``torch.nn.Module``, and only
    running a classifier needs torch (reading a bundle's monitor does not)."""
    import torch

    class RuntimeMonitor(torch.nn.Module):
        """Classifier + monitor in one module: ``forward(images) -> (logits, score, flag)``.

        Everything after the classifier's own forward pass is a handful of small operations: for
        the heatmap monitor, tensor ops on the classifier's device (``s = norm(z W + b) T^T``,
        standardise, :func:`defect_score` against two reference rows); for the concept-space
        monitor (:mod:`.concept_monitor`), its :meth:`score_features` on the features and logits.
        """

        def __init__(self, classifier, aligner, concept_embeddings, monitor):
            super().__init__()
            self.classifier = classifier
            self.monitor = monitor
            if not isinstance(monitor, HeatmapMonitor):
                if not hasattr(monitor, "score_features"):
                    raise SemheatError(f"{type(monitor).__name__} cannot run at runtime")
                return
            self.similarity = monitor.similarity
            c = monitor.n_concepts  # the concepts the monitor was fitted with, no more
            dev = classifier.device

            def buf(name, value):
                self.register_buffer(name, torch.as_tensor(np.asarray(value), dtype=torch.float32,
                                                           device=dev))

            buf("W", aligner.W_)
            buf("b", aligner.b_)
            buf("T", np.asarray(concept_embeddings)[:c])
            buf("mu", monitor.mean)
            buf("sigma", monitor.std)
            buf("ok", monitor.correct_rows_)
            buf("bad", monitor.incorrect_rows_)
            buf("thr", monitor.thresholds_)

        @torch.inference_mode()
        def forward(self, images):
            z, logits = self.classifier.features_and_logits(images)
            return (logits,) + self.check(z, logits)

        def check(self, z: torch.Tensor, logits: torch.Tensor):
            """Defect score and flag from features and logits already computed."""
            k = logits.argmax(1)
            if not isinstance(self.monitor, HeatmapMonitor):
                score = torch.as_tensor(self.monitor.score_features(
                    z.float().flatten(1).cpu().numpy(), logits.float().cpu().numpy()),
                    device=logits.device)
                thresholds = torch.as_tensor(self.monitor.thresholds_, device=logits.device)
                return score, score > thresholds[k]
            a = unit_rows(z.float() @ self.W + self.b)
            s = (a @ self.T.T - self.mu) / self.sigma
            score = defect_score(s, self.ok[k], self.bad[k], self.similarity)
            return score, score > self.thr[k]

    RuntimeMonitor.__qualname__ = "RuntimeMonitor"
    return RuntimeMonitor


def __getattr__(name):
    if name == "RuntimeMonitor":
        return _runtime_monitor_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def runtime_monitor(bundle, classifier, task="misclassification", monitor=None
                    ) -> "RuntimeMonitor":  # noqa: F821 (built on first use)
    """A :class:`RuntimeMonitor` for ``classifier`` from a bundle's fitted ``task`` monitor
    (``monitor``: another fitted one by name, e.g. ``"heatmap"``, the paper's)."""
    fitted = bundle.monitor(task) if monitor is None else bundle.detector(monitor, task)
    return _runtime_monitor_class()(classifier, bundle.aligner, bundle.concept_embeddings,
                                    fitted)
