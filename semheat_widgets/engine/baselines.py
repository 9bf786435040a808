"""Baseline defect detectors beside the heatmap monitor, and their combination.

Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017), energy (Liu et al., NeurIPS
2020) and Mahalanobis distance on the features (Lee et al., NeurIPS 2018) come from the
maintained implementations in pytorch-ood. All scores follow one convention: higher = more
likely a defect.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import SemheatError
from .metrics import auroc

BASELINES = ("msp", "energy", "mahalanobis")


def msp_score(logits) -> np.ndarray:
    from pytorch_ood.detector import MaxSoftmax

    return MaxSoftmax.score(torch.as_tensor(np.asarray(logits), dtype=torch.float32)).numpy()


def energy_score(logits) -> np.ndarray:
    from pytorch_ood.detector import EnergyBased

    return EnergyBased.score(torch.as_tensor(np.asarray(logits), dtype=torch.float32)).numpy()


class MahalanobisBaseline:
    """Class-conditional Gaussians with a shared covariance on the features ``z``.

    The score is pytorch-ood's: half the squared Mahalanobis distance to the nearest class mean,
    under the pooled scatter matrix (not divided by N; a constant factor, same ranking), here
    with a small ridge (``ridge`` x its mean eigenvalue) so that few inputs still give distances.
    """

    def __init__(self, ridge: float = 1e-3):
        self.ridge = ridge

    def fit(self, features, labels, n_classes: int) -> "MahalanobisBaseline":
        from pytorch_ood.detector import Mahalanobis

        labels = np.asarray(labels)
        missing = sorted(set(range(n_classes)) - set(np.unique(labels).tolist()))
        if missing:
            raise SemheatError(f"Mahalanobis needs examples of every class; none for class "
                               f"indices {missing}")
        det = Mahalanobis(None)
        det.fit_features(torch.as_tensor(np.asarray(features), dtype=torch.float32),
                         torch.as_tensor(labels))
        # pytorch-ood inverts the pooled scatter matrix + 1e-6 I in float32, which breaks down
        # when there are about as many features as inputs; a ridge relative to its scale (in
        # float64) keeps the precision matrix well conditioned.
        cov = det.cov.double()
        d = cov.shape[0]
        cov += self.ridge * torch.trace(cov) / d * torch.eye(d, dtype=torch.float64)
        det.precision = torch.linalg.inv(cov).float()
        self.detector_ = det
        return self

    def score(self, features, chunk_size: int = 65536) -> np.ndarray:
        feats = np.asarray(features)
        out = [self.detector_.predict_features(
            torch.as_tensor(feats[s:s + chunk_size], dtype=torch.float32)).numpy()
            for s in range(0, len(feats), chunk_size)]
        return np.concatenate(out).astype(np.float64) if out else np.zeros(0)

    def state(self) -> dict[str, np.ndarray]:
        return {"mahalanobis.mu": self.detector_.mu.numpy(),
                "mahalanobis.precision": self.detector_.precision.numpy()}

    @classmethod
    def from_state(cls, state: dict) -> "MahalanobisBaseline":
        from pytorch_ood.detector import Mahalanobis

        self = cls()
        det = Mahalanobis(None)
        det.mu = torch.as_tensor(np.asarray(state["mahalanobis.mu"]), dtype=torch.float32)
        det.precision = torch.as_tensor(np.asarray(state["mahalanobis.precision"]),
                                        dtype=torch.float32)
        self.detector_ = det
        return self


class LogisticCombiner:
    """Logistic regression on a few standardised defect scores (Newton's method, L2 ridge).

    Fit on a calibration split, evaluated elsewhere; the output is a defect log-odds.
    """

    def __init__(self, l2: float = 1e-3, iterations: int = 50):
        self.l2, self.iterations = l2, iterations

    def fit(self, X, y) -> "LogisticCombiner":
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        if y.min() == y.max():
            raise SemheatError("the combination needs both defective and correct examples")
        self.mean_, self.std_ = X.mean(0), np.maximum(X.std(0), 1e-12)
        A = np.c_[np.ones(len(X)), (X - self.mean_) / self.std_]
        w = np.zeros(A.shape[1])
        reg = self.l2 * np.eye(A.shape[1])
        reg[0, 0] = 0.0
        for _ in range(self.iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(A @ w, -30, 30)))
            grad = A.T @ (p - y) + reg @ w
            hess = (A * (p * (1 - p))[:, None]).T @ A + reg + 1e-9 * np.eye(len(w))
            step = np.linalg.solve(hess, grad)
            w -= step
            if np.abs(step).max() < 1e-10:
                break
        self.coef_ = w
        return self

    def decision_function(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        return np.c_[np.ones(len(X)), (X - self.mean_) / self.std_] @ self.coef_


def best_baseline(scores: dict[str, np.ndarray], positives) -> str:
    """The baseline with the highest AUROC on the given (calibration) records."""
    return max(BASELINES, key=lambda k: np.nan_to_num(auroc(scores[k], positives), nan=-1.0))
