"""The aligner: an affine map from classifier features to the VLM's image-embedding space.

Text-To-Concept (Moayeri et al., ICML 2023) showed that a *linear* map suffices to carry a
vision model's features into CLIP space, where text embeddings then act as concept probes; they
fit it with SGD on a mean-squared error. Here the same map is fit in closed form by ridge
regression (deterministic, seconds), accumulating sufficient statistics in chunks so that any
number of records fits in bounded memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SemheatError
from ..bundle.store import read_rows
from ..vectors import EPS, ROW_CHUNK


def _as_2d(name: str, x) -> np.ndarray:
    x = x if isinstance(x, np.ndarray) else np.asarray(x)  # (a memory map stays one)
    if x.ndim != 2:
        raise SemheatError(f"{name} must be a 2-D array (records x dims), got shape {x.shape}")
    return x


@dataclass
class Sums:
    """Sufficient statistics of ``(z, e)`` pairs: counts, sums and cross products (float64)."""

    n: int
    zz: np.ndarray  # Σ z zᵀ
    ze: np.ndarray  # Σ z eᵀ
    sz: np.ndarray  # Σ z
    se: np.ndarray  # Σ e
    ee: float  # Σ |e|²

    @classmethod
    def gather(cls, Z, E, rows=None, chunk_size: int = ROW_CHUNK) -> "Sums":
        """One chunked pass over ``rows`` of ``(Z, E)`` (memory maps welcome)."""
        Z, E = _as_2d("features", Z), _as_2d("embeddings", E)
        if Z.shape[0] != E.shape[0]:
            raise SemheatError(f"features and embeddings differ in number of records: "
                               f"{Z.shape[0]} vs {E.shape[0]}")
        rows = np.arange(Z.shape[0]) if rows is None else np.asarray(rows)
        d, m = Z.shape[1], E.shape[1]
        out = cls(len(rows), np.zeros((d, d)), np.zeros((d, m)), np.zeros(d), np.zeros(m), 0.0)
        for s in range(0, len(rows), chunk_size):
            chunk = rows[s:s + chunk_size]
            z = read_rows(Z, chunk).astype(np.float64)
            e = read_rows(E, chunk).astype(np.float64)
            if not (np.isfinite(z).all() and np.isfinite(e).all()):
                raise SemheatError(f"features or embeddings contain NaN or inf "
                                   f"(records {chunk[0]}..{chunk[-1]})")
            out.zz += z.T @ z
            out.ze += z.T @ e
            out.sz += z.sum(0)
            out.se += e.sum(0)
            out.ee += float((e * e).sum())
        return out


class Fidelity:
    """Running fidelity of predictions ``A z`` against embeddings ``e``, chunk by chunk: mean
    cosine and R² (variance-weighted)."""

    def __init__(self, m: int):
        self.cos_sum, self.sse, self.n, self.s1, self.s2 = 0.0, 0.0, 0, np.zeros(m), 0.0

    def add(self, pred, e) -> None:
        pred, e = np.asarray(pred, dtype=np.float64), np.asarray(e, dtype=np.float64)
        self.cos_sum += float(((pred * e).sum(1) / np.maximum(
            np.linalg.norm(pred, axis=1) * np.linalg.norm(e, axis=1), EPS)).sum())
        self.sse += float(((e - pred) ** 2).sum())
        self.s1 += e.sum(0)
        self.s2 += float((e ** 2).sum())
        self.n += len(e)

    def result(self) -> dict:
        sst = self.s2 - (self.s1 ** 2).sum() / max(self.n, 1)  # total scatter around the mean
        return {"mean_cosine": float(self.cos_sum / max(self.n, 1)),
                "r2": float(1.0 - self.sse / max(sst, EPS)), "n": int(self.n)}


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

    def fit(self, Z, E, rows=None) -> "LinearAligner":
        """Fit on ``(Z, E)`` — or on their ``rows`` only (indices; the arrays may be memory
        maps of any size: they are read chunk by chunk)."""
        sums = Sums.gather(Z, E, rows, self.chunk_size)
        if sums.n < 2:
            raise SemheatError(f"need at least 2 records to fit an aligner, got {sums.n}")
        n, mz, me = sums.n, sums.sz / sums.n, sums.se / sums.n
        # centred scatter matrices: all a fit needs, kept to refit at another strength
        self._stats = (sums.zz - n * np.outer(mz, mz), sums.ze - n * np.outer(mz, me), mz, me)
        self.n_features_in_, self.n_outputs_ = sums.zz.shape[0], sums.ze.shape[1]
        return self._solve()

    def _solve(self) -> "LinearAligner":
        czz, cze, mz, me = self._stats
        d = czz.shape[0]
        lam = self.alpha * max(np.trace(czz) / d, EPS)
        W = np.linalg.solve(czz + lam * np.eye(d), cze)
        self.W_ = W.astype(np.float32)
        self.b_ = (me - mz @ W).astype(np.float32)
        return self

    def refit(self, alpha: float) -> "LinearAligner":
        """The same fit at another ridge strength (no pass over the data)."""
        if not hasattr(self, "_stats"):
            raise SemheatError("refit needs an aligner fitted in this session")
        other = LinearAligner(alpha=alpha, chunk_size=self.chunk_size)
        other._stats, other.n_features_in_, other.n_outputs_ = (
            self._stats, self.n_features_in_, self.n_outputs_)
        return other._solve()

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

    def fidelity(self, Z, E, rows=None) -> dict:
        """Fidelity on ``(Z, E)`` (or their ``rows``): mean cosine of ``A z`` and ``e``, and R²
        (variance-weighted); chunk by chunk."""
        self._check_fitted()
        rows = np.arange(len(Z)) if rows is None else np.asarray(rows)
        if Z.shape[0] != E.shape[0] or E.shape[1] != self.n_outputs_:
            raise SemheatError(f"embeddings have shape {E.shape}, expected "
                               f"({Z.shape[0]}, {self.n_outputs_})")
        tally = Fidelity(self.n_outputs_)
        for s in range(0, len(rows), self.chunk_size):
            chunk = rows[s:s + self.chunk_size]
            tally.add(self.transform(read_rows(Z, chunk)), read_rows(E, chunk))
        return tally.result()

    def r2_from_sums(self, sums: "Sums") -> float:
        """R² on the records summed up in ``sums`` — in closed form, no pass over them:
        ``SSE = Σ|e|² − 2 Σ e·(zW + b) + Σ |zW + b|²``."""
        W, b = self.W_.astype(np.float64), self.b_.astype(np.float64)
        sse = (sums.ee - 2 * ((W * sums.ze).sum() + b @ sums.se)
               + ((sums.zz @ W) * W).sum() + 2 * b @ (sums.sz @ W) + sums.n * b @ b)
        sst = sums.ee - sums.se @ sums.se / max(sums.n, 1)
        return float(1.0 - sse / max(sst, EPS))

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


ALPHAS = (1e-3, 1e-2, 1e-1, 1.0, 10.0)  # relative ridge strengths tried by fit_best_alpha


def fit_best_alpha(Z, E, fit_rows, calib_rows, alphas=ALPHAS) -> tuple[LinearAligner, dict]:
    """The aligner, fit on ``fit_rows`` of ``(Z, E)``, at the ridge strength that best predicts
    the held-out embeddings of ``calib_rows`` (R²); returned with the R² of every strength
    tried. A strength chosen on held-out fidelity keeps the aligner from fitting the reference
    set's quirks. One pass over each set of rows, whatever the number of strengths (R² comes
    from the calibration rows' sufficient statistics); with fewer than 2 calibration rows the
    first strength is used."""
    base = LinearAligner(alpha=alphas[0]).fit(Z, E, fit_rows)
    if len(calib_rows) < 2:
        return base, {}
    held_out = Sums.gather(Z, E, calib_rows, base.chunk_size)
    r2 = {a: base.refit(a).r2_from_sums(held_out) for a in alphas}
    best = max(r2, key=r2.get)
    return base.refit(best), r2
