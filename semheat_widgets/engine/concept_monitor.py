"""The concept-space monitor: nine signals in CLIP space, stacked by a non-negative logistic
regression into one defect log-odds that splits exactly over the concepts.

For an input with classifier features ``z`` and prediction ``k`` the monitor maps ``z`` into
CLIP space with the aligner, ``A z = z W + b``, and reads the standardised concept scores
``s = (cos(A z, t) - μ) / σ`` (as the rest of the engine does). ``j`` is the runner-up class of
each class model. Nine signals, each oriented so that higher = more likely a defect:

1. ``zero_shot`` — zero-shot margin: ``cos(A z, e_j) - cos(A z, e_k)`` with the class text
   embeddings ``e``;
2. ``bottleneck`` — a concept bottleneck: a multinomial logistic regression from ``s`` to the
   true label, fit on natural reference inputs; ``logit_j - logit_k``;
3. ``probe`` — the same on ``unit(A z)`` (a linear probe in CLIP space);
4. ``maha_s`` — log Mahalanobis distance of ``s`` to the mean of class ``k`` (class Gaussians
   on the true labels with a shared covariance and a ridge, Lee et al., NeurIPS 2018);
5. ``maha_az`` — the same on the unnormalised ``A z``;
6. ``heatmap`` — the defect score of the paper's heatmap monitor (Hu et al., CAIN 2025,
   arXiv 2503.17416; :mod:`.monitor`): similarity of ``s`` to the mean profile of defective
   references predicted ``k`` minus that to the correct ones;
7. ``mdiff_s`` / 8. ``mdiff_az`` — squared Mahalanobis distance (covariance of signal 4 / of
   ``unit(A z)``) to the mean of the correct references predicted ``k`` minus that to the mean
   of the defective ones, the latter shrunk with :data:`SHRINK` pseudo-inputs toward the mean
   of all defective references (a class has few of them);
9. ``knn_s`` — mean distance of ``s`` to its nearest correct references predicted ``k`` minus
   that to its nearest defective ones.

Each signal's own hyper-parameter (a ridge, a regularisation strength ``C``, a number of
neighbours) is chosen by that signal's AUROC on the calibration split. The nine standardised
signals are then stacked by a logistic regression whose weights are constrained to be
non-negative (every signal keeps its direction), fit by L-BFGS-B on *cross-fitted* signals:
the fit inputs are cut into folds grouped by source input (an attacked copy goes with its
natural source), and each fold's signals come from models fit on the other folds, so the
stack learns how the signals behave on inputs they have not seen. The stack's ``C`` and class
weighting are chosen by calibration AUROC; :meth:`ConceptMonitor.calibrate` then sets the
thresholds like :class:`~.monitor.HeatmapMonitor`.

Explanation: the log-odds is ``base + Σ_c concept_c + Σ named``, exactly. Signals built from
``s`` split over the concepts (linear ones term by term, quadratic forms as ``Σ_c D_c (P D)_c``,
the logarithm of one through the logarithmic mean, distances as ``Σ_c D_c² / ‖D‖``); signals
of ``A z`` are named contributions. Every part is measured from its mean over the correct
reference inputs, so ``base`` is about the log-odds of a typical correct input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import SemheatError
from .detectors import Detector, Evidence, register_detector
from .metrics import auroc, class_thresholds
from .monitor import SIMILARITIES, similarity
from .store import read_rows
from .vectors import EPS, ROW_CHUNK, row_norms, unit_rows

N_FOLDS = 5  # cross-fitting folds of the stack's training signals
SHRINK = 5.0  # pseudo-inputs pulling a class's defective mean toward all defective inputs
LOG_FLOOR = 1e-12  # keeps the log of a zero distance finite
STACK_GRID = tuple((c, w) for c in (0.01, 0.1, 1.0, 10.0) for w in (False, True))
STACK_DEFAULT = (1.0, False)  # (C, balanced class weights) when calib cannot choose
SCORE_ROWS = 8192  # inputs scored at a time (float64 views of A z: tens of MB, not GB)
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


def _fit_nonnegative_logistic(X, y, C, balanced):
    """Logistic regression with weights ≥ 0 (free intercept), penalty ``|w|² / 2C`` as
    scikit-learn's, by L-BFGS-B: ``(weights, intercept)``."""
    from scipy.optimize import minimize
    from scipy.special import expit

    y = np.asarray(y, dtype=np.float64)
    weight = np.ones(len(y))
    if balanced:
        n_pos = y.sum()
        weight = np.where(y > 0, len(y) / (2 * n_pos), len(y) / (2 * (len(y) - n_pos)))
    d = X.shape[1]

    def loss(theta):
        w, c = theta[:d], theta[d]
        t = X @ w + c
        g = weight * (expit(t) - y)
        value = (weight * (np.logaddexp(0.0, t) - y * t)).sum() + 0.5 / C * w @ w
        return value, np.r_[X.T @ g + w / C, g.sum()]

    result = minimize(loss, np.zeros(d + 1), jac=True, method="L-BFGS-B",
                      bounds=[(0.0, None)] * d + [(None, None)], options={"maxiter": 5000})
    return result.x[:d], float(result.x[d])


