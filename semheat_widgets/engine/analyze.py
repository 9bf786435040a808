"""Build a bundle: from a classifier, a VLM, concepts and a dataset to a saved analysis.

Steps (design §2): extract features, logits and VLM embeddings of every input (and of
adversarial versions of a subset); split the natural inputs into ``fit`` / ``calib`` / ``eval``;
fit the aligner on ``fit``; score every concept; fit the standardiser, the fault localizer and
the two heatmap monitors (misclassification, adversarial) on ``fit``; calibrate thresholds and
the score combinations on ``calib``; score everything; ``eval`` stays untouched for reporting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from torch.utils.data import ConcatDataset, Subset

from ..errors import SemheatError
from .aligner import LinearAligner
from .attacks import Attack
from .baselines import (LogisticCombiner, MahalanobisBaseline, best_baseline,
                        energy_score, msp_score)
from .bundle import SPLITS, Bundle
from .concepts import ConceptBank
from .extract import Extracted, extract
from .heatmaps import ConfusionSums, Standardizer, heatmap
from .localize import FaultLocalizer
from .monitor import HeatmapMonitor
from .split import ModelSplit
from .vlm import VLM

TASKS = ("misclassification", "adversarial")


@dataclass
class AnalysisConfig:
    split_fractions: tuple[float, float, float] = (0.5, 0.25, 0.25)
    split_seed: int = 0
    attacks: tuple[Attack, ...] = (Attack("fgsm"), Attack("pgd"))
    attack_limit: int | None = None  # natural inputs to attack (None: all; 0: no attacks)
    target_fpr: float = 0.05
    per_class_thresholds: bool = False
    monitor_similarity: str = "cosine"  # or "euclidean"
    aligner_alpha: float = 1e-3
    batch_size: int = 128
    num_workers: int = 0
    thumb_size: int = 64
    extra_info: dict = field(default_factory=dict)


def assign_splits(n: int, fractions, seed: int, labels=None) -> np.ndarray:
    """A random (seeded) split label per input, in the given proportions.

    With ``labels`` the split is stratified: every class is cut in the same proportions, and a
    class with any inputs always has at least one in ``fit``.
    """
    fractions = np.asarray(fractions, dtype=float)
    if len(fractions) != 3 or (fractions < 0).any() or not np.isclose(fractions.sum(), 1):
        raise SemheatError(f"split fractions must be three non-negative numbers summing to 1, "
                           f"got {tuple(fractions)}")
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [
        np.flatnonzero(np.asarray(labels) == k) for k in np.unique(labels)]
    out = np.empty(n, dtype=object)
    for members in groups:
        order = members[rng.permutation(len(members))]
        bounds = np.round(np.cumsum(fractions)[:2] * len(order)).astype(int)
        bounds[0] = max(bounds[0], min(1, len(order)))
        bounds[1] = max(bounds[1], bounds[0])
        out[order[:bounds[0]]] = "fit"
        out[order[bounds[0]:bounds[1]]] = "calib"
        out[order[bounds[1]:]] = "eval"
    return out.astype(str)


def _attack_subset(splits: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    if limit is not None and limit < 0:
        raise SemheatError(f"attack_limit must be >= 0 (0: no attacks), got {limit}")
    if limit is None or limit >= len(splits):
        return np.arange(len(splits))
    rng = np.random.default_rng(seed + 1)
    return np.sort(rng.choice(len(splits), size=limit, replace=False))


def _check_splits(splits: np.ndarray, labels: np.ndarray, classes: list[str]) -> None:
    """Enough natural inputs to fit and calibrate on, and every class among those to fit."""
    for name in ("fit", "calib"):
        if (splits == name).sum() < 2:
            raise SemheatError(f"the '{name}' split has fewer than 2 natural inputs; use a larger "
                               f"dataset or other split fractions")
    per_class = np.bincount(labels[splits == "fit"], minlength=len(classes))
    if (per_class == 0).any():
        missing = [classes[k] for k in np.flatnonzero(per_class == 0)]
        raise SemheatError(f"class {missing[0]!r} has no examples in the 'fit' split "
                           f"({len(missing)} class(es) without examples); every class needs some")


def _concat(parts: list[Extracted]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([np.asarray(getattr(p, k)) for p in parts])
            for k in ("features", "logits", "image_emb", "labels", "thumbs")}


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def analyze(split: ModelSplit, vlm: VLM, dataset, *, classes: Sequence[str],
            concepts: ConceptBank, class_prompts: dict[str, list[str]] | None = None,
            config: AnalysisConfig | None = None, name: str = "bundle",
            extra_columns: dict[str, np.ndarray] | None = None, progress: bool = True,
            reference=None, extractor=extract,
            image_embeddings: np.ndarray | None = None) -> Bundle:
    """Analyse ``split`` on ``dataset`` and return the (unsaved) bundle.

    Without ``reference``, the inputs of ``dataset`` are split at random into ``fit`` /
    ``calib`` / ``eval`` (``config.split_fractions``). With ``reference`` — held-out data from
    the classifier's own training distribution — the aligner, heatmap references and thresholds
    come from ``reference`` (split into ``fit`` / ``calib`` in the same proportions) and every
    input of ``dataset`` (e.g. deployment data, perhaps shifted) is ``eval``.

    ``extra_columns`` (one value per natural input: reference inputs first, then ``dataset``'s)
    are copied onto every record derived from that input, e.g. ground truth of the toy world.

    ``extractor`` runs the forward passes; it takes the arguments of :func:`extract` (the
    default, in this process) — :class:`~semheat_widgets.engine.extract_ray.RayExtractor`
    runs them on a Ray cluster instead and yields the same records.

    ``image_embeddings``: the VLM's embeddings of the natural inputs (reference first), when
    already computed — several classifiers analysed on the same images share them; the VLM then
    runs only on attacked inputs (local extraction).
    """
    cfg = config or AnalysisConfig()
    classes = list(classes)
    K = len(classes)
    if len(concepts) == 0:
        raise SemheatError("the concept bank is empty: add at least one concept")
    if split.num_classes != K:
        raise SemheatError(f"the classifier has {split.num_classes} outputs but {K} class "
                           f"names were given")
    if len(dataset) == 0:
        raise SemheatError("the dataset is empty: nothing to analyse")
    n_ref = 0
    if reference is not None:
        if len(reference) == 0:
            raise SemheatError("the reference dataset is empty")
        n_ref = len(reference)
        dataset = ConcatDataset([reference, dataset])
    n_nat = len(dataset)

    # 1. extraction: natural inputs, then attacked copies of a subset
    shared = {} if image_embeddings is None else {"image_embeddings": image_embeddings}
    nat = extractor(split, vlm, dataset, batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                    thumb_size=cfg.thumb_size, progress=progress, desc="classifier + VLM",
                    **shared)
    nat_labels = np.asarray(nat.labels)
    if reference is not None:  # reference -> fit / calib, stratified; the dataset -> eval
        fit_share, calib_share, _ = cfg.split_fractions
        total = fit_share + calib_share
        splits_nat = np.r_[assign_splits(n_ref, (fit_share / total, calib_share / total, 0.0),
                                         cfg.split_seed, nat_labels[:n_ref]),
                           np.full(n_nat - n_ref, "eval")]
    else:
        splits_nat = assign_splits(n_nat, cfg.split_fractions, cfg.split_seed, nat_labels)
    _check_splits(splits_nat, nat_labels, classes)  # before the (costly) attacks
    parts, kinds, sources = [nat], [np.full(n_nat, "natural")], [np.arange(n_nat)]
    attacked = _attack_subset(splits_nat, cfg.attack_limit, cfg.split_seed)
    for attack in cfg.attacks if len(attacked) else ():
        adv = extractor(split, vlm, Subset(dataset, attacked.tolist()),
                        batch_size=cfg.batch_size, num_workers=cfg.num_workers,
                        thumb_size=cfg.thumb_size, progress=progress, attack=attack,
                        desc=f"{attack.kind.upper()} ε={attack.eps:.4f}")
        parts.append(adv)
        kinds.append(np.full(len(attacked), attack.kind))
        sources.append(attacked)
    data = _concat(parts)
    kind = np.concatenate(kinds)
    source = np.concatenate(sources)
    split_of = splits_nat[source]
    labels, logits = data["labels"], data["logits"]
    preds = logits.argmax(1)
    correct = preds == labels
    natural = kind == "natural"
    fit = natural & (split_of == "fit")

    # 2. aligner and concept scores
    aligner = LinearAligner(alpha=cfg.aligner_alpha).fit(data["features"][fit],
                                                          data["image_emb"][fit])
    fidelity = {s: aligner.score(data["features"][natural & (split_of == s)],
                                 data["image_emb"][natural & (split_of == s)])
                for s in SPLITS if (natural & (split_of == s)).sum() >= 2}
    aligned = _unit(aligner.transform(data["features"]))
    concept_emb = concepts.embed(vlm)
    scores = (aligned @ concept_emb.T).astype(np.float32)
    # stored as float32: use exactly what is stored
    fitted = Standardizer.fit(scores[fit], concepts.names)
    standardizer = Standardizer(fitted.mean.astype(np.float32), fitted.std.astype(np.float32))
    scores_std = standardizer(scores)

    # 3. fault localization against class prompts
    class_prompts = class_prompts or {c: [f"a photo of a {c}."] for c in classes}
    class_bank = ConceptBank([(c, class_prompts[c]) for c in classes])
    class_emb = class_bank.embed(vlm)
    stats = ConfusionSums.from_scores(scores[fit], labels[fit], preds[fit], K)
    gt_rows = heatmap("ground_truth", stats, classes, concepts.names, standardizer).values
    loc = FaultLocalizer(class_emb, gt_rows).localize(aligned, scores_std, labels, preds)
    vlm_pred = (data["image_emb"] @ class_emb.T).argmax(1)
    top3 = np.argsort(-np.nan_to_num(loc.responsibility, nan=-np.inf), axis=1)[:, :3]
    top_concepts = [[concepts.names[j] for j in row] if not c else []
                    for row, c in zip(top3, correct)]

    # 4. baselines
    base = {"msp": msp_score(logits), "energy": energy_score(logits)}
    maha = MahalanobisBaseline().fit(data["features"][fit], labels[fit], K)
    base["mahalanobis"] = maha.score(data["features"])

    # 5. monitors, thresholds and combinations
    # An attack succeeded where it turned a correctly classified input into a mistake.
    source_correct = correct[:n_nat][source]
    adversarial = (~natural) & ~correct & source_correct
    task_sets = {
        "misclassification": (natural, ~correct),
        "adversarial": ((natural & correct) | adversarial, adversarial),
    }
    columns, monitor_info, state_extra = {}, {}, {}
    for task, (member, positive) in task_sets.items():
        ref = member & (split_of == "fit")
        cal = member & (split_of == "calib")
        if not (positive[ref].any() and (~positive[ref]).any()):
            monitor_info[task] = {"available": False,
                                  "reason": "no defective or no correct reference inputs"}
            continue
        mon = HeatmapMonitor(cfg.monitor_similarity).fit(scores_std[ref], preds[ref],
                                                         positive[ref], K)
        calibrated = bool((~positive[cal]).any())
        if calibrated:
            mon.calibrate(scores_std[cal], preds[cal], positive[cal], cfg.target_fpr,
                          cfg.per_class_thresholds)
        score = mon.score(scores_std, preds)
        prefix = "misclf" if task == "misclassification" else "adv"
        columns[f"{prefix}_score"] = score.astype(np.float32)
        columns[f"{prefix}_flag"] = score > mon.thresholds_[preds]
        state_extra.update(mon.state(f"monitor.{task}"))
        info = {"available": True, "calibrated": calibrated, "target_fpr": cfg.target_fpr,
                "similarity": cfg.monitor_similarity,
                "per_class": cfg.per_class_thresholds,
                "global_threshold": float(np.median(mon.thresholds_))}
        if positive[cal].any() and (~positive[cal]).any():
            best = best_baseline({k: v[cal] for k, v in base.items()}, positive[cal])
            comb = LogisticCombiner().fit(np.c_[score[cal], base[best][cal]], positive[cal])
            columns[f"{prefix}_combined"] = comb.decision_function(
                np.c_[score, base[best]]).astype(np.float32)
            info["combined_with"] = best
            info["combination"] = {"coef": comb.coef_.tolist(), "mean": comb.mean_.tolist(),
                                   "std": comb.std_.tolist()}
        monitor_info[task] = info

    # 6. records, arrays, state
    rec = {
        "id": np.arange(len(labels), dtype=np.int64), "split": split_of, "kind": kind,
        "source_id": source.astype(np.int64), "label": labels.astype(np.int16),
        "prediction": preds.astype(np.int16), "correct": correct,
        "confidence": (-base["msp"]).astype(np.float32),
        "defect": np.where(correct, "none", np.where(adversarial, "adversarial",
                                                     "misclassified")),
        "source_correct": source_correct,
        "msp": base["msp"].astype(np.float32), "energy": base["energy"].astype(np.float32),
        "mahalanobis": base["mahalanobis"].astype(np.float32),
        "vlm_pred": vlm_pred.astype(np.int16), "oracle_pred": loc.oracle_pred.astype(np.int16),
        "fault": loc.verdict, "oracle_verdict": loc.oracle_verdict,
        "heatmap_verdict": loc.heatmap_verdict, "top_concepts": top_concepts,
        **columns,
    }
    for key, values in (extra_columns or {}).items():
        if not isinstance(values, np.ndarray):  # e.g. a list of lists: keep one item per row
            items = list(values)
            values = np.empty(len(items), dtype=object)
            values[:] = items
        if len(values) != n_nat:
            raise SemheatError(f"extra column {key!r} has {len(values)} values for {n_nat} "
                               f"inputs")
        rec[key] = values[source]
    arrays = {"features": data["features"].astype(np.float32), "logits": logits,
              "image_emb": data["image_emb"], "aligned": aligned, "scores": scores,
              "thumbs": data["thumbs"]}
    state = {**aligner.state(), "concept_embeddings": concept_emb, "class_embeddings": class_emb,
             "standardizer.mean": standardizer.mean.astype(np.float32),
             "standardizer.std": standardizer.std.astype(np.float32),
             **maha.state(), **state_extra}
    info = {
        "models": {"classifier": split.name, "vlm": vlm.name},
        "class_prompts": class_prompts,
        "aligner": {"method": "ridge", "alpha": cfg.aligner_alpha, "fidelity": fidelity},
        "monitor": monitor_info,
        "attacks": [{"kind": a.kind, "eps": a.eps, "steps": a.steps if a.kind == "pgd" else 1}
                    for a in cfg.attacks],
        "splits": {s: int((natural & (split_of == s)).sum()) for s in SPLITS},
        "accuracy": float(correct[natural].mean()),
        **cfg.extra_info,
    }
    return Bundle.create(name=name, classes=classes, concepts=concepts.to_json(),
                         columns=rec, arrays=arrays, state=state, info=info)


def monitor_state(bundle: Bundle, task: str) -> HeatmapMonitor:
    similarity = bundle.manifest.get("monitor", {}).get(task, {}).get("similarity", "cosine")
    return HeatmapMonitor.from_state(bundle.state, f"monitor.{task}", similarity)


def runtime_monitor(bundle: Bundle, split: ModelSplit, task: str = "misclassification"):
    """A :class:`RuntimeMonitor` for ``split`` from a bundle's fitted state."""
    from .monitor import RuntimeMonitor

    if f"monitor.{task}.thresholds" not in bundle.state:
        raise SemheatError(f"the bundle has no fitted {task} monitor")
    # The monitor's reference rows cover the concepts of the build; concepts added later (in
    # memory or saved since) come after them and are left out.
    monitor = monitor_state(bundle, task)
    c = monitor.correct_rows_.shape[1]
    st = bundle.standardizer
    return RuntimeMonitor(split, bundle.aligner, bundle.concept_embeddings[:c],
                          Standardizer(st.mean[:c], st.std[:c]), monitor)
