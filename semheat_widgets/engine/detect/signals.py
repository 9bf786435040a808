"""The nine signals of the concept-space monitor (:mod:`.concept_monitor`), each oriented so
that higher = more likely a defect, and the array helpers they share.

For an input with classifier features ``z`` and prediction ``k`` the monitor maps ``z`` into
CLIP space with the aligner, ``A z = z W + b``, and reads the standardised concept scores
``s = (cos(A z, t) - μ) / σ`` (as the rest of the engine does). ``j`` is the runner-up class of
each class model. The signals:

1. ``zero_shot`` — zero-shot margin: ``cos(A z, e_j) - cos(A z, e_k)`` with the class text
   embeddings ``e``;
2. ``bottleneck`` — a concept bottleneck: a multinomial logistic regression from ``s`` to the
   true label, fit on natural reference inputs; ``logit_j - logit_k``;
3. ``probe`` — the same on ``unit(A z)`` (a linear probe in CLIP space);
4. ``maha_s`` — log Mahalanobis distance of ``s`` to the mean of class ``k`` (class Gaussians
   on the true labels with a shared covariance and a ridge, Lee et al., NeurIPS 2018);
5. ``maha_az`` — the same on the unnormalised ``A z``;
6. ``heatmap`` — the defect score of the paper's heatmap monitor (Hu et al., CAIN 2025,
   arXiv 2503.17416; :mod:`.heatmap_monitor`): similarity of ``s`` to the mean profile of
   defective references predicted ``k`` minus that to the correct ones;
7. ``mdiff_s`` / 8. ``mdiff_az`` — squared Mahalanobis distance (covariance of signal 4 / of
   ``unit(A z)``) to the mean of the correct references predicted ``k`` minus that to the mean
   of the defective ones, the latter shrunk with :data:`SHRINK` pseudo-inputs toward the mean
   of all defective references (a class has few of them);
9. ``knn_s`` — mean distance of ``s`` to its nearest correct references predicted ``k`` minus
   that to its nearest defective ones.

Each signal's own hyper-parameter (a ridge, a regularisation strength ``C``, a number of
neighbours) is chosen by that signal's AUROC on the calibration split (by the monitor);
each signal splits its value exactly into concept terms and a named part (see
:class:`_Signal`), which is what the monitor's explanations add up.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ...errors import SemheatError
from ..vectors import EPS, row_norms, unit_rows
from .heatmap_monitor import similarity

SHRINK = 5.0  # pseudo-inputs pulling a class's defective mean toward all defective inputs
LOG_FLOOR = 1e-12  # keeps the log of a zero distance finite
KNN_CELLS = 1 << 22  # entries of a query-to-reference distance block


# -- small array helpers --------------------------------------------------------------------------
def _group_means(X, groups, n_groups, fallback, shrink=0.0):
    """Mean of ``X`` per group, ``shrink`` pseudo-rows of ``fallback`` added to each group; an
    empty group gets ``fallback``."""
    sums = np.zeros((n_groups, X.shape[1]))
    np.add.at(sums, groups, X)
    total = np.bincount(groups, minlength=n_groups) + shrink
    out = (sums + shrink * fallback) / np.where(total > 0, total, 1.0)[:, None]
    out[total == 0] = fallback
    return out


def _quad_terms(D, P):
    """The terms ``D_c (P D)_c`` whose sum over ``c`` is the quadratic form ``D' P D``."""
    return D * (D @ P)


def _runner_up(scores, pred):
    """The best class other than ``pred`` of each row, by ``scores``."""
    other = scores.copy()
    other[np.arange(len(pred)), pred] = -np.inf
    return other.argmax(1)


def _log_mean(x, y):
    """The logarithmic mean ``(x - y) / (log x - log y)`` (``y`` where they agree), so that
    ``(x - y) / L = log x - log y``."""
    lg = np.log(x) - np.log(y)
    safe = np.abs(lg) > 1e-12
    return np.where(safe, (x - y) / np.where(safe, lg, 1.0), y)


