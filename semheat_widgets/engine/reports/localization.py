"""Fault-localization figures of a saved bundle (``semheat localize``'s JSON).

Verdict counts of the misclassified natural inputs under the bundle's rule, the paper's rule
and the oracle alone; with a known culprit per input (toy and family bundles: ``gt_fault``,
``probe_fault``), the accuracy of each rule, how the verdict's confidence holds (coverage,
decided accuracy, calibration error) and the rank of the known responsible concept.
"""

from __future__ import annotations

import numpy as np

from ..bundle import Bundle
from ..heatmaps import Standardizer
from ..localize import VERDICTS as VERDICT_KINDS
from ..localize import (class_reference, concept_ranking, image_concept_scores, responsibility,
                        verdict_counts)
from .rounding import rounded, share


def localization_report(bundle: Bundle) -> dict:
    """Fault verdict counts of misclassified natural inputs, and accuracy against ground truth.

    Ground truth comes from a ``gt_fault`` column (toy bundles: the culprit known by
    construction) and, where present, a ``probe_fault`` column (the culprit according to a
    linear probe of the classifier's own features, see :mod:`semheat_widgets.zoo.family`). Each
    misclassified ``eval`` input with a known culprit is checked against the verdict of the
    bundle's rule (``accuracy``) and of the paper's rule (``paper_accuracy``); for encoder
    faults the rank of the known responsible concept (``gt_concept``) is reported too.
    """
    natural = bundle.mask(perturbation="natural")
    wrong = natural & ~bundle.column("correct").astype(bool)
    fault = bundle.column("fault").astype(str)
    paper = bundle.column("fault_paper").astype(str) if bundle.has_column("fault_paper") \
        else fault
    oracle = bundle.column("oracle_verdict").astype(str)
    out = {"bundle": bundle.name, "n_misclassified": int(wrong.sum()),
           "rule": bundle.manifest.get("localization", {}).get("rule", "paper"),
           "counts": verdict_counts(fault[wrong]), "paper_counts": verdict_counts(paper[wrong]),
           "oracle_counts": verdict_counts(oracle[wrong])}
    if bundle.has_column("fault_decided"):
        conf, decided = verdict_confidence(bundle)
        out["decided_counts"] = verdict_counts(decided[wrong])
        out["decided_confidence"] = {v: rounded(float(conf[wrong & (decided == v)].mean()))
                                     for v in VERDICT_KINDS if (wrong & (decided == v)).any()}
    if not bundle.has_column("gt_fault"):
        return out
    gt = bundle.column("gt_fault").astype(str)
    probe = bundle.column("probe_fault").astype(str) if bundle.has_column("probe_fault") \
        else None
    evaluated = wrong & bundle.mask(split="eval")
    truth = {}
    for kind in ("encoder", "head"):
        m = evaluated & (gt == kind)
        if not m.any():
            continue
        entry = {"n": int(m.sum()), "accuracy": share(fault[m] == kind),
                 **_confidence_figures(bundle, m, probe, kind),
                 "paper_accuracy": share(paper[m] == kind),
                 "oracle_accuracy": share(oracle[m] == kind), "verdicts": verdict_counts(fault[m])}
        if probe is not None:
            known = m & np.isin(probe, ("encoder", "head"))
            entry.update(n_probe=int(known.sum()),
                         probe_agrees_with_construction=share(probe[m] == kind),
                         probe_accuracy=share(fault[known] == probe[known]),
                         probe_paper_accuracy=share(paper[known] == probe[known]))
        if kind == "encoder" and bundle.has_column("gt_concept"):
            concept = str(bundle.column("gt_concept")[np.flatnonzero(m)[0]])
            ranking = concept_ranking(_responsibility(bundle, m), bundle.concept_names)
            names = [c for c, _ in ranking]
            entry["responsible_concept"] = concept
            entry["responsible_concept_rank"] = names.index(concept) + 1 if concept in names \
                else None
            entry["top_concepts"] = names[:5]
            # the paper's reading (what the aligned features show), kept beside
            aligned = [c for c, _ in concept_ranking(_responsibility(bundle, m, shown=False),
                                                     bundle.concept_names)]
            entry["responsible_concept_rank_aligned"] = aligned.index(concept) + 1 \
                if concept in aligned else None
        truth[kind] = entry
    out["ground_truth"] = truth
    return out


