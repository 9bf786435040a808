"""The aligner: an affine map from classifier features to the VLM's image-embedding space.

Text-To-Concept (Moayeri et al., ICML 2023) showed that a *linear* map suffices to carry a
vision model's features into CLIP space, where text embeddings then act as concept probes; they
fit it with SGD on a mean-squared error. Here the same map is fit in closed form by ridge
regression (deterministic, seconds), accumulating sufficient statistics in chunks so that any
number of records fits in bounded memory.
"""

from __future__ import annotations

import numpy as np

from ..errors import SemheatError
from .vectors import EPS, ROW_CHUNK


def _as_2d(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2:
        raise SemheatError(f"{name} must be a 2-D array (records x dims), got shape {x.shape}")
    return x


class LinearAligner:
    """Affine map ``A z = z W + b`` fit so that ``A z_i ≈ e_i`` (scikit-learn style).

    ``alpha`` is the ridge strength relative to the mean feature variance, so it does not
    depend on the scale of the features. Fitted state ends in ``_``.
    """

    def __init__(self, alpha: float = 1e-3, chunk_size: int = ROW_CHUNK):
        if alpha < 0:
            raise SemheatError(f"alpha must be >= 0, got {alpha}")
        self.alpha = float(alpha)
        self.chunk_size = int(chunk_size)

    def fit(self, Z, E) -> "LinearAligner":
        Z, E = _as_2d("features", Z), _as_2d("embeddings", E)
        if Z.shape[0] != E.shape[0]:
            raise SemheatError(f"features and embeddings differ in number of records: "
                               f"{Z.shape[0]} vs {E.shape[0]}")
        n, d = Z.shape
        if n < 2:
            raise SemheatError(f"need at least 2 records to fit an aligner, got {n}")
        m = E.shape[1]
        zz, ze = np.zeros((d, d)), np.zeros((d, m))
        sz, se = np.zeros(d), np.zeros(m)
        for s in range(0, n, self.chunk_size):
            z = np.asarray(Z[s:s + self.chunk_size], dtype=np.float64)
            e = np.asarray(E[s:s + self.chunk_size], dtype=np.float64)
            if not (np.isfinite(z).all() and np.isfinite(e).all()):
                raise SemheatError(f"features or embeddings contain NaN or inf "
                                   f"(records {s}..{s + len(z) - 1})")
            zz += z.T @ z
            ze += z.T @ e
            sz += z.sum(0)
            se += e.sum(0)
        mz, me = sz / n, se / n
        czz = zz - n * np.outer(mz, mz)  # centred scatter matrices
        cze = ze - n * np.outer(mz, me)
        lam = self.alpha * max(np.trace(czz) / d, EPS)
        W = np.linalg.solve(czz + lam * np.eye(d), cze)
        self.W_ = W.astype(np.float32)
        self.b_ = (me - mz @ W).astype(np.float32)
        self.n_features_in_, self.n_outputs_ = d, m
        return self

    def _check_fitted(self):
        if not hasattr(self, "W_"):
            raise SemheatError("the aligner is not fitted yet: call fit(features, embeddings)")

    def transform(self, Z) -> np.ndarray:
        self._check_fitted()
        Z = _as_2d("features", Z)
        if Z.shape[1] != self.n_features_in_:
            raise SemheatError(f"features have {Z.shape[1]} dims but the aligner was fit on "
                               f"{self.n_features_in_}")
        return np.asarray(Z, dtype=np.float32) @ self.W_ + self.b_

    def fidelity(self, Z, E) -> dict:
        """Fidelity on ``(Z, E)``: mean cosine of ``A z`` and ``e``, and R² (variance-weighted)."""
        pred = self.transform(Z).astype(np.float64)
        E = _as_2d("embeddings", E).astype(np.float64)
        if pred.shape != E.shape:
            raise SemheatError(f"embeddings have shape {E.shape}, expected {pred.shape}")
        cos = (pred * E).sum(1) / np.maximum(
            np.linalg.norm(pred, axis=1) * np.linalg.norm(E, axis=1), EPS)
        sse = ((E - pred) ** 2).sum()
        sst = ((E - E.mean(0)) ** 2).sum()
        return {"mean_cosine": float(cos.mean()), "r2": float(1.0 - sse / max(sst, EPS)),
                "n": int(len(E))}

    # -- persistence (plain arrays, no pickle) --------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        self._check_fitted()
        return {"aligner.W": self.W_, "aligner.b": self.b_}

    @classmethod
    def from_state(cls, state: dict, alpha: float = 1e-3) -> "LinearAligner":
        self = cls(alpha=alpha)
        self.W_ = np.asarray(state["aligner.W"], dtype=np.float32)
        self.b_ = np.asarray(state["aligner.b"], dtype=np.float32)
        self.n_features_in_, self.n_outputs_ = self.W_.shape
        return self


ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # relative ridge strengths tried by choose_alpha


def choose_alpha(Z_fit, E_fit, Z_cal, E_cal, alphas=ALPHAS) -> tuple[float, dict]:
    """The ridge strength whose aligner, fit on ``(Z_fit, E_fit)``, best predicts the held-out
    embeddings ``E_cal`` (R²); returns it with the R² of every strength tried. A strength
    chosen on held-out fidelity keeps the aligner from fitting the reference set's quirks."""
    if len(Z_cal) < 2:
        return alphas[0], {}
    r2 = {a: LinearAligner(alpha=a).fit(Z_fit, E_fit).fidelity(Z_cal, E_cal)["r2"]
          for a in alphas}
    return max(r2, key=r2.get), r2