def _sqdist(Q, R):
    return np.maximum((Q ** 2).sum(1)[:, None] + (R ** 2).sum(1)[None] - 2 * Q @ R.T, 0.0)


def _nearest(Q, R, k):
    """Indices of the ``k`` nearest rows of ``R`` to each row of ``Q`` (fewer if R is small)."""
    k = min(k, len(R))
    d2 = _sqdist(Q, R)
    return np.argpartition(d2, k - 1, axis=1)[:, :k] if k < len(R) else \
        np.broadcast_to(np.arange(len(R)), (len(Q), len(R)))


def _distance_terms(Q, R, idx):
    """Per-coordinate terms ``D_c² / ‖D‖`` of the distances to the rows ``idx``, averaged
    over the neighbours: they sum to the mean distance."""
    D = Q[:, None, :] - R[idx]
    d = np.sqrt((D ** 2).sum(2, keepdims=True))
    return (D ** 2 / np.where(d > 0, d, 1.0)).mean(1)


def _nearest_mean_distance(Q, R, k):
    """Mean distance of each row of ``Q`` to its ``k`` nearest rows of ``R`` (the sum of
    :func:`_nearest_terms`, without the per-coordinate terms), in blocks like it."""
    k = min(k, len(R))
    block = max(1, KNN_CELLS // max(len(R), 1))
    out = np.empty(len(Q))
    for i in range(0, len(Q), block):
        d2 = _sqdist(Q[i:i + block], R)
        near = np.partition(d2, k - 1, axis=1)[:, :k] if k < len(R) else d2
        out[i:i + block] = np.sqrt(near).mean(1)
    return out


def _nearest_terms(Q, R, k):
    """:func:`_distance_terms` of the ``k`` nearest rows of ``R``, in blocks of queries so
    that the distance matrix stays within :data:`KNN_CELLS` entries."""
    block = max(1, KNN_CELLS // max(len(R), 1))
    return np.concatenate([_distance_terms(Q[i:i + block], R, _nearest(Q[i:i + block], R, k))
                           for i in range(0, len(Q), block)]) if len(Q) else np.zeros_like(Q)


def _fit_softmax_probe(X, y, n_classes, C):
    """Multinomial logistic regression ``X -> y`` as ``(coef K x dim, intercept K)``; a class
    absent from ``y`` gets a low intercept (it is never preferred)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    present = np.unique(y)
    if len(present) < 2:
        raise SemheatError("the reference inputs must cover at least two classes")
    with warnings.catch_warnings():  # a probe a little short of convergence is still fine
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=C, max_iter=3000).fit(X, y)
    coef, intercept = np.zeros((n_classes, X.shape[1])), np.zeros(n_classes)
    if len(present) == 2:  # scikit-learn keeps one line for two classes: logit_1 - logit_0
        coef[present[1]], intercept[present[1]] = model.coef_[0], model.intercept_[0]
    else:
        coef[present], intercept[present] = model.coef_, model.intercept_
    absent = np.setdiff1d(np.arange(n_classes), present)
    intercept[absent] = intercept[present].min() - 20.0
    return coef, intercept


# -- the inputs as the signals see them -----------------------------------------------------------
@dataclass
class _Inputs:
    """Some inputs in the monitor's three views: ``A z``, its unit rows ``a``, the standardised
    concept scores ``s``; with the prediction (and true labels where known)."""

    az: np.ndarray
    a: np.ndarray
    s: np.ndarray
    pred: np.ndarray
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.pred)

    def take(self, rows) -> "_Inputs":
        return _Inputs(self.az[rows], self.a[rows], self.s[rows], self.pred[rows],
                       None if self.labels is None else self.labels[rows])

    def view(self, space: str) -> np.ndarray:
        return getattr(self, space)

    @staticmethod
    def concat(parts) -> "_Inputs":
        parts = list(parts)
        labels = None if parts[0].labels is None else np.concatenate([p.labels for p in parts])
        return _Inputs(*(np.concatenate([getattr(p, k) for p in parts])
                         for k in ("az", "a", "s", "pred")), labels)


@dataclass
class _FitData:
    """What a fit sees: the task's inputs and defect flags, the labelled natural references,
    and a cache of covariance eigen-decompositions shared by the hyper-parameters tried."""

    members: _Inputs
    defect: np.ndarray
    reference: _Inputs
    n_classes: int
    cache: dict = field(default_factory=dict)

    @property
    def ok(self) -> _Inputs:
        return self.members.take(~self.defect)

    @property
    def bad(self) -> _Inputs:
        return self.members.take(self.defect)

    def usable(self) -> bool:
        """Both kinds of inputs, and references of at least two classes."""
        return bool(self.defect.any() and (~self.defect).any()
                    and len(np.unique(self.reference.labels)) >= 2)

    def pooled_gaussian(self, space: str):
        """Class means (true labels; a class without references: the mean of all) and the
        eigen-decomposition of the pooled covariance, of the references in ``space``."""
        if space not in self.cache:
            X, y = self.reference.view(space), self.reference.labels
            means = _group_means(X, y, self.n_classes, X.mean(0))
            R = X - means[y]
            self.cache[space] = (means, *np.linalg.eigh(R.T @ R / len(R)))
        return self.cache[space]

    def precision(self, space: str, ridge: float) -> np.ndarray:
        """Inverse pooled covariance plus ``ridge`` x its mean eigenvalue."""
        _, values, vectors = self.pooled_gaussian(space)
        lam = np.clip(values, 0.0, None) + ridge * max(values.sum() / len(values), EPS)
        return (vectors / lam) @ vectors.T


# -- the nine signals ----------------------------------------------------------------------------
class _Signal:
    """One signal: ``fit`` (arrays), ``value`` and its additive ``terms``.

    ``terms(p, x)`` gives ``(concept terms N x C or None, named part N or None)`` that add up
    to the value; ``decompose`` measures them from their means over the correct references.
    """

    def __init__(self, key, label, space, grid=(), default=None, named=None):
        self.key, self.label = key, label  # label: what a high value says
        self.space = space  # the view it reads: "s", "a" or "az"
        self.grid, self.default = grid, default  # hyper-parameters tried on calib; default
        self.named = named  # the name of its non-concept part in explanations

    def fixed(self, monitor) -> dict:
        """Parameters it takes from the monitor (its class embeddings, its similarity) rather
        than from data."""
        return {}

    def fit(self, data: _FitData, h) -> dict:
        return {}

    def value(self, p: dict, x: _Inputs) -> np.ndarray:
        raise NotImplementedError

    def terms(self, p: dict, x: _Inputs):
        return None, self.value(p, x)

    def offsets(self, p: dict, ok: _Inputs) -> dict:
        """The reference point of the explanation: mean terms over correct references."""
        terms, named = self.terms(p, ok)
        return {"offset_terms": np.zeros(0) if terms is None else terms.mean(0),
                "offset_named": np.array([0.0 if named is None else named.mean()])}

    def decompose(self, p: dict, x: _Inputs):
        """``(constant, concept parts N x C or None, named part N or None)`` summing to the
        value exactly."""
        terms, named = self.terms(p, x)
        tau, nu = p["offset_terms"], float(p["offset_named"][0])
        const = nu + (tau.sum() if terms is not None else 0.0)
        return (const, None if terms is None else terms - tau,
                None if named is None else named - nu)


class _LinearMargin(_Signal):
    """``score_j - score_k`` of a linear class model, ``j`` its best class other than ``k``."""

    def fit(self, data, h):
        coef, intercept = _fit_softmax_probe(data.reference.view(self.space),
                                             data.reference.labels, data.n_classes, h)
        return {"coef": coef, "intercept": intercept}

    def _scores(self, p, x):
        return x.view(self.space) @ p["coef"].T + p["intercept"]

    def value(self, p, x):
        scores = self._scores(p, x)
        j, i = _runner_up(scores, x.pred), np.arange(len(x))
        return scores[i, j] - scores[i, x.pred]

    def terms(self, p, x):
        j = _runner_up(self._scores(p, x), x.pred)
        bias = p["intercept"][j] - p["intercept"][x.pred]
        per_dim = (p["coef"][j] - p["coef"][x.pred]) * x.view(self.space)
        if self.space == "s":
            return per_dim, bias
        return None, per_dim.sum(1) + bias


class _ZeroShot(_LinearMargin):
    """The zero-shot margin: the class text embeddings as a fixed linear model on unit A z."""

    def __init__(self):
        super().__init__("zero_shot", "zero-shot prefers another class", "a",
                         named="zero-shot prefers another class")

    def fixed(self, monitor):
        return {"coef": unit_rows(monitor.class_embeddings),
                "intercept": np.zeros(monitor.n_classes)}

    def fit(self, data, h):
        return {}  # nothing learnt: the class embeddings are the model


class _ClassMahalanobis(_Signal):
    """log Mahalanobis distance to the mean of the predicted class (true-label Gaussians,
    shared covariance)."""

    def fit(self, data, h):
        return {"means": data.pooled_gaussian(self.space)[0],
                "precision": data.precision(self.space, h)}

    def _terms(self, p, x):
        X = x.view(self.space)
        return _quad_terms(X - p["means"][x.pred], p["precision"])

    def value(self, p, x):
        if self.space == "s":  # a few dimensions: the terms, as the explanation sums them
            q = self._terms(p, x).sum(1)
        else:  # D'PD = X'PX - 2 X'P m_k + m_k'P m_k, without forming the N x d differences
            X, P, M = x.view(self.space), p["precision"], p["means"]
            XP = X @ P
            rows = np.arange(len(X))
            q = (np.einsum("nd,nd->n", XP, X) - 2.0 * (XP @ M.T)[rows, x.pred]
                 + np.einsum("kd,kd->k", M @ P, M)[x.pred])
        return np.log(np.maximum(q, 0.0) + LOG_FLOOR)

    def terms(self, p, x):
        if self.space == "s":
            return self._terms(p, x), None
        return None, self.value(p, x)

    def decompose(self, p, x):
        if self.space != "s":
            return super().decompose(p, x)
        # log q - log q0 = (q - q0) / L(q, q0): the difference of the quadratic form's terms
        # from their reference means, over the logarithmic mean
        t, tau = self._terms(p, x), p["offset_terms"]
        q0 = tau.sum() + LOG_FLOOR
        q = np.maximum(t.sum(1), 0.0) + LOG_FLOOR
        return np.log(q0), (t - tau) / _log_mean(q, q0)[:, None], None


class _MeanContrast(_Signal):
    """Squared Mahalanobis distance to the correct mean of the predicted class minus that to
    its (shrunk) defective mean."""

    def fit(self, data, h):
        ok, bad = data.ok, data.bad
        Xo, Xb = ok.view(self.space), bad.view(self.space)
        return {"correct_means": _group_means(Xo, ok.pred, data.n_classes, Xo.mean(0)),
                "defect_means": _group_means(Xb, bad.pred, data.n_classes, Xb.mean(0), SHRINK),
                "precision": data.precision(self.space, h)}

    def _terms(self, p, x):
        X, P = x.view(self.space), p["precision"]
        return (_quad_terms(X - p["correct_means"][x.pred], P)
                - _quad_terms(X - p["defect_means"][x.pred], P))

    def value(self, p, x):
        if self.space == "s":
            return self._terms(p, x).sum(1)
        # the difference of two quadratic forms with one matrix is linear in X:
        # (X-c)'P(X-c) - (X-d)'P(X-d) = 2 X'P(d-c) + c'Pc - d'Pd; no N x d x d product
        P, c, d = p["precision"], p["correct_means"], p["defect_means"]
        slope = 2.0 * (d - c) @ P
        offset = np.einsum("kd,kd->k", c @ P, c) - np.einsum("kd,kd->k", d @ P, d)
        return np.einsum("nd,nd->n", x.view(self.space), slope[x.pred]) + offset[x.pred]

    def terms(self, p, x):
        return (self._terms(p, x), None) if self.space == "s" else (None, self.value(p, x))


class _Heatmap(_Signal):
    """The paper's defect score: sim(s, defective row of k) - sim(s, correct row of k)."""

    def __init__(self):
        super().__init__("heatmap", "heatmap monitor (paper) score", "s")

    def fixed(self, monitor):
        return {"euclidean": np.array([int(monitor.similarity == "euclidean")])}

    def fit(self, data, h):
        ok, bad = data.ok, data.bad
        return {"correct_rows": _group_means(ok.s, ok.pred, data.n_classes, ok.s.mean(0)),
                "defect_rows": _group_means(bad.s, bad.pred, data.n_classes, bad.s.mean(0))}

    def value(self, p, x):
        kind = "euclidean" if p["euclidean"][0] else "cosine"
        return (similarity(x.s, p["defect_rows"][x.pred], kind)
                - similarity(x.s, p["correct_rows"][x.pred], kind))

    def terms(self, p, x):
        ok, bad = p["correct_rows"][x.pred], p["defect_rows"][x.pred]
        if p["euclidean"][0]:  # ‖D‖ = Σ_c D_c² / ‖D‖
            def norm_terms(D):
                n = row_norms(D)
                return D ** 2 / np.where(n > 0, n, 1.0)[:, None]
            return norm_terms(x.s - ok) - norm_terms(x.s - bad), None
        return unit_rows(x.s) * (unit_rows(bad) - unit_rows(ok)), None


class _NearestContrast(_Signal):
    """Mean distance to the ``k`` nearest correct references predicted like the input minus
    that to the ``k`` nearest defective ones (all defective ones where the class has fewer
    than ``k``; all correct ones where it has none)."""

    def __init__(self):
        super().__init__("knn_s", "nearest references defective", "s", (1, 5, 20), 5)

    def fit(self, data, h):
        ok, bad = data.ok, data.bad
        return {"correct": ok.s, "correct_pred": ok.pred, "defect": bad.s,
                "defect_pred": bad.pred, "k": np.array([int(h)])}

    @staticmethod
    def _by_class(p, x, fn, out):
        k = int(p["k"][0])
        for c in np.unique(x.pred):
            q = x.pred == c
            ok = p["correct"][p["correct_pred"] == c]
            ok = ok if len(ok) else p["correct"]
            bad = p["defect"][p["defect_pred"] == c]
            bad = bad if len(bad) >= k else p["defect"]
            out[q] = fn(x.s[q], ok, k) - fn(x.s[q], bad, k)
        return out

    def terms(self, p, x):
        return self._by_class(p, x, _nearest_terms, np.zeros_like(x.s)), None

    def value(self, p, x):  # what the terms sum to, without forming them
        return self._by_class(p, x, _nearest_mean_distance, np.zeros(len(x.s)))


SIGNALS: tuple[_Signal, ...] = (
    _ZeroShot(),
    _LinearMargin("bottleneck", "concept bottleneck prefers another class", "s",
                  (0.1, 1.0, 10.0, 100.0), 1.0, named="concept-bottleneck class prior"),
    _LinearMargin("probe", "CLIP probe prefers another class", "a", (1.0, 10.0, 100.0), 10.0,
                  named="CLIP probe prefers another class"),
    _ClassMahalanobis("maha_s", "concepts atypical for the predicted class", "s",
                      (1e-3, 1e-2, 1e-1), 1e-2),
    _ClassMahalanobis("maha_az", "A z atypical for the predicted class", "az",
                      (1e-5, 1e-4, 1e-3, 1e-2), 1e-3,
                      named="A z atypical for the predicted class"),
    _Heatmap(),
    _MeanContrast("mdiff_s", "concepts nearer defective references", "s",
                  (1e-4, 1e-3, 1e-2), 1e-3),
    _MeanContrast("mdiff_az", "A z nearer defective references", "a", (1e-4, 1e-3, 1e-2), 1e-3,
                  named="A z nearer defective references"),
    _NearestContrast(),
)
SIGNAL_KEYS = tuple(sig.key for sig in SIGNALS)