def verdict_confidence(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, decided)`` of every record: the bundle's columns, or — for a bundle
    written before they existed — recomputed exactly as the pipeline does (concept probe fit
    on the ``fit`` split, oracle temperature on ``calib``; see :mod:`.localize`)."""
    if bundle.has_column("fault_decided"):
        return (bundle.column("fault_confidence").astype(np.float64),
                bundle.column("fault_decided").astype(str))
    from ..localize import FaultLocalizer

    fit, cal = bundle.mask(split="fit"), bundle.mask(split="calib")
    z = bundle.standardizer(bundle.scores().astype(np.float64))
    labels = bundle.column("label").astype(int)
    gt = bundle.heatmap("ground_truth", perturbation="natural", split="fit").values
    loc = FaultLocalizer(bundle.class_embeddings, gt).fit_probe(z[fit], labels[fit], z[cal],
                                                                labels[cal])
    aligned = np.asarray(bundle.arrays["aligned"])
    loc.fit_oracle_scale(aligned[cal], labels[cal])
    out = loc.localize(aligned, z, labels, bundle.column("prediction").astype(int))
    return out.confidence.astype(np.float64), out.decided.astype(str)


def _confidence_figures(bundle: Bundle, m: np.ndarray, probe, kind: str) -> dict:
    """How the verdict's confidence holds on known faults: the share decided (coverage), the
    accuracy of the decided ones, and the calibration error (ECE, 5 bins of confidence) —
    against the probe truth where there is one, the construction otherwise."""
    conf, decided = verdict_confidence(bundle)
    truth = np.where(np.isin(probe, ("encoder", "head")), probe, "") if probe is not None \
        else np.full(bundle.n, kind, dtype=object)
    known = m & (truth != "")
    if not known.any():
        return {}
    fault = bundle.column("fault").astype(str)
    hit = fault[known] == truth[known]
    c = conf[known]
    edges = np.linspace(0.5, 1.0, 6)
    ece = sum(float(np.mean(b)) * abs(float(hit[b].mean()) - float(c[b].mean()))
              for b in ((c >= lo) & ((c < hi) | (hi == 1.0)) for lo, hi in
                        zip(edges[:-1], edges[1:])) if b.any())
    d = decided[known] != "undecided"
    return {"coverage": rounded(float(d.mean())),
            "decided_accuracy": share(decided[known][d] == truth[known][d]),
            "mean_confidence": rounded(float(c.mean())), "confidence_ece": rounded(ece)}


def _responsibility(bundle: Bundle, mask: np.ndarray, shown: bool = True) -> np.ndarray:
    """Responsibility rows (see :mod:`..localize`) of the masked misclassified records, against
    the correctly classified natural ``fit`` inputs of their true classes; what the inputs show
    is read by the VLM from their images where the bundle keeps the image embeddings
    (``shown``), from the aligned features otherwise."""
    idx = np.flatnonzero(mask)
    labels = bundle.column("label").astype(int)
    if shown and "image_emb" in bundle.arrays:
        values, reference = shown_scores(bundle, idx)
        return responsibility(values, labels[idx], reference)
    fit = np.flatnonzero(bundle.mask(perturbation="natural", split="fit"))
    z = bundle.standardizer
    reference = class_reference(z(bundle.scores(fit).astype(np.float64)), labels[fit],
                                len(bundle.classes), bundle.column("correct").astype(bool)[fit])
    return responsibility(z(bundle.scores(idx).astype(np.float64)), labels[idx], reference)


def shown_scores(bundle: Bundle, rows) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """What the images of ``rows`` show, read by the VLM from their pixels: standardised
    concept scores of their image embeddings (over the natural ``fit`` inputs, as the bundle's
    heatmaps), and per true class the mean and spread of those scores over the correctly
    classified ``fit`` inputs (:func:`~..localize.class_reference`)."""
    T = bundle.concept_embeddings
    emb = bundle.arrays["image_emb"]
    fit = np.flatnonzero(bundle.mask(perturbation="natural", split="fit"))
    p_fit = image_concept_scores(np.asarray(emb[fit]), T).astype(np.float64)
    st = Standardizer.fit(p_fit, bundle.concept_names)
    right = bundle.column("correct").astype(bool)[fit]
    reference = class_reference(st(p_fit), bundle.column("label").astype(int)[fit],
                                len(bundle.classes), right)
    return st(image_concept_scores(np.asarray(emb[np.asarray(rows)]), T).astype(np.float64)), \
        reference
