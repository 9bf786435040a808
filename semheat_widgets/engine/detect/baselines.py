"""Baseline defect detectors beside the heatmap monitor, and their combination.

Maximum softmax probability (Hendrycks & Gimpel, ICLR 2017), energy (Liu et al., NeurIPS
2020) and Mahalanobis distance on the features (Lee et al., NeurIPS 2018) come from the
maintained implementations in pytorch-ood; the combination is scikit-learn's logistic
regression. All follow :mod:`.protocol`: higher score = more likely a defect.
"""

from __future__ import annotations

import numpy as np

from ...errors import SemheatError
from ..metrics import auroc
from ..bundle.store import read_rows, row_chunks
from ..vectors import EPS
from .protocol import Detector, Evidence

BASELINES = ("msp", "energy", "mahalanobis")


def _tensor(x) -> "torch.Tensor":  # noqa: F821 (torch imported on use)
    import torch  # on use: reading a bundle's scores needs no torch

    return torch.as_tensor(np.asarray(x), dtype=torch.float32)


class MaxSoftmax(Detector):
    name, label, order = "msp", "max softmax", 20

    def score_samples(self, evidence: Evidence) -> np.ndarray:
        from pytorch_ood.detector import MaxSoftmax as Impl

        return Impl.score(_tensor(evidence.need("logits", "msp"))).numpy().astype(np.float64)


class Energy(Detector):
    name, label, order = "energy", "energy", 21

    def score_samples(self, evidence: Evidence) -> np.ndarray:
        from pytorch_ood.detector import EnergyBased

        return EnergyBased.score(_tensor(evidence.need("logits", "energy"))).numpy().astype(
            np.float64)


class Mahalanobis(Detector):
    """Class-conditional Gaussians with a shared covariance on the features ``z``.

    The score is pytorch-ood's: half the squared Mahalanobis distance to the nearest class mean,
    under the pooled scatter matrix (not divided by N; a constant factor, same ranking), here
    with a small ridge (``ridge`` x its mean eigenvalue) so that few inputs still give distances.
    Fit on the true labels of reference inputs. Scoring whitens the features once (``z L`` with
    ``L Lᵀ`` the precision matrix) and measures plain distances to the whitened means — the
    same numbers as pytorch-ood's one quadratic form per class, at a tenth of the work.
    """

    name, label, order = "mahalanobis", "Mahalanobis", 22

    def __init__(self, ridge: float = 1e-3):
        self.ridge = ridge

    def fit(self, evidence: Evidence, defect=None) -> "Mahalanobis":
        """Class means and the pooled scatter matrix from sufficient statistics gathered chunk
        by chunk (any number of inputs in bounded memory; pytorch-ood's own fit holds them all),
        then pytorch-ood's detector with them."""
        from pytorch_ood.detector import Mahalanobis as Impl

        labels = np.asarray(evidence.need("labels", "Mahalanobis"))
        feats = evidence.need("features", "Mahalanobis")
        n_classes = np.asarray(evidence.logits[:1]).shape[1]
        missing = sorted(set(range(n_classes)) - set(np.unique(labels).tolist()))
        if missing:
            raise SemheatError(f"Mahalanobis needs examples of every class; none for class "
                               f"indices {missing}")
        d = feats.shape[1]
        sums, counts, zz = np.zeros((n_classes, d)), np.zeros(n_classes), np.zeros((d, d))
        for chunk in row_chunks(len(labels)):
            z = read_rows(feats, chunk).astype(np.float64)
            y = labels[chunk]
            sums += np.eye(n_classes)[y].T @ z
            counts += np.bincount(y, minlength=n_classes)
            zz += z.T @ z
        mu = sums / counts[:, None]
        cov = zz - (mu * counts[:, None]).T @ mu + 1e-6 * np.eye(d)  # pooled scatter (+ p-ood's)
        # a ridge relative to its scale keeps the precision well conditioned when there are
        # about as many features as inputs
        cov += self.ridge * np.trace(cov) / d * np.eye(d)
        det = Impl(None)
        det.mu, det.precision = _tensor(mu), _tensor(np.linalg.inv(cov))
        self.detector_ = det
        return self

    def score_samples(self, evidence: Evidence) -> np.ndarray:
        feats = evidence.need("features", "Mahalanobis")
        precision = self.detector_.precision.double().numpy()
        whiten = np.linalg.cholesky((precision + precision.T) / 2)  # precision = L Lᵀ
        means = self.detector_.mu.double().numpy() @ whiten
        out = np.empty(len(feats))
        for chunk in row_chunks(len(feats)):
            y = (read_rows(feats, chunk).astype(np.float32) @ whiten.astype(np.float32)
                 ).astype(np.float64)
            dist = (y * y).sum(1)[:, None] - 2 * y @ means.T + (means * means).sum(1)
            out[chunk] = 0.5 * dist.min(1)  # -max_k of pytorch-ood's -0.5 (z-μ_k)ᵀ P (z-μ_k)
        return out

    def state(self) -> dict[str, np.ndarray]:
        return {"mu": self.detector_.mu.numpy(), "precision": self.detector_.precision.numpy()}

    @classmethod
    def from_state(cls, state: dict, info: dict) -> "Mahalanobis":
        from pytorch_ood.detector import Mahalanobis as Impl

        self = cls()
        det = Impl(None)
        det.mu, det.precision = _tensor(state["mu"]), _tensor(state["precision"])
        self.detector_ = det
        return self