def _auroc_or_nan(values, positives):
    return float(np.nan_to_num(auroc(values, positives), nan=-1.0))


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
    to the value; ``split`` measures them from their means over the correct references.
    """

    def __init__(self, key, label, space, grid=(), default=None, named=None):
        self.key, self.label = key, label  # label: what a high value says
        self.space = space  # the view it reads: "s", "a" or "az"
        self.grid, self.default = grid, default  # hyper-parameters tried on calib; default
        self.named = named  # the name of its non-concept part in explanations

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

    def split(self, p: dict, x: _Inputs):
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

    def fit(self, data, h):
        return {}  # the class embeddings are set by the monitor


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
        return np.log(np.maximum(self._terms(p, x).sum(1), 0.0) + LOG_FLOOR)

    def terms(self, p, x):
        if self.space == "s":
            return self._terms(p, x), None
        return None, self.value(p, x)

    def split(self, p, x):
        if self.space != "s":
            return super().split(p, x)
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


# -- explanations ---------------------------------------------------------------------------------
@dataclass
class Explanation:
    """A defect log-odds split exactly: ``base + concepts.sum(1) + Σ named`` = the score.

    ``concepts``: N x C contributions of the concepts; ``named``: contributions of the
    signals of ``A z`` (and of the bottleneck's class prior), by what they say.
    """

    base: float
    concepts: np.ndarray
    named: dict[str, np.ndarray]

    def total(self) -> np.ndarray:
        return self.base + self.concepts.sum(1) + sum(self.named.values(), 0.0)


def top_reasons(explanation: Explanation, concept_names, i: int, n: int = 3):
    """The ``n`` largest contributions to input ``i``'s log-odds, concepts and named signals
    alike: ``[(name, contribution), ...]``, largest first."""
    names = list(concept_names)
    if len(names) != explanation.concepts.shape[1]:
        raise SemheatError(f"{len(names)} concept names for "
                           f"{explanation.concepts.shape[1]} concepts")
    items = list(zip(names, explanation.concepts[i].tolist()))
    items += [(k, float(v[i])) for k, v in explanation.named.items()]
    return sorted(items, key=lambda item: -item[1])[:n]


# -- the monitor ---------------------------------------------------------------------------------
def _check_matrix(name, x, shape):
    x = np.asarray(x, dtype=np.float64)
    if x.shape != shape:
        raise SemheatError(f"{name} must have shape {shape}, got {x.shape}")
    if not np.isfinite(x).all():
        raise SemheatError(f"{name} contain NaN or inf")
    return x


@register_detector
class ConceptMonitor(Detector):
    """Nine concept-space signals, stacked (see the module docstring).

    ``W`` (d x m), ``b`` (m): the aligner; ``concept_embeddings`` (C x m) and
    ``class_embeddings`` (K x m): the text embeddings; ``mean`` / ``std`` (C): the concepts'
    standardisation. Fitted state ends in ``_``.
    """

    name, label, per_task, order = "concept", "concept-space monitor", True, 1

    def __init__(self, W, b, concept_embeddings, class_embeddings, mean, std,
                 similarity: str = "cosine"):
        if similarity not in SIMILARITIES:
            raise SemheatError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
        W = np.asarray(W, dtype=np.float64)
        if W.ndim != 2:
            raise SemheatError(f"the aligner weights must be d x m, got shape {W.shape}")
        d, m = W.shape
        self.W = _check_matrix("aligner weights", W, (d, m))
        self.b = _check_matrix("aligner bias", np.ravel(b), (m,))
        T = np.asarray(concept_embeddings, dtype=np.float64)
        self.concept_embeddings = _check_matrix("concept embeddings", T, (len(T), m))
        E = np.asarray(class_embeddings, dtype=np.float64)
        self.class_embeddings = _check_matrix("class embeddings", E, (len(E), m))
        n_concepts = len(T)
        self.mean = _check_matrix("concept means", np.ravel(mean), (n_concepts,))
        self.std = np.maximum(_check_matrix("concept deviations", np.ravel(std), (n_concepts,)),
                              1e-8)
        self.similarity = similarity

    @property
    def n_classes(self) -> int:
        return len(self.class_embeddings)

    @property
    def n_concepts(self) -> int:
        return len(self.concept_embeddings)

    # -- inputs -----------------------------------------------------------------------------
    def _inputs(self, z, logits, labels=None) -> _Inputs:
        z, logits = np.asarray(z, dtype=np.float64), np.asarray(logits, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.W.shape[0]:
            raise SemheatError(f"features must be N x {self.W.shape[0]}, got shape {z.shape}")
        if logits.shape != (len(z), self.n_classes):
            raise SemheatError(f"logits must be {len(z)} x {self.n_classes}, got shape "
                               f"{logits.shape}")
        if not (np.isfinite(z).all() and np.isfinite(logits).all()):
            raise SemheatError("features or logits contain NaN or inf")
        az = z @ self.W + self.b
        a = unit_rows(az)
        s = (a @ self.concept_embeddings.T - self.mean) / self.std
        return _Inputs(az, a, s, logits.argmax(1), labels)

    def _read(self, evidence: Evidence, with_labels=False) -> _Inputs:
        """The inputs of some evidence, its features read ``ROW_CHUNK`` rows at a time."""
        feats = evidence.need("features", "concept")
        logits = evidence.need("logits", "concept")
        labels = np.asarray(evidence.need("labels", "concept")).astype(np.int64) \
            if with_labels else None
        if len(feats) != len(logits):
            raise SemheatError("features and logits differ in number of inputs")
        if len(logits) == 0:
            return self._inputs(np.zeros((0, self.W.shape[0])), np.zeros((0, self.n_classes)),
                                labels)
        parts = [self._inputs(read_rows(feats, slice(s, s + ROW_CHUNK)),
                              np.asarray(logits[s:s + ROW_CHUNK]))
                 for s in range(0, len(logits), ROW_CHUNK)]
        x = _Inputs.concat(parts)
        if labels is not None:
            if len(labels) != len(x) or labels.min() < 0 or labels.max() >= self.n_classes:
                raise SemheatError(f"labels must be {len(x)} class indices in "
                                   f"[0, {self.n_classes})")
            x.labels = labels
        return x

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, evidence: Evidence, defect=None, *, reference: Evidence, groups=None,
            reference_groups=None, calib=None, seed: int = 0) -> "ConceptMonitor":
        """Fit on the task's inputs of the fit split.

        ``evidence`` / ``defect``: the task's inputs and which are defective (as
        :meth:`HeatmapMonitor.fit <.monitor.HeatmapMonitor.fit>`); ``reference``: natural
        inputs with true ``labels`` (the class models); ``groups`` / ``reference_groups``:
        source-input ids of both, for folds that keep an input, its attacked copies and its
        own reference row together (``None``: every row its own input, the references distinct
        from ``evidence``); ``calib``: ``(evidence, defect)`` of the calibration split, on which
        the hyper-parameters are chosen (defaults without both kinds). In the pipeline::

            mon.fit(ev.take(ref), positive[ref], reference=ev.take(natural_fit),
                    groups=source[ref], reference_groups=source[natural_fit],
                    calib=(ev.take(cal), positive[cal]))
        """
        from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

        # the matrices are small: BLAS / OpenMP threads cost far more than they save here,
        # and on a busy machine many times more
        with threadpool_limits(limits=1):
            return self._fit(evidence, defect, reference, groups, reference_groups, calib,
                             seed)

    def _fit(self, evidence, defect, reference, groups, reference_groups, calib, seed):
        defect = np.asarray(defect, dtype=bool).ravel()
        members = self._read(evidence)
        if len(defect) != len(members):
            raise SemheatError(f"{len(defect)} defect flags for {len(members)} inputs")
        data = _FitData(members, defect, self._read(reference, with_labels=True),
                        self.n_classes)
        if not (defect.any() and (~defect).any()):
            raise SemheatError("the concept monitor needs both defective and correct "
                               "reference inputs")
        if len(np.unique(data.reference.labels)) < 2:
            raise SemheatError("the concept monitor needs labelled reference inputs of at "
                               "least two classes")
        cal = self._calib(calib)
        self.hyper_, self.signal_auroc_, self.params_ = self._fit_signals(data, cal)
        folds = self._folds(data, groups, reference_groups, seed)
        X = self._crossfitted(data, folds)
        self.n_folds_ = int(folds[0].max() + 1) if folds is not None else 0
        self._fit_stack(X, defect, cal)
        self.thresholds_ = np.zeros(self.n_classes)
        return self

    def _calib(self, calib):
        """The calibration inputs and flags, or ``None`` when they cannot choose."""
        if calib is None:
            return None
        evidence, defect = calib
        defect = np.asarray(defect, dtype=bool).ravel()
        if len(defect) != len(evidence):
            raise SemheatError(f"{len(defect)} defect flags for {len(evidence)} calib inputs")
        if not (defect.any() and (~defect).any()):
            return None
        return self._read(evidence), defect

    def _fit_signals(self, data: _FitData, cal):
        """Each signal's hyper-parameter (best calib AUROC of that signal alone) and its
        parameters fit on all of ``data``."""
        hyper, aucs, params = {}, {}, {}
        for sig in SIGNALS:
            grid = sig.grid if cal is not None and sig.grid else (sig.default,)
            fitted = {h: {**self._fixed(sig), **sig.fit(data, h)} for h in grid}
            best = sig.default
            if cal is not None:
                scored = {h: _auroc_or_nan(sig.value(p, cal[0]), cal[1])
                          for h, p in fitted.items()}
                best = max(scored, key=scored.get)  # the first of equals
                aucs[sig.key] = scored[best]
            if sig.grid:
                hyper[sig.key] = best
            params[sig.key] = fitted[best]
            params[sig.key].update(sig.offsets(fitted[best], data.ok))
        return hyper, aucs, params

    def _fixed(self, sig: _Signal) -> dict:
        """Parameters a signal takes from the monitor rather than from data."""
        if sig.key == "zero_shot":
            return {"coef": unit_rows(self.class_embeddings), "intercept": np.zeros(
                self.n_classes)}
        if sig.key == "heatmap":
            return {"euclidean": np.array([int(self.similarity == "euclidean")])}
        return {}

    @staticmethod
    def _folds(data: _FitData, groups, reference_groups, seed):
        """Fold ids of the members and of the references (``None``: fewer than 2 groups)."""
        n_mem, n_ref = len(data.members), len(data.reference)
        groups = np.arange(n_mem) if groups is None else np.asarray(groups).ravel()
        if reference_groups is None:  # distinct inputs: ids after the members'
            groups = np.unique(groups, return_inverse=True)[1].ravel()
            reference_groups = np.arange(n_ref) + n_mem
        reference_groups = np.asarray(reference_groups).ravel()
        if len(groups) != n_mem or len(reference_groups) != n_ref:
            raise SemheatError("groups must give one id per input and per reference input")
        ids = np.unique(np.r_[groups, reference_groups])
        if len(ids) < 2:
            return None
        n = min(N_FOLDS, len(ids))
        fold_of = np.empty(len(ids), dtype=np.int64)
        fold_of[np.random.default_rng(seed).permutation(len(ids))] = np.arange(len(ids)) % n
        return (fold_of[np.searchsorted(ids, groups)],
                fold_of[np.searchsorted(ids, reference_groups)])

    def _signal_matrix(self, params, x: _Inputs) -> np.ndarray:
        return np.column_stack([sig.value(params[sig.key], x) for sig in SIGNALS])

    def _crossfitted(self, data: _FitData, folds) -> np.ndarray:
        """The signals of every member from models fit without its fold (in-sample where a
        fold's complement lacks defective or correct inputs, or there are no folds)."""
        X = self._signal_matrix(self.params_, data.members)
        if folds is None:
            return X
        member_fold, reference_fold = folds
        for f in range(member_fold.max() + 1):
            held = member_fold == f
            part = _FitData(data.members.take(~held), data.defect[~held],
                            data.reference.take(reference_fold != f), data.n_classes)
            if not held.any() or not part.usable():
                continue
            params = {sig.key: {**self._fixed(sig), **sig.fit(part, self.hyper_.get(
                sig.key, sig.default))} for sig in SIGNALS}
            X[held] = self._signal_matrix(params, data.members.take(held))
        return X

    def _fit_stack(self, X, y, cal):
        """Standardise the signals, fit the non-negative stack for each (C, class weight)
        and keep the best by calib AUROC."""
        self.stack_mean_ = X.mean(0)
        self.stack_scale_ = np.maximum(X.std(0), 1e-9)
        Xs = (X - self.stack_mean_) / self.stack_scale_
        grid = STACK_GRID if cal is not None else (STACK_DEFAULT,)
        fits = {h: _fit_nonnegative_logistic(Xs, y, *h) for h in grid}
        if cal is not None:
            Xc = (self._signal_matrix(self.params_, cal[0]) - self.stack_mean_) / \
                self.stack_scale_
            aucs = {h: _auroc_or_nan(Xc @ w + c, cal[1]) for h, (w, c) in fits.items()}
            self.stack_hyper_ = max(aucs, key=aucs.get)
            self.stack_auroc_ = aucs[self.stack_hyper_]
        else:
            self.stack_hyper_, self.stack_auroc_ = STACK_DEFAULT, None
        self.stack_coef_, self.stack_intercept_ = fits[self.stack_hyper_]

    def calibrate(self, evidence: Evidence, defect, target_fpr: float = 0.05,
                  per_class: bool = False) -> "ConceptMonitor":
        """Thresholds so that at most ``target_fpr`` of the non-defective inputs are flagged
        (per class where asked and where that class has non-defective inputs)."""
        self.thresholds_ = class_thresholds(self.score_samples(evidence), defect,
                                            evidence.predictions, self.n_classes, target_fpr,
                                            per_class)
        return self

    # -- scoring -----------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "stack_coef_"):
            raise SemheatError("the concept monitor is not fitted yet")

    def score_features(self, z, logits) -> np.ndarray:
        """Defect log-odds of inputs given as arrays: features ``z`` (N x d) and logits."""
        self._check_fitted()
        X = self._signal_matrix(self.params_, self._inputs(z, logits))
        return (X - self.stack_mean_) / self.stack_scale_ @ self.stack_coef_ + \
            self.stack_intercept_

    def score_samples(self, evidence: Evidence) -> np.ndarray:
        """Defect log-odds per input (features read ``SCORE_ROWS`` rows at a time)."""
        return self._chunked(evidence, self.score_features, np.concatenate)

    def _chunked(self, evidence, fn, join):
        self._check_fitted()
        feats = evidence.need("features", "concept")
        logits = evidence.need("logits", "concept")
        if len(feats) != len(logits):
            raise SemheatError("features and logits differ in number of inputs")
        step = min(ROW_CHUNK, SCORE_ROWS)
        starts = range(0, len(logits), step) if len(logits) else [0]
        # read_rows: a memory map's pages are released after each block, so scoring a
        # million inputs keeps tens of MB of features resident, not gigabytes
        return join([fn(read_rows(feats, slice(s, s + step)), np.asarray(logits[s:s + step]))
                     for s in starts])

    def predict(self, evidence: Evidence) -> np.ndarray:
        """True where an input is flagged as a likely defect."""
        return self.score_samples(evidence) > self.thresholds_[evidence.predictions]

    # -- explanation --------------------------------------------------------------------------
    def explain_features(self, z, logits) -> Explanation:
        """The log-odds of each input split exactly into a base, one contribution per concept
        and named contributions (see the module docstring)."""
        self._check_fitted()
        x = self._inputs(z, logits)
        weights = self.stack_coef_ / self.stack_scale_
        base = self.stack_intercept_ - float(weights @ self.stack_mean_)
        concepts = np.zeros((len(x), self.n_concepts))
        named = {sig.named: np.zeros(len(x)) for sig in SIGNALS if sig.named}
        for w, sig in zip(weights, SIGNALS):
            const, parts, rest = sig.split(self.params_[sig.key], x)
            base += w * const
            if parts is not None:
                concepts += w * parts
            if rest is not None:
                named[sig.named] += w * rest
        return Explanation(float(base), concepts, named)

    def explain(self, evidence: Evidence) -> Explanation:
        """:meth:`explain_features` of some evidence (chunk by chunk)."""
        def join(parts):
            return Explanation(parts[0].base, np.concatenate([p.concepts for p in parts]),
                               {k: np.concatenate([p.named[k] for p in parts])
                                for k in parts[0].named})
        return self._chunked(evidence, self.explain_features, join)

    # -- persistence -----------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """Plain arrays (float64 where fitted, so a reloaded monitor scores the same)."""
        self._check_fitted()
        out = {"W": self.W, "b": self.b, "concept_embeddings": self.concept_embeddings,
               "class_embeddings": self.class_embeddings, "mean": self.mean, "std": self.std,
               "thresholds": self.thresholds_, "stack.mean": self.stack_mean_,
               "stack.scale": self.stack_scale_, "stack.coef": self.stack_coef_,
               "stack.intercept": np.array([self.stack_intercept_])}
        for key, params in self.params_.items():
            out.update({f"{key}.{name}": np.asarray(v) for name, v in params.items()})
        return {k: np.ascontiguousarray(v) for k, v in out.items()}

    def info(self) -> dict:
        """What was chosen, JSON-able: hyper-parameters, calib AUROCs, stack weights."""
        self._check_fitted()
        c, balanced = self.stack_hyper_
        return {"similarity": self.similarity, "signals": list(SIGNAL_KEYS),
                "hyper": dict(self.hyper_),
                "signal_calib_auroc": {k: float(v) for k, v in self.signal_auroc_.items()},
                "stack": {"C": float(c), "class_weight": "balanced" if balanced else None,
                          "calib_auroc": None if self.stack_auroc_ is None
                          else float(self.stack_auroc_), "folds": self.n_folds_},
                # per standard deviation of each signal on the fit inputs
                "weights": {sig.key: float(w) for sig, w in zip(SIGNALS, self.stack_coef_)},
                "signal_labels": {sig.key: sig.label for sig in SIGNALS}}

    @classmethod
    def from_state(cls, state: dict, info: dict) -> "ConceptMonitor":
        """The monitor back from :meth:`state` (``info``: :meth:`info`, for the record of what
        was chosen; the scores need only ``state``)."""
        get = lambda k: np.asarray(state[k], dtype=np.float64)  # noqa: E731
        needed = ["W", "b", "concept_embeddings", "class_embeddings", "mean", "std",
                  "thresholds", "stack.mean", "stack.scale", "stack.coef", "stack.intercept"]
        needed += [f"{sig.key}.offset_named" for sig in SIGNALS]
        missing = [k for k in needed if k not in state]
        if missing:
            raise SemheatError(f"the concept monitor's state lacks {missing}")
        euclidean = bool(np.asarray(state.get("heatmap.euclidean", [False]))[0])
        self = cls(get("W"), get("b"), get("concept_embeddings"), get("class_embeddings"),
                   get("mean"), get("std"), "euclidean" if euclidean else "cosine")
        self.params_ = {}
        for sig in SIGNALS:
            prefix = sig.key + "."
            self.params_[sig.key] = {k[len(prefix):]: (np.asarray(v) if k.endswith(
                (".k", ".euclidean", "_pred")) else np.asarray(v, dtype=np.float64))
                for k, v in state.items() if k.startswith(prefix)}
        self.stack_mean_, self.stack_scale_ = get("stack.mean"), get("stack.scale")
        self.stack_coef_, self.stack_intercept_ = get("stack.coef"), float(
            get("stack.intercept")[0])
        self.thresholds_ = get("thresholds")
        stack = (info or {}).get("stack", {})
        self.stack_hyper_ = (stack.get("C", STACK_DEFAULT[0]),
                             stack.get("class_weight") == "balanced")
        self.stack_auroc_ = stack.get("calib_auroc")
        self.n_folds_ = stack.get("folds", 0)
        self.hyper_ = dict((info or {}).get("hyper", {}))
        self.signal_auroc_ = dict((info or {}).get("signal_calib_auroc", {}))
        return self
