"""The concept-space monitor: nine signals in CLIP space, stacked by a non-negative logistic
regression into one defect log-odds that splits exactly over the concepts.

For an input with classifier features ``z`` and prediction ``k`` the monitor maps ``z`` into
CLIP space with the aligner, ``A z = z W + b``, and reads the standardised concept scores
``s = (cos(A z, t) - μ) / σ`` (as the rest of the engine does). Nine signals of them
(:mod:`.signals`: zero-shot margin, concept bottleneck, CLIP probe, two class Mahalanobis
distances, the paper's heatmap score, two mean contrasts and a nearest-neighbour contrast),
each oriented so that higher = more likely a defect, are stacked here.

Each signal's own hyper-parameter (a ridge, a regularisation strength ``C``, a number of
neighbours) is chosen by that signal's AUROC on the calibration split. The nine standardised
signals are then stacked by a logistic regression whose weights are constrained to be
non-negative (every signal keeps its direction), fit by L-BFGS-B on *cross-fitted* signals:
the fit inputs are cut into folds grouped by source input (an attacked copy goes with its
natural source), and each fold's signals come from models fit on the other folds, so the
stack learns how the signals behave on inputs they have not seen. The stack's ``C`` and class
weighting are chosen by calibration AUROC; :meth:`ConceptMonitor.calibrate` then sets the
thresholds like :class:`~.heatmap_monitor.HeatmapMonitor`.

Explanation: the log-odds is ``base + Σ_c concept_c + Σ named``, exactly. Signals built from
``s`` split over the concepts (linear ones term by term, quadratic forms as ``Σ_c D_c (P D)_c``,
the logarithm of one through the logarithmic mean, distances as ``Σ_c D_c² / ‖D‖``); signals
of ``A z`` are named contributions. Every part is measured from its mean over the correct
reference inputs, so ``base`` is about the log-odds of a typical correct input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SemheatError
from ..metrics import auroc
from ..bundle.store import read_rows
from ..vectors import ROW_CHUNK, unit_rows
from .heatmap_monitor import SIMILARITIES
from .protocol import Evidence, ThresholdMonitor
from .signals import SIGNAL_KEYS, SIGNALS, _FitData, _Inputs

N_FOLDS = 5  # cross-fitting folds of the stack's training signals
STACK_GRID = tuple((c, w) for c in (0.01, 0.1, 1.0, 10.0) for w in (False, True))
STACK_DEFAULT = (1.0, False)  # (C, balanced class weights) when calib cannot choose
SCORE_ROWS = 8192  # inputs scored at a time (float64 views of A z: tens of MB, not GB)


# -- the stack ------------------------------------------------------------------------------------
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


class ConceptMonitor(ThresholdMonitor):
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
        :meth:`HeatmapMonitor.fit <.heatmap_monitor.HeatmapMonitor.fit>`); ``reference``: natural
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
            fitted = {h: {**sig.fixed(self), **sig.fit(data, h)} for h in grid}
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
            params = {sig.key: {**sig.fixed(self), **sig.fit(part, self.hyper_.get(
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

    # -- scoring -----------------------------------------------------------------------------
    def _check_fitted(self):
        if not hasattr(self, "stack_coef_"):
            raise SemheatError("the concept monitor is not fitted yet")

    def score_features(self, z, logits) -> np.ndarray:
        """Defect log-odds of inputs given as arrays: features ``z`` (N x d) and logits."""
        self._check_fitted()
        return self._score_inputs(self._inputs(z, logits))

    def _score_inputs(self, x: _Inputs) -> np.ndarray:
        X = self._signal_matrix(self.params_, x)
        return (X - self.stack_mean_) / self.stack_scale_ @ self.stack_coef_ + \
            self.stack_intercept_

    def reads_like(self, other: "ConceptMonitor") -> bool:
        """Whether ``other`` sees inputs as this one does (the same aligner, concepts, classes
        and standardiser): then one reading of the inputs serves both (:func:`score_together`)."""
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in (
            "W", "b", "concept_embeddings", "class_embeddings", "mean", "std"))

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

    @staticmethod
    def score_together(monitors: list["ConceptMonitor"], evidence: Evidence
                       ) -> list[np.ndarray]:
        """:meth:`score_samples` of several fitted monitors that read inputs alike (those of
        both tasks of one analysis): each chunk's ``A z``, its unit rows and concept scores
        are computed once and scored by every monitor — the same figures, one aligner
        product per input instead of one per monitor."""
        first = monitors[0]
        if not all(first.reads_like(m) for m in monitors[1:]):
            return [m.score_samples(evidence) for m in monitors]

        def both(z, logits):
            x = first._inputs(z, logits)
            return [m._score_inputs(x) for m in monitors]

        chunks = first._chunked(evidence, both, list)
        return [np.concatenate([c[i] for c in chunks]) for i in range(len(monitors))]

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
            const, parts, rest = sig.decompose(self.params_[sig.key], x)
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
