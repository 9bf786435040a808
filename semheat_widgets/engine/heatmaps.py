"""Semantic heatmaps: rows = classes, columns = concepts, cell = mean concept score of a group.

Every heatmap kind is a sum over one sufficient statistic, the *confusion tensor*
``sums[y, ŷ, j] = Σ s_ij`` over inputs with label ``y`` and prediction ``ŷ`` (plus the counts
``n[y, ŷ]``), computed in one pass over the scores:

- ``ground_truth``       row k: inputs with ``y = k``
- ``output``             row k: inputs with ``ŷ = k``
- ``correct``            row k: ``ŷ = k`` and right  (grouped by prediction: at runtime only
- ``incorrect``          row k: ``ŷ = k`` and wrong   the prediction is known)
- ``misclassified_from`` row k: ``y = k`` and wrong
- ``differential``       correct − incorrect;  ``gt_minus_output``: ground_truth − output

A cell with no inputs is NaN with count 0. Standardised values (the default for display) are
per-concept z-scores ``(s − μ_j) / σ_j`` with μ, σ from held-out records; because that map is
affine, the standardised mean of a group is the standardised raw mean.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import SemheatError
from .vectors import EPS, SCORE_CHUNK

MIN_SPREAD = 1e-7  # a concept whose scores vary less than this (relative) cannot be z-scored
GROUP_KINDS = ("ground_truth", "output", "correct", "incorrect", "misclassified_from")
DIFFERENTIAL_KINDS = {"differential": ("correct", "incorrect"),
                      "gt_minus_output": ("ground_truth", "output")}
KINDS = GROUP_KINDS + tuple(DIFFERENTIAL_KINDS)


@dataclass
class Heatmap:
    """A classes x concepts matrix with per-row counts. NaN cells are empty (count 0)."""

    kind: str
    values: np.ndarray  # K x C float64, NaN where empty
    counts: np.ndarray  # K int: inputs per row (for differences: of the first term)
    rows: list[str]
    columns: list[str]
    standardized: bool = True
    counts_other: np.ndarray | None = None  # K int: of the subtracted term, for differences
    meta: dict = field(default_factory=dict)

    @property
    def shape(self):
        return self.values.shape

    def binarize(self, top_k: int | None = None, threshold: float | None = None) -> "Heatmap":
        """Present (1) / absent (0) per cell: the ``top_k`` largest of each row, or the cells
        above ``threshold``. Empty cells stay empty."""
        if (top_k is None) == (threshold is None):
            raise SemheatError("binarize with exactly one of top_k= or threshold=")
        v = self.values
        out = np.full(v.shape, np.nan)
        filled = ~np.isnan(v)
        if threshold is not None:
            out[filled] = (v[filled] > threshold).astype(float)
        else:
            if not 1 <= top_k <= v.shape[1]:
                raise SemheatError(f"top_k must be in 1..{v.shape[1]}, got {top_k}")
            for i in range(v.shape[0]):
                if filled[i].all():
                    out[i] = 0.0
                    out[i, np.argsort(-v[i], kind="stable")[:top_k]] = 1.0
        return replace(self, kind=f"binarized_{self.kind}", values=out,
                       meta={**self.meta, "top_k": top_k, "threshold": threshold})

    def table(self, rows=None, columns=None, digits: int = 2):
        """The heatmap (or some of its rows / columns) as a :class:`~semheat_widgets.tables.
        Table`, which displays itself in a notebook; each row carries its input count."""
        from ..tables import Table

        rows = list(self.rows) if rows is None else list(rows)
        columns = list(self.columns) if columns is None else list(columns)
        for name in rows:
            if name not in self.rows:
                raise SemheatError(f"no row {name!r} in this heatmap")
        for name in columns:
            if name not in self.columns:
                raise SemheatError(f"no column {name!r} in this heatmap")
        out = []
        for name in rows:
            i = self.rows.index(name)
            entry = {"class": name, "inputs": int(self.counts[i])}
            if self.counts_other is not None:
                entry["inputs (subtracted)"] = int(self.counts_other[i])
            entry.update({c: float(self.values[i, self.columns.index(c)]) for c in columns})
            out.append(entry)
        return Table(out, digits=digits, title=f"{self.kind.replace('_', ' ')} heatmap"
                     + (" (z-scores)" if self.standardized else ""))

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def to_rows(self) -> list[dict]:
        """Long-form cells for charts: one dict per (class, concept)."""
        out = []
        for i, r in enumerate(self.rows):
            for j, c in enumerate(self.columns):
                v = self.values[i, j]
                cell = {"row": r, "column": c, "value": None if np.isnan(v) else float(v),
                        "n": int(self.counts[i])}
                if self.counts_other is not None:
                    cell["n_other"] = int(self.counts_other[i])
                out.append(cell)
        return out


class ConfusionSums:
    """Sufficient statistics of every group heatmap: per (label, prediction) sums and counts."""

    def __init__(self, sums: np.ndarray, counts: np.ndarray):
        self.sums = sums  # K x K x C float64
        self.counts = counts  # K x K int64

    @classmethod
    def from_scores(cls, scores, labels, predictions, n_classes: int,
                    chunk_size: int = SCORE_CHUNK) -> "ConfusionSums":
        """One pass over ``scores`` (N x C, may be a memory map), in float64."""
        labels = np.asarray(labels)
        predictions = np.asarray(predictions)
        n = len(labels)
        if scores.ndim != 2 or scores.shape[0] != n or len(predictions) != n:
            raise SemheatError(f"scores {scores.shape}, labels ({n},) and predictions "
                               f"({len(predictions)},) do not match")
        for name, arr in (("labels", labels), ("predictions", predictions)):
            if n and (arr.min() < 0 or arr.max() >= n_classes):
                raise SemheatError(f"{name} must lie in 0..{n_classes - 1}")
        K, C = n_classes, scores.shape[1]
        group = labels.astype(np.int64) * K + predictions.astype(np.int64)
        sums = np.zeros(K * K * C)
        cols = np.arange(C, dtype=np.int64)
        for s in range(0, n, chunk_size):
            block = np.asarray(scores[s:s + chunk_size], dtype=np.float64)
            # one weighted bincount over (group, concept) cells: a sequential float64 sum per
            # cell, in record order (NumPy only: a bundle reader needs no torch)
            cell = (group[s:s + chunk_size, None] * C + cols).ravel()
            sums += np.bincount(cell, weights=block.ravel(), minlength=K * K * C)
        if not np.isfinite(sums).all():  # free: the sums are there (a bundle's arrays are
            # checked when written; a file damaged since is found here or by `semheat verify`)
            raise SemheatError("the concept scores hold NaN or inf values (a damaged "
                               "arrays/scores.npy? check it with: semheat verify BUNDLE)")
        counts = np.bincount(group, minlength=K * K).reshape(K, K)
        return cls(sums.reshape(K, K, C), counts)

    def group(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        """``(sums K x C, counts K)`` of one group kind."""
        s, n = self.sums, self.counts
        diag_s = np.einsum("kkc->kc", s)
        diag_n = np.diag(n)
        if kind == "ground_truth":
            return s.sum(1), n.sum(1)
        if kind == "output":
            return s.sum(0), n.sum(0)
        if kind == "correct":
            return diag_s, diag_n
        if kind == "incorrect":
            return s.sum(0) - diag_s, n.sum(0) - diag_n
        if kind == "misclassified_from":
            return s.sum(1) - diag_s, n.sum(1) - diag_n
        raise SemheatError(f"unknown heatmap kind {kind!r}; choose from {list(KINDS)}")

    def mean(self, kind: str) -> tuple[np.ndarray, np.ndarray]:
        sums, counts = self.group(kind)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = sums / counts[:, None]
        means[counts == 0] = np.nan
        return means, counts


class Standardizer:
    """Per-concept z-scores ``(s − μ) / σ`` with μ, σ from held-out records."""

    def __init__(self, mean: np.ndarray, std: np.ndarray):
        self.mean = np.asarray(mean, dtype=np.float64)
        self.std = np.maximum(np.asarray(std, dtype=np.float64), 1e-8)

    @classmethod
    def fit(cls, scores: np.ndarray, names=None) -> "Standardizer":
        """μ, σ per concept; a concept that scores the same on every record is an error
        (its z-scores would be noise blown up to huge values), named when ``names`` is given."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape[0] < 2:
            raise SemheatError("need at least 2 records to standardise concept scores")
        if not np.isfinite(scores).all():
            raise SemheatError("concept scores contain NaN or inf")
        std = scores.std(0)
        flat = np.flatnonzero(~(std > MIN_SPREAD * np.maximum(np.abs(scores).max(0), EPS)))
        if len(flat):
            j = int(flat[0])
            name = repr(names[j]) if names is not None else f"#{j}"
            raise SemheatError(f"concept {name} scores the same on every reference input: its "
                               f"z-scores would be meaningless (check its prompts)")
        return cls(scores.mean(0), std)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.mean) / self.std

    def state(self) -> dict[str, np.ndarray]:
        return {"standardizer.mean": self.mean.astype(np.float32),
                "standardizer.std": self.std.astype(np.float32)}

    @classmethod
    def from_state(cls, state: dict) -> "Standardizer":
        return cls(state["standardizer.mean"], state["standardizer.std"])

    def scale_difference(self, diff: np.ndarray) -> np.ndarray:
        return diff / self.std


