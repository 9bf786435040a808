"""The pipeline's stage types: its options and what one stage hands the next.

:class:`AnalysisConfig` (the options of an analysis), :class:`Records` (stage 1's output:
everything extracted) and :class:`ConceptScores` (stage 2's: the aligner and every concept's
score). A leaf module: the stages (:mod:`.pipeline`, :mod:`.detect.fit`) import it, it imports
none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..models.aligner import LinearAligner
from ..extract.attacks import Attack
from ..heatmaps import Standardizer
from ..bundle.store import ArrayStore
from ..tasks import NATURAL


@dataclass
class AnalysisConfig:
    split_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    split_seed: int = 0
    attacks: tuple[Attack, ...] = (Attack("fgsm"), Attack("pgd"))
    attack_limit: int | None = None  # natural inputs to attack (None: all; 0: no attacks)
    target_fpr: float = 0.05
    per_class_thresholds: bool = False
    monitor: str = "concept"  # the task monitor flags come from: "concept" or "heatmap" (paper)
    monitor_similarity: str = "cosine"  # or "euclidean"
    aligner_alpha: float | str = "auto"  # ridge strength, or "auto": chosen on calib fidelity
    localization: str = "consensus"  # or "paper" (see .localize)
    finer_maps: bool = True  # fit the finer concept maps' aligner (see concepts.finer_maps)
    batch_size: int = 128
    num_workers: int = 0
    thumb_size: int = 64
    extra_info: dict = field(default_factory=dict)
    started_at: float | None = None  # time.time() when the job began: build_seconds is recorded


@dataclass
class Records:
    """Everything extracted, one row per record (natural inputs first, then attacked copies).

    The large arrays (features, embeddings, thumbnails) live in ``store`` — memory maps of the
    bundle being built, for a large analysis — and are only read chunk by chunk; the small
    per-record columns are in memory."""

    store: ArrayStore
    logits: np.ndarray
    labels: np.ndarray
    perturbation: np.ndarray  # "natural", or the attack method
    source: np.ndarray  # index of the natural input a record derives from
    split: np.ndarray
    n_natural: int

    def __post_init__(self):
        self.predictions = self.logits.argmax(1)
        self.correct = self.predictions == self.labels
        self.natural = self.perturbation == NATURAL

    @property
    def features(self):
        return self.store["features"]

    @property
    def image_emb(self):
        return self.store["image_emb"]

    def where(self, split: str) -> np.ndarray:
        """Natural records of one split."""
        return self.natural & (self.split == split)


@dataclass
class ConceptScores:
    aligner: LinearAligner
    fidelity: dict
    concept_emb: np.ndarray
    scores: np.ndarray  # raw cos(A z, t_j); the unit rows of A z are in the store ("aligned")
    standardizer: Standardizer
    choice: dict  # the ridge strength used, and the calib R² of each one tried
    oracle_pred: np.ndarray  # zero-shot class of A z (the localization's oracle)
    vlm_pred: np.ndarray  # zero-shot class of the VLM's own image embedding
    class_emb: np.ndarray  # K x m: the class prompts' embeddings
