"""Did the fix work, and what did it break? Two bundles of the same inputs, compared.

``before.compare(after)`` matches records by id (the two bundles must hold the same natural
inputs: same ids, labels, splits and thumbnails; otherwise one line says what differs) and
reports, on the ``eval`` split:

- accuracy before and after, overall and per class;
- the inputs that flipped: **fixed** (wrong → right) and **broken** (right → wrong);
- known faults (toy and family bundles: ``gt_fault``) before and after;
- the *heatmap delta*: the differential heatmap after minus before (each in its own model's
  z-scores), and per class the concepts that stopped or started separating right from wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SemheatError
from ..heatmaps import Heatmap
from .rounding import rounded, share

SEPARATES = 0.5  # a differential cell this far from 0 (in z-scores) separates right from wrong
SPLIT = "eval"
THUMBS_CHECKED = 256  # thumbnails compared to tell that two bundles hold the same images


@dataclass
class Comparison:
    before: object  # Bundle
    after: object  # Bundle
    rows: np.ndarray  # natural eval record indices (the same in both)
    delta: Heatmap  # differential after − before

    @property
    def labels(self) -> np.ndarray:
        return self.before.column("label")[self.rows].astype(int)

    def predictions(self, which: str) -> np.ndarray:
        return getattr(self, which).column("prediction")[self.rows].astype(int)

    def flips(self) -> tuple[np.ndarray, np.ndarray]:
        """Boolean masks over :attr:`rows`: ``(fixed, broken)``."""
        y = self.labels
        right_before, right_after = self.predictions("before") == y, \
            self.predictions("after") == y
        return ~right_before & right_after, right_before & ~right_after

    def flipped(self, cls: str | None = None, concept: str | None = None) -> np.ndarray:
        """Record indices of flipped inputs (of class ``cls`` — true, or predicted before or
        after — when given), the strongest in ``concept`` (after) first."""
        fixed, broken = self.flips()
        m = fixed | broken
        if cls is not None:
            k = self.before.classes.index(cls)
            m &= (self.labels == k) | (self.predictions("before") == k) | \
                 (self.predictions("after") == k)
        idx = self.rows[m]
        if concept is not None:
            z = self.after.concept_column(concept)[idx]
            idx = idx[np.argsort(-z, kind="stable")]
        return idx

    def to_json(self, top: int = 3) -> dict:
        y, classes = self.labels, self.before.classes
        pb, pa = self.predictions("before"), self.predictions("after")
        fixed, broken = self.flips()
        per_class = {c: {"n": int((y == k).sum()),
                         "accuracy_before": share((pb == y)[y == k]),
                         "accuracy_after": share((pa == y)[y == k]),
                         "fixed": int((fixed & (y == k)).sum()),
                         "broken": int((broken & (y == k)).sum())}
                     for k, c in enumerate(classes)}
        out = {"before": self.before.name, "after": self.after.name, "split": SPLIT,
               "n_inputs": int(len(self.rows)),
               "accuracy": {"before": share(pb == y), "after": share(pa == y)},
               "flipped": {"fixed": int(fixed.sum()), "broken": int(broken.sum())},
               "per_class": per_class, "known_faults": self.known_faults(),
               "differential_delta": {}, "separating": {}}
        d = self.delta.values
        before, after = _differential(self.before), _differential(self.after)
        for i, c in enumerate(classes):
            row = {self.delta.columns[j]: _num(d[i, j]) for j in range(d.shape[1])}
            out["differential_delta"][c] = row
            out["separating"][c] = self._separating(before[i], after[i, :d.shape[1]], top)
        return out

    def known_faults(self) -> dict:
        """Inputs with a known culprit (``gt_fault``) before and after, per kind."""
        out = {}
        for kind in ("encoder", "head"):
            counts = {}
            for which in ("before", "after"):
                b = getattr(self, which)
                if b.has_column("gt_fault"):
                    counts[which] = int((b.column("gt_fault")[self.rows] == kind).sum())
            if counts.get("before"):
                counts["fall"] = rounded(1 - counts.get("after", 0) / counts["before"]) \
                    if "after" in counts else None
                out[kind] = counts
        return out

    def _separating(self, before: np.ndarray, after: np.ndarray, top: int) -> dict:
        """Concepts whose differential crossed :data:`SEPARATES` (one row)."""
        cols = self.delta.columns
        stopped = [(cols[j], _num(before[j]), _num(after[j])) for j in
                   np.argsort(-np.nan_to_num(np.abs(before) - np.abs(after), nan=-np.inf))
                   if abs(before[j]) >= SEPARATES > abs(after[j])][:top]
        started = [(cols[j], _num(before[j]), _num(after[j])) for j in
                   np.argsort(-np.nan_to_num(np.abs(after) - np.abs(before), nan=-np.inf))
                   if abs(after[j]) >= SEPARATES > abs(before[j])][:top]
        return {"stopped": [{"concept": c, "before": b, "after": a} for c, b, a in stopped],
                "started": [{"concept": c, "before": b, "after": a} for c, b, a in started]}


def _differential(bundle) -> np.ndarray:
    return bundle.heatmap("differential", split=SPLIT).values


def _num(x) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 4)


def same_inputs(before, after) -> np.ndarray:
    """The natural ``eval`` record indices, after checking that both bundles hold the same
    inputs (one-line error naming what differs)."""
    if before.classes != after.classes:
        raise SemheatError("the bundles have different classes; compare bundles of one task")
    nb, na = before.mask(perturbation="natural"), after.mask(perturbation="natural")
    if nb.sum() != na.sum():
        raise SemheatError(f"the bundles hold {int(nb.sum())} and {int(na.sum())} natural "
                           f"inputs: not the same inputs")
    ib, ia = np.flatnonzero(nb), np.flatnonzero(na)
    for column in ("id", "label", "split"):
        if not np.array_equal(before.column(column)[ib], after.column(column)[ia]):
            raise SemheatError(f"the bundles' natural inputs differ in their {column}: not the "
                               f"same inputs (build both on one dataset and reference)")
    tb, ta = before.arrays.get("thumbs"), after.arrays.get("thumbs")
    if tb is not None and ta is not None:
        if tb.shape[1:] != ta.shape[1:]:
            raise SemheatError("the bundles' thumbnails differ in size: not the same inputs")
        # ids, labels and splits are checked in full above; the images on evenly spaced rows
        # (reading every thumbnail of a large bundle would cost what the comparison does not)
        look = np.unique(np.linspace(0, len(ib) - 1, min(len(ib), THUMBS_CHECKED)).astype(int))
        if not np.array_equal(tb[ib[look]], ta[ia[look]]):
            raise SemheatError("the bundles' images differ: not the same inputs")
    if not np.array_equal(ib, ia):
        raise SemheatError("the bundles number their natural inputs differently")
    return ib[before.column("split")[ib] == SPLIT]


def compare(before, after) -> Comparison:
    """Compare two bundles of the same inputs (see the module docstring)."""
    rows = same_inputs(before, after)
    if after.concept_names[:len(before.concept_names)] != before.concept_names and \
            before.concept_names != after.concept_names:
        raise SemheatError("the bundles score different concepts; compare bundles built with "
                           "one concept bank")
    hb = before.heatmap("differential", split=SPLIT)
    ha = after.heatmap("differential", split=SPLIT)
    cols = hb.columns
    values = ha.values[:, :len(cols)] - hb.values
    delta = Heatmap("differential_delta", values, ha.counts_other, hb.rows, cols,
                    standardized=True, counts_other=hb.counts_other)
    return Comparison(before, after, rows, delta)
