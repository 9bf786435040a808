"""One protocol for every defect detector.

A detector sees :class:`Evidence` about inputs — the classifier's logits and features, the
concept scores in CLIP space — and gives each a defect score (higher = more likely a defect),
scikit-learn style: ``fit(evidence, defect)`` / ``score_samples(evidence)``, fitted state in
attributes ending in ``_``. Its state is a dict of arrays (``state()`` / ``from_state()``),
stored in the bundle's ``state.safetensors`` (see :mod:`.registry`, which also names each
detector's record column). Implementations: :mod:`.baselines` (MSP, energy, Mahalanobis, the
combination), :mod:`.heatmap_monitor` (the paper's heatmap monitor) and
:mod:`.concept_monitor` (the concept-space monitor).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from ...errors import SemheatError
from ..bundle.store import read_rows
from ..metrics import class_thresholds
from ..vectors import ROW_CHUNK


class RowView:
    """Some rows of a large (memory-mapped) array, read only when sliced: ``view[a:b]``
    reads those rows. What :meth:`Evidence.take` gives for arrays too large to copy."""

    def __init__(self, array, rows):
        self.array, self.rows = array, np.asarray(rows)
        self.shape = (len(self.rows), *array.shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        return read_rows(self.array, self.rows[key])


def _rows(array, rows):
    """``array[rows]``, or a :class:`RowView` of them for a memory map (no copy)."""
    if array is None:
        return None
    if isinstance(array, (np.memmap, RowView)) and len(array) > 0:
        base = array if isinstance(array, np.memmap) else array.array
        picked = np.arange(len(array))[rows] if not isinstance(array, RowView) else \
            array.rows[rows]
        return RowView(base, picked)
    return np.asarray(array)[rows]


@dataclass
class Evidence:
    """What detectors may look at, one row per input (``None``: not available)."""

    logits: np.ndarray
    features: np.ndarray | None = None
    concept_scores: np.ndarray | None = None  # raw cos(A z, t_j), N x C
    labels: np.ndarray | None = None  # true labels: for fitting only
    extra: dict = field(default_factory=dict)  # other detectors' scores, by name

    @property
    def predictions(self) -> np.ndarray:
        logits = self.logits
        return np.concatenate([np.asarray(logits[s:s + ROW_CHUNK]).argmax(1)
                               for s in range(0, len(logits), ROW_CHUNK)]) if len(logits) \
            else np.zeros(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.logits)

    def take(self, rows) -> "Evidence":
        """The evidence of some rows (a boolean mask or indices); memory-mapped arrays are
        not copied (:class:`RowView`)."""
        return Evidence(**{f.name: _rows(getattr(self, f.name), rows) for f in fields(self)
                           if f.name != "extra"},
                        extra={k: np.asarray(v)[rows] for k, v in self.extra.items()})

    def need(self, name: str, who: str):
        """The field ``name`` (an array, a memory map or a :class:`RowView`: large ones are
        meant to be read chunk by chunk)."""
        value = getattr(self, name)
        if value is None:
            raise SemheatError(f"the {who} detector needs {name.replace('_', ' ')}")
        return value if isinstance(value, (np.memmap, RowView)) else np.asarray(value)


class Detector:
    """Base of every detector. Subclasses set ``name`` and ``label``; ``per_task`` detectors
    are fitted once per task (they learn from defective inputs), the others once."""

    name: ClassVar[str]
    label: ClassVar[str]
    per_task: ClassVar[bool] = False
    order: ClassVar[int] = 50  # where it stands in tables: monitors first, combinations last

    def fit(self, evidence: Evidence, defect: np.ndarray | None = None) -> "Detector":
        return self

    def score_samples(self, evidence: Evidence) -> np.ndarray:
        raise NotImplementedError

    def state(self) -> dict[str, np.ndarray]:
        return {}

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray], info: dict) -> "Detector":
        return cls()


class ThresholdMonitor(Detector):
    """A monitor that flags an input above its predicted class's threshold (``thresholds_``,
    one per class); subclasses say how many classes (``n_classes``)."""

    n_classes: int

    def calibrate(self, evidence: Evidence, defect, target_fpr: float = 0.05,
                  per_class: bool = False) -> "ThresholdMonitor":
        """Thresholds so that at most ``target_fpr`` of the non-defective inputs are flagged
        (per class where asked and where that class has non-defective inputs)."""
        return self.calibrate_scores(self.score_samples(evidence), defect,
                                     evidence.predictions, target_fpr, per_class)

    def calibrate_scores(self, scores, defect, predictions, target_fpr: float = 0.05,
                         per_class: bool = False) -> "ThresholdMonitor":
        """:meth:`calibrate` from this monitor's scores of the calibration inputs, when they
        are already known (the pipeline scores every record once)."""
        self.thresholds_ = class_thresholds(np.asarray(scores), defect, np.asarray(predictions),
                                            self.n_classes, target_fpr, per_class)
        return self