class Combination(Detector):
    """Logistic regression on a few detectors' standardised scores (``evidence.extra``), fit
    on a calibration split; the output is a defect log-odds. scikit-learn fits it; the fitted
    line is kept as plain arrays."""

    name, label, per_task, order = "combined", "monitor + best baseline", True, 90

    def __init__(self, inputs: tuple[str, ...] = ()):
        self.inputs = tuple(inputs)

    def _matrix(self, evidence: Evidence) -> np.ndarray:
        missing = [k for k in self.inputs if k not in evidence.extra]
        if missing:
            raise SemheatError(f"the combination needs the scores of {missing}")
        return np.column_stack([np.asarray(evidence.extra[k], np.float64) for k in self.inputs])

    def fit(self, evidence: Evidence, defect=None) -> "Combination":
        from sklearn.linear_model import LogisticRegression

        X, y = self._matrix(evidence), np.asarray(defect, dtype=bool)
        if y.all() or not y.any():
            raise SemheatError("the combination needs both defective and correct examples")
        self.mean_, self.scale_ = X.mean(0), np.maximum(X.std(0), EPS)
        # a weak ridge (C = 1000): the few inputs are many times the two weights
        model = LogisticRegression(C=1e3, max_iter=1000).fit((X - self.mean_) / self.scale_, y)
        self.coef_, self.intercept_ = model.coef_[0], float(model.intercept_[0])
        return self

    def score_samples(self, evidence: Evidence) -> np.ndarray:
        return (self._matrix(evidence) - self.mean_) / self.scale_ @ self.coef_ + self.intercept_

    def state(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean_, "scale": self.scale_, "coef": self.coef_,
                "intercept": np.array([self.intercept_])}

    @classmethod
    def from_state(cls, state: dict, info: dict) -> "Combination":
        self = cls(tuple(info.get("inputs", ())))
        self.mean_, self.scale_ = np.asarray(state["mean"]), np.asarray(state["scale"])
        self.coef_, self.intercept_ = np.asarray(state["coef"]), float(state["intercept"][0])
        return self


def best_baseline(scores: dict[str, np.ndarray], positives) -> str:
    """The baseline with the highest AUROC on the given (calibration) records."""
    return max(BASELINES, key=lambda k: np.nan_to_num(auroc(scores[k], positives), nan=-1.0))