def heatmap(kind: str, stats: ConfusionSums, rows, columns,
            standardizer: Standardizer | None = None) -> Heatmap:
    """Build one heatmap of ``kind`` from the confusion sums."""
    rows, columns = list(rows), list(columns)
    if kind in DIFFERENTIAL_KINDS:
        a, b = DIFFERENTIAL_KINDS[kind]
        (va, na), (vb, nb) = stats.mean(a), stats.mean(b)
        values = va - vb  # NaN where either side is empty
        if standardizer is not None:
            values = standardizer.scale_difference(values)
        return Heatmap(kind, values, na, rows, columns, standardizer is not None, nb)
    if kind not in GROUP_KINDS:
        raise SemheatError(f"unknown heatmap kind {kind!r}; choose from {list(KINDS)}")
    values, counts = stats.mean(kind)
    if standardizer is not None:
        values = standardizer(values)
    return Heatmap(kind, values, counts, rows, columns, standardizer is not None)


def all_heatmaps(scores, labels, predictions, rows, columns,
                 standardizer: Standardizer | None = None) -> dict[str, Heatmap]:
    """Every kind at once, from a single pass over the scores."""
    stats = ConfusionSums.from_scores(scores, labels, predictions, len(rows))
    return {k: heatmap(k, stats, rows, columns, standardizer) for k in KINDS}


def single_heatmap(score_row: np.ndarray, columns, label: str,
                   standardizer: Standardizer | None = None) -> Heatmap:
    """The single-input heatmap: one row, the input's own concept scores."""
    values = np.asarray(score_row, dtype=np.float64)[None, :]
    if standardizer is not None:
        values = standardizer(values)
    return Heatmap("single", values, np.array([1]), [label], list(columns),
                   standardizer is not None)
