"""Build a bundle: from a classifier, a VLM, concepts and a dataset to an analysis.

Stages (design §2), each a function below:

1. :func:`extract_records` — features, logits and VLM embeddings of every input, and of
   adversarial versions of a subset; the natural inputs split into ``fit`` / ``calib`` /
   ``eval``.
2. :func:`score_concepts` — the aligner fit on ``fit``, every concept scored, the standardiser;
   then the finer concept maps' aligner (:func:`~..concepts.finer_maps.fit_map_aligner`, one
   more classifier pass over at most 2,500 ``fit`` and ``calib`` inputs; ResNet-layout
   classifiers).
3. :func:`localize_faults` — the oracle and heatmap verdicts of every misclassified input.
4. :func:`~.detect.fit.fit_detectors` — the baselines; per task the concept-space monitors
   (the paper's heatmap monitor and the stacked one) and their combination with the best
   baseline: fitted on ``fit``, chosen and calibrated on ``calib``.
5. :func:`assemble` — records, arrays, fitted state and manifest.

``eval`` stays untouched for reporting.
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np
from torch.utils.data import ConcatDataset, Subset

from ...errors import SemheatError
from ..models.aligner import Fidelity, LinearAligner, fit_best_alpha
from ..bundle import Bundle
from ..models.classifier import ModelSplit
from ..concepts.bank import (ConceptBank, as_concept_bank, check_class_names,
                             default_class_prompts)
from ..concepts.finer_maps import fit_map_aligner
from ..detect.fit import Detection, fit_detectors
from ..detect.names import check_monitor_name
from ..extract.local import extract
from ..heatmaps import ConfusionSums, Standardizer, heatmap
from ..memory import release_freed_memory
from ..localize import (DECIDE_AT, FaultLocalizer, Localization, class_reference,
                        image_concept_scores)
from ..bundle.schema import SPLITS
# the stage types live in a leaf module; `from .pipeline import AnalysisConfig` still works
from .types import AnalysisConfig, ConceptScores, Records
from ..bundle.store import ArrayStore, array_chunks, map_rows, read_rows, row_chunks
from ..tasks import NATURAL
from ..vectors import unit_rows, zero_shot
from ..models.vlm import VLM

TOP_CONCEPTS = 3  # responsible concepts kept per misclassified input




# -- stage 1: extraction and splits ------------------------------------------------------------
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


def check_labels(labels: np.ndarray, classes) -> None:
    """Every label a class index ``0..K-1`` (one line naming the first bad one)."""
    bad = np.flatnonzero((labels < 0) | (labels >= len(classes)))
    if len(bad):
        raise SemheatError(f"label {int(labels[bad[0]])} of input {int(bad[0])} is outside "
                           f"0..{len(classes) - 1} ({len(classes)} classes; {len(bad)} bad "
                           f"label(s)); labels must index the class names")


def _attack_subset(n: int, limit: int | None, seed: int) -> np.ndarray:
    if limit is not None and limit < 0:
        raise SemheatError(f"attack_limit must be >= 0 (0: no attacks), got {limit}")
    if limit is None or limit >= n:
        return np.arange(n)
    rng = np.random.default_rng(seed + 1)
    return np.sort(rng.choice(n, size=limit, replace=False))


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


def extract_records(classifier: ModelSplit, vlm: VLM, dataset, n_reference: int,
                    classes: list[str], cfg: AnalysisConfig, progress: bool, extractor,
                    image_embeddings, folder) -> Records:
    """Stage 1: natural inputs (reference first), their splits, then attacked copies — all
    written into one :class:`~.bundle.store.ArrayStore` (memory maps in ``folder``, when
    given)."""
    given = {} if image_embeddings is None else {"image_embeddings": image_embeddings}
    run = dict(batch_size=cfg.batch_size, num_workers=cfg.num_workers,
               thumb_size=cfg.thumb_size, progress=progress)
    n = len(dataset)
    attacked = _attack_subset(n, cfg.attack_limit, cfg.split_seed)
    attacks = cfg.attacks if len(attacked) else ()
    store = ArrayStore(n + len(attacked) * len(attacks), folder)

    def into_store(data, offset, **kwargs):
        if getattr(extractor, "writes_into", False):
            return extractor(classifier, vlm, data, into=store, offset=offset, **run, **kwargs)
        part = extractor(classifier, vlm, data, **run, **kwargs)  # its own arrays: copy over
        for key in ("features", "logits", "image_emb", "labels", "thumbs"):
            values = getattr(part, key)
            for rows in array_chunks(values):
                store.write(key, offset + rows.start, read_rows(values, rows))
        return part

    into_store(dataset, 0, desc="classifier + VLM", **given)
    labels = read_rows(store["labels"], slice(0, n))
    check_labels(labels, classes)
    if n_reference:  # reference -> fit / calib, stratified; the dataset itself -> eval
        fit_share, calib_share, _ = cfg.split_fractions
        total = fit_share + calib_share
        splits = np.r_[assign_splits(n_reference, (fit_share / total, calib_share / total, 0.0),
                                     cfg.split_seed, labels[:n_reference]),
                       np.full(n - n_reference, "eval")]
    else:
        splits = assign_splits(n, cfg.split_fractions, cfg.split_seed, labels)
    _check_splits(splits, labels, classes)  # before the (costly) attacks
    kinds, sources = [np.full(n, NATURAL)], [np.arange(n)]
    for i, attack in enumerate(attacks):
        into_store(Subset(dataset, attacked.tolist()), n + i * len(attacked), attack=attack,
                   desc=f"{attack.method.upper()} ε={attack.eps:.4f}")
        kinds.append(np.full(len(attacked), attack.method))
        sources.append(attacked)
    store.flush()
    source = np.concatenate(sources)
    return Records(store, read_rows(store["logits"], slice(None)),
                   read_rows(store["labels"], slice(None)), np.concatenate(kinds), source,
                   splits[source], n)


# -- stage 2: concepts ---------------------------------------------------------------------------
ALIGNER_ROWS = 100_000  # records of each split the aligner is fit (and its strength chosen) on


def score_concepts(rec: Records, vlm: VLM, concepts: ConceptBank, class_emb: np.ndarray,
                   alpha: float | str) -> ConceptScores:
    """Stage 2: the aligner (fit on ``fit``; its ridge strength chosen on ``calib`` fidelity
    when ``alpha`` is ``"auto"``), then one chunked pass: the aligned embeddings (into the
    store), every concept's score, the zero-shot classes of ``A z`` and of the image; then the
    standardiser. A split larger than :data:`ALIGNER_ROWS` is sampled for the aligner (a
    512 x 512 ridge regression wants tens of thousands of pairs, not half a million: at 1M
    inputs the sums of the full split took a minute); fidelity is still reported on all."""
    fit, cal = np.flatnonzero(rec.where("fit")), np.flatnonzero(rec.where("calib"))
    rng = np.random.default_rng(0)  # at scale, the aligner reads a seeded sample of each split
    fit_rows, cal_rows = (np.sort(rng.choice(r, ALIGNER_ROWS, replace=False))
                          if len(r) > ALIGNER_ROWS else r for r in (fit, cal))
    tried = {}
    if alpha == "auto":
        aligner, tried = fit_best_alpha(rec.features, rec.image_emb, fit_rows, cal_rows)
    else:
        aligner = LinearAligner(alpha=alpha).fit(rec.features, rec.image_emb, fit_rows)
    concept_emb = concepts.embed(vlm)
    n = len(rec.labels)
    scores = np.empty((n, len(concept_emb)), np.float32)
    oracle_pred, vlm_pred = np.empty(n, np.int64), np.empty(n, np.int64)
    tallies = {s: Fidelity(aligner.n_outputs_) for s in SPLITS}
    in_split = {s: rec.where(s) for s in SPLITS}
    for rows in row_chunks(n):  # one pass: everything that needs A z or e of every record
        pred = aligner.transform(read_rows(rec.features, rows))
        image_emb = read_rows(rec.image_emb, rows)
        for split, tally in tallies.items():
            mine = in_split[split][rows]
            tally.add(pred[mine], image_emb[mine])
        aligned = unit_rows(pred).astype(np.float32)
        rec.store.write("aligned", rows.start, aligned)
        scores[rows] = aligned @ concept_emb.T
        oracle_pred[rows] = zero_shot(aligned, class_emb)
        vlm_pred[rows] = zero_shot(image_emb, class_emb)
    fidelity = {s: t.result() for s, t in tallies.items() if t.n >= 2}
    rec.store.flush()
    # stored as float32: use exactly what is stored
    fitted = Standardizer.fit(scores[fit], concepts.names)
    standardizer = Standardizer(fitted.mean.astype(np.float32), fitted.std.astype(np.float32))
    return ConceptScores(aligner, fidelity, concept_emb, scores, standardizer,
                         {"alpha": aligner.alpha,
                          "r2_by_alpha": {str(a): r for a, r in tried.items()}},
                         oracle_pred, vlm_pred, class_emb)


# -- stage 3: fault localization -----------------------------------------------------------------
def localize_faults(rec: Records, cs: ConceptScores, class_emb: np.ndarray, classes,
                    concept_names, rule: str) -> tuple[Localization, FaultLocalizer]:
    """Stage 3: verdicts of every misclassified input (the ``rule``'s and the paper's), from
    the ``fit`` ground-truth heatmap and a concept probe fit on ``fit``, tuned on ``calib``."""
    fit, cal = rec.where("fit"), rec.where("calib")
    stats = ConfusionSums.from_scores(cs.scores[fit], rec.labels[fit], rec.predictions[fit],
                                      len(classes))
    gt_rows = heatmap("ground_truth", stats, classes, concept_names, cs.standardizer).values
    z = cs.standardizer(cs.scores)
    # what the images show, read by the VLM from their pixels (responsibility's witness)
    fit_rows = np.flatnonzero(fit)
    wrong_rows = np.flatnonzero(rec.labels != rec.predictions)
    def seen(e):  # the VLM's concept scores of some image embeddings
        return image_concept_scores(e, cs.concept_emb)

    def class_cos(a):  # cosines of some (unit) aligned embeddings with the class prompts
        return np.asarray(a, np.float64) @ unit_rows(np.asarray(class_emb, np.float64)).T

    # (each read a chunk at a time: at 1M inputs the fit split's embeddings alone are 1 GB)
    shown_fit = map_rows(rec.image_emb, fit_rows, seen)
    shown_st = Standardizer.fit(shown_fit, concept_names)
    right = rec.correct[fit_rows]  # what the correct reference images of each class show
    shown_reference = class_reference(shown_st(shown_fit), rec.labels[fit_rows], len(classes),
                                      right)
    shown = shown_st(map_rows(rec.image_emb, wrong_rows, seen))  # the misclassified rows
    localizer = FaultLocalizer(class_emb, gt_rows, rule, shown_reference).fit_probe(
        z[fit], rec.labels[fit], z[cal], rec.labels[cal])
    cal_rows = np.flatnonzero(cal)
    localizer.fit_oracle_scale(None, rec.labels[cal_rows],
                               cosines=map_rows(rec.store["aligned"], cal_rows,
                                                lambda a: class_cos(unit_rows(
                                                    np.asarray(a, np.float64)))))
    oracle_cos = map_rows(rec.store["aligned"], wrong_rows, class_cos)
    return localizer.localize(None, z, rec.labels, rec.predictions,
                              oracle_pred=cs.oracle_pred, shown_std=shown,
                              oracle_cos=oracle_cos), localizer


# -- stage 4: detectors: see .detect.fit ------------------------------------------------------


# -- stage 5: the bundle -------------------------------------------------------------------------
def assemble(rec: Records, cs: ConceptScores, loc: Localization, localizer, det: Detection, *,
             classes, concepts: ConceptBank, class_prompts, class_emb, models: dict,
             cfg: AnalysisConfig, name: str, extra_columns, maps=None) -> Bundle:
    """Stage 5: records, arrays, fitted state and manifest, as one in-memory bundle
    (``maps``: the finer concept maps' aligner and what it records, or ``None``)."""
    correct = rec.correct
    defect = np.where(correct, "none", np.where(~rec.natural & det.columns["source_correct"],
                                                "adversarial", "misclassified"))
    columns = {
        "id": np.arange(len(rec.labels), dtype=np.int64), "split": rec.split,
        "perturbation": rec.perturbation, "source_id": rec.source.astype(np.int64),
        "label": rec.labels.astype(np.int16), "prediction": rec.predictions.astype(np.int16),
        "correct": correct, "confidence": (-det.columns["msp"]).astype(np.float32),
        "defect": defect, "vlm_pred": cs.vlm_pred.astype(np.int16),
        "oracle_pred": loc.oracle_pred.astype(np.int16), "fault": loc.verdict,
        "fault_paper": loc.paper_verdict, "probe_verdict": loc.probe_verdict,
        "oracle_verdict": loc.oracle_verdict, "heatmap_verdict": loc.heatmap_verdict,
        # the verdict's confidence (0 for correct inputs) and the verdict with "undecided"
        # where it is weak (see .localize: DECIDE_AT)
        "fault_confidence": loc.confidence.astype(np.float32),
        "fault_decided": loc.decided,
        "top_concepts": loc.top_concepts(concepts.names, TOP_CONCEPTS), **det.columns,
    }
    for key, values in (extra_columns or {}).items():
        if not isinstance(values, np.ndarray):  # e.g. a list of lists: keep one item per row
            items = list(values)
            values = np.empty(len(items), dtype=object)
            values[:] = items
        if len(values) != rec.n_natural:
            raise SemheatError(f"extra column {key!r} has {len(values)} values for "
                               f"{rec.n_natural} inputs")
        columns[key] = values[rec.source]
    arrays = {key: rec.store[key] for key in ("features", "logits", "image_emb", "aligned",
                                              "thumbs")}
    arrays["scores"] = cs.scores
    state = {**cs.aligner.state(), "concept_embeddings": cs.concept_emb,
             "class_embeddings": class_emb, **cs.standardizer.state(), **det.state}
    info = {
        "models": models, "class_prompts": class_prompts,
        "aligner": {"method": "ridge", **cs.choice, "fidelity": cs.fidelity},
        "localization": {"rule": localizer.rule, "probe_strength": localizer.probe_strength_,
                         "oracle_scale": localizer.oracle_scale_, "decide_at": DECIDE_AT},
        "monitor": det.info, "attacks": [a.describe() for a in cfg.attacks],
        "splits": {s: int(rec.where(s).sum()) for s in SPLITS},
        "accuracy": float(correct[rec.natural].mean()), **cfg.extra_info,
    }
    if maps is not None:
        state.update(maps[0].state())
        info["concept_maps"] = maps[1]
    if cfg.started_at is not None:
        info["build_seconds"] = round(time.time() - cfg.started_at, 1)
    return Bundle.create(name=name, classes=classes, concepts=concepts.to_json(),
                         columns=columns, arrays=arrays, state=state, info=info)


def analyze(classifier: ModelSplit, vlm: VLM, dataset, *, classes: Sequence[str],
            concepts: ConceptBank, class_prompts: dict[str, list[str]] | None = None,
            config: AnalysisConfig | None = None, name: str = "bundle",
            extra_columns: dict[str, np.ndarray] | None = None, progress: bool = True,
            reference=None, extractor=extract,
            image_embeddings: np.ndarray | None = None, save_to=None,
            overwrite: bool = False) -> Bundle:
    """Analyse ``classifier`` on ``dataset`` and return the bundle (unsaved, in memory — or,
    with ``save_to``, built in place there and returned opened from disk).

    Without ``reference``, the inputs of ``dataset`` are split at random into ``fit`` /
    ``calib`` / ``eval`` (``config.split_fractions``). With ``reference`` — held-out data from
    the classifier's own training distribution — the aligner, heatmap references and thresholds
    come from ``reference`` (split into ``fit`` / ``calib`` in the same proportions) and every
    input of ``dataset`` (e.g. deployment data, perhaps shifted) is ``eval``.

    ``extra_columns`` (one value per natural input: reference inputs first, then ``dataset``'s)
    are copied onto every record derived from that input, e.g. ground truth of the toy world.

    ``extractor`` runs the forward passes; it takes the arguments of :func:`extract` (the
    default, in this process) — :class:`~semheat_widgets.engine.extract.on_ray.RayExtractor`
    runs them on a Ray cluster instead and yields the same records.

    ``image_embeddings``: the VLM's embeddings of the natural inputs (reference first), when
    already computed — several classifiers analysed on the same images share them; the VLM then
    runs only on attacked inputs (local extraction).

    ``save_to`` (a bundle directory; ``overwrite`` as in :meth:`Bundle.save`): the large arrays
    are written straight into the new bundle's files and every stage reads them chunk by
    chunk, so memory stays flat in the number of inputs — the way to analyse large datasets.
    """
    def run(arrays_folder):  # in memory (None), or straight into the new bundle's files
        return _analyze(classifier, vlm, dataset, classes, concepts, class_prompts, config,
                        name, extra_columns, progress, reference, extractor, image_embeddings,
                        arrays_folder)

    try:
        if save_to is None:
            return run(None)
        with Bundle.writing(save_to, overwrite) as folder:
            bundle = run(folder / "arrays")
            bundle.write_files(folder)
        return Bundle.load(save_to)
    finally:  # the stages' intermediate arrays are gone; give their memory back
        release_freed_memory()


def _analyze(classifier, vlm, dataset, classes, concepts, class_prompts, config, name,
             extra_columns, progress, reference, extractor, image_embeddings, folder) -> Bundle:
    cfg = config or AnalysisConfig()
    check_monitor_name(cfg.monitor)  # before any forward pass
    classes = check_class_names(classes)
    concepts = as_concept_bank(concepts)
    if len(concepts) == 0:
        raise SemheatError("the concept bank is empty: add at least one concept")
    if classifier.num_classes != len(classes):
        raise SemheatError(f"the classifier has {classifier.num_classes} outputs but "
                           f"{len(classes)} class names were given")
    if len(dataset) == 0:
        raise SemheatError("the dataset is empty: nothing to analyse")
    n_reference = 0
    if reference is not None:
        if len(reference) == 0:
            raise SemheatError("the reference dataset is empty")
        n_reference = len(reference)
        dataset = ConcatDataset([reference, dataset])
    rec = extract_records(classifier, vlm, dataset, n_reference, classes, cfg, progress,
                          extractor, image_embeddings, folder)
    class_prompts = class_prompts or default_class_prompts(classes)
    class_emb = ConceptBank([(c, class_prompts[c]) for c in classes]).embed(vlm)
    cs = score_concepts(rec, vlm, concepts, class_emb, cfg.aligner_alpha)
    maps = fit_map_aligner(classifier, dataset, np.flatnonzero(rec.where("fit")),
                           np.flatnonzero(rec.where("calib")), rec.image_emb,
                           batch_size=cfg.batch_size, progress=progress,
                           seed=cfg.split_seed) if cfg.finer_maps else None
    loc, localizer = localize_faults(rec, cs, class_emb, classes, concepts.names,
                                     cfg.localization)
    det = fit_detectors(rec, cs, cfg)
    return assemble(rec, cs, loc, localizer, det, classes=classes, concepts=concepts,
                    class_prompts=class_prompts, class_emb=class_emb,
                    models={"classifier": classifier.name, "vlm": vlm.name}, cfg=cfg,
                    name=name, extra_columns=extra_columns, maps=maps)
