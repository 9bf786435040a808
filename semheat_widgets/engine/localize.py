"""Fault localization of misclassified inputs: encoder or head, and which concepts.

Following Hu et al., "Debugging and Runtime Analysis of Neural Networks with VLMs (A Case
Study)", CAIN 2025 (arXiv 2503.17416): an oracle in VLM space classifies the aligned embedding
``A z`` zero-shot against class prompts, giving ``ŷ_A``. If ``ŷ_A = y`` the features still carry
the true class and the **head** is at fault; if ``ŷ_A = ŷ`` the features already look like the
wrong class and the **encoder** is at fault; otherwise the oracle is *undecided*. A second vote
compares the input's standardised concept scores ``s_i`` with the ground-truth heatmap rows of
``y`` and ``ŷ`` (cosine): closer to ``y`` → head, closer to ``ŷ`` → encoder. The final verdict
is the oracle's when it decides, else the heatmap vote's.

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


@dataclass
class Localization:
    """Per-input results (arrays of length N; entries of correct inputs are empty strings)."""

    oracle_pred: np.ndarray  # zero-shot class of A z
    oracle_verdict: np.ndarray  # str
    heatmap_verdict: np.ndarray  # str
    verdict: np.ndarray  # str: encoder / head / undecided / "" for correct inputs
    responsibility: np.ndarray  # N x C, NaN rows for correct inputs

    def top_concepts(self, columns, k: int = 3) -> list[list[str]]:
        """The ``k`` most responsible concepts of every input (empty for correct inputs)."""
        r = np.nan_to_num(self.responsibility, nan=-np.inf)
        top = np.argsort(-r, axis=1, kind="stable")[:, :k]
        empty = np.isnan(self.responsibility).all(axis=1)
        return [[] if e else [columns[j] for j in row] for row, e in zip(top, empty)]


class FaultLocalizer:
    """Localizes faults given class text embeddings and the ground-truth heatmap (standardised).

    ``ground_truth`` is the ``K x C`` standardised ground-truth heatmap from held-out records;
    rows without examples (NaN) make the heatmap vote abstain for that class.
    """

    def __init__(self, class_embeddings: np.ndarray, ground_truth: np.ndarray):
        self.class_embeddings = np.asarray(class_embeddings, dtype=np.float32)
        self.ground_truth = np.asarray(ground_truth, dtype=np.float64)
        if self.class_embeddings.shape[0] != self.ground_truth.shape[0]:
            raise SemheatError(f"{self.class_embeddings.shape[0]} class embeddings but "
                               f"{self.ground_truth.shape[0]} heatmap rows")

    def localize(self, aligned: np.ndarray, scores_std: np.ndarray, labels, predictions
                 ) -> Localization:
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        n = len(labels)
        if not (len(aligned) == len(scores_std) == len(predictions) == n):
            raise SemheatError("aligned embeddings, scores, labels and predictions differ "
                               "in length")
        wrong = labels != predictions
        oracle = zero_shot(aligned, self.class_embeddings)
        oracle_v = np.full(n, "", dtype=object)
        oracle_v[wrong] = "undecided"
        oracle_v[wrong & (oracle == labels)] = "head"
        oracle_v[wrong & (oracle == predictions)] = "encoder"

        gt = self.ground_truth
        s = unit_rows(np.asarray(scores_std, dtype=np.float64))
        g = unit_rows(np.nan_to_num(gt))
        sim_true = (s * g[labels]).sum(1)
        sim_pred = (s * g[predictions]).sum(1)
        usable = ~np.isnan(gt).any(1)
        heat_v = np.full(n, "", dtype=object)
        heat_v[wrong] = "undecided"
        decided = wrong & usable[labels] & usable[predictions]
        heat_v[decided & (sim_true > sim_pred)] = "head"
        heat_v[decided & (sim_pred > sim_true)] = "encoder"

        verdict = np.where(oracle_v == "undecided", heat_v, oracle_v)

        resp = np.full(scores_std.shape, np.nan)
        if wrong.any():
            resp[wrong] = responsibility(np.asarray(scores_std)[wrong], gt, labels[wrong],
                                         predictions[wrong])
        return Localization(oracle, oracle_v.astype(str), heat_v.astype(str),
                            verdict.astype(str), resp)


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
