"""Stage 4 of the pipeline: every defect detector fitted, calibrated and run on every record.

- Baselines once: maximum softmax, energy, Mahalanobis (fit on the natural ``fit`` inputs).
- Per task (misclassification, adversarial): both concept-space monitors — the paper's heatmap
  monitor (:mod:`.heatmap_monitor`) and the stacked concept-space monitor
  (:mod:`.concept_monitor`) — fit on the task's ``fit`` inputs, their hyper-parameters chosen
  and thresholds calibrated on ``calib``; the configured one (``AnalysisConfig.monitor``) gives
  the task's ``score`` and ``flag`` columns. Then its logistic combination with the baseline
  that is best on ``calib``.

``eval`` is never seen here. The concept monitor is fit on at most :data:`MONITOR_FIT_ROWS`
inputs of each kind (a seeded sample keeping the defective ones first): its nine signals need
thousands, not millions, and so large analyses stay fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..tasks import task_sets
from .baselines import Combination, Energy, Mahalanobis, MaxSoftmax, best_baseline
from .concept_monitor import ConceptMonitor
from .heatmap_monitor import HeatmapMonitor
from .names import check_monitor_name
from .protocol import Evidence
from .registry import pack, score_column

if TYPE_CHECKING:  # annotations only: the stage types import torch (Attack)
    from ..pipeline.types import AnalysisConfig, ConceptScores, Records

MONITOR_FIT_ROWS = 5_000


@dataclass
class Detection:
    columns: dict = field(default_factory=dict)  # record columns
    state: dict = field(default_factory=dict)  # fitted arrays
    info: dict = field(default_factory=dict)  # manifest["monitor"]


def fit_detectors(rec: Records, cs: ConceptScores, cfg: AnalysisConfig) -> Detection:
    """Stage 4 (see the module docstring)."""
    check_monitor_name(cfg.monitor)
    out = Detection()
    evidence = Evidence(rec.logits, rec.features, cs.scores, rec.labels)
    natural_fit = rec.where("fit")
    maha = Mahalanobis().fit(evidence.take(natural_fit))
    base = {"msp": MaxSoftmax().score_samples(evidence),
            "energy": Energy().score_samples(evidence), "mahalanobis": maha.score_samples(evidence)}
    out.state.update(pack(maha, None))
    out.columns.update({k: v.astype(np.float32) for k, v in base.items()})
    source_correct = rec.correct[:rec.n_natural][rec.source]
    out.columns["source_correct"] = source_correct
    fitted = {}  # task -> (member, positive, calibration rows, calibrated, monitors)
    for task, (member, positive) in task_sets(rec.perturbation, rec.correct,
                                              source_correct).items():
        ref, cal = member & (rec.split == "fit"), member & (rec.split == "calib")
        if not (positive[ref].any() and (~positive[ref]).any()):
            out.info[task.name] = {"available": False,
                                   "reason": "no defective or no correct reference inputs"}
            continue
        calibrated = bool((~positive[cal]).any())
        monitors = {"heatmap": HeatmapMonitor(cfg.monitor_similarity, cs.standardizer.mean,
                                              cs.standardizer.std).fit(evidence.take(ref),
                                                                       positive[ref]),
                    "concept": _fit_concept_monitor(rec, cs, cfg, evidence, ref, cal, positive)}
        fitted[task] = (member, positive, cal, calibrated, monitors)
    # every record scored by the concept monitors of both tasks in one pass (they read the
    # inputs alike: one aligner product per record, not one per task); thresholds then come
    # from the scores of the calibration records, not from scoring them again
    concept = ConceptMonitor.score_together([f[-1]["concept"] for f in fitted.values()],
                                            evidence) if fitted else []
    for (task, (member, positive, cal, calibrated, monitors)), concept_scores in zip(
            fitted.items(), concept):
        scores = {"heatmap": monitors["heatmap"].score_samples(evidence),
                  "concept": concept_scores}
        for name, mon in monitors.items():
            if calibrated:
                mon.calibrate_scores(scores[name][cal], positive[cal], rec.predictions[cal],
                                     cfg.target_fpr, cfg.per_class_thresholds)
            out.columns[score_column(name, task)] = scores[name].astype(np.float32)
            out.state.update(pack(mon, task))
        chosen = monitors[cfg.monitor]
        score = scores[cfg.monitor]
        out.columns[task.column("score")] = score.astype(np.float32)  # the task's monitor
        out.columns[task.column("flag")] = score > chosen.thresholds_[rec.predictions]
        info = {"available": True, "calibrated": calibrated, "target_fpr": cfg.target_fpr,
                "similarity": cfg.monitor_similarity, "per_class": cfg.per_class_thresholds,
                "monitor": cfg.monitor, "global_threshold": float(np.median(chosen.thresholds_)),
                "detectors": {"concept": monitors["concept"].info()}}
        if positive[cal].any() and (~positive[cal]).any():
            best = best_baseline({k: v[cal] for k, v in base.items()}, positive[cal])
            scored = Evidence(rec.logits, extra={cfg.monitor: score, best: base[best]})
            comb = Combination((cfg.monitor, best)).fit(scored.take(cal), positive[cal])
            out.columns[score_column("combined", task)] = comb.score_samples(scored).astype(
                np.float32)
            out.state.update(pack(comb, task))
            info.update(combined_with=best, combination={"inputs": [cfg.monitor, best]})
        out.info[task.name] = info
    return out


def _fit_concept_monitor(rec, cs, cfg, evidence: Evidence, ref, cal, positive
                         ) -> ConceptMonitor:
    """The concept-space monitor of one task: fit on its ``fit`` inputs (``ref``) with the
    natural ``fit`` inputs as labelled references, hyper-parameters chosen on ``calib``."""
    rng = np.random.default_rng(cfg.split_seed)
    members = cap_rows(np.flatnonzero(ref), positive, MONITOR_FIT_ROWS, rng)
    natural = cap_rows(np.flatnonzero(rec.where("fit")), ~rec.correct, MONITOR_FIT_ROWS, rng)
    calib = cap_rows(np.flatnonzero(cal), positive, MONITOR_FIT_ROWS, rng)
    monitor = ConceptMonitor(cs.aligner.W_, cs.aligner.b_, cs.concept_emb, cs.class_emb,
                             cs.standardizer.mean, cs.standardizer.std, cfg.monitor_similarity)
    return monitor.fit(evidence.take(members), positive[members],
                       reference=evidence.take(natural), groups=rec.source[members],
                       reference_groups=rec.source[natural],
                       calib=(evidence.take(calib), positive[calib]), seed=cfg.split_seed)


def cap_rows(rows: np.ndarray, flagged: np.ndarray, limit: int, rng) -> np.ndarray:
    """``limit`` of ``rows`` (all of them when they fit), sorted: the ``flagged`` ones (defects:
    rare, precious) kept up to half the limit, more when too few others remain; the rest drawn
    at random."""
    if len(rows) <= limit:
        return rows
    bad, good = rows[flagged[rows]], rows[~flagged[rows]]
    n_good = min(len(good), limit - min(len(bad), limit // 2))
    n_bad = min(len(bad), limit - n_good)  # defects fill what the correct ones leave
    pick = np.r_[rng.choice(bad, n_bad, replace=False), rng.choice(good, n_good, replace=False)]
    return np.sort(pick)
