"""Build the fault family's bundles: one per tie and one per head fault, with both truths.

    semheat toy family DIR [--ties wet-ship,text-truck,...]   (options: jobs.FamilyJob)

Every tie classifier (see :mod:`.family`) is analysed like the toy world's classifiers: a
reference set from its own (tied) training world, a test set of fresh natural scenes plus the
shift where its tie breaks; no attacks (localization needs none). Two head-fault bundles share
the clean encoder: the zoo's mixed head and a bias toward one class. ``DIR/family.json`` lists
the bundles with their tie, kind of concept and role (development or held out).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..data.toy.captions import class_prompts
from ..data.toy.world import ATTRIBUTES, CLASSES, ToyWorld
from ..engine.bundle import Bundle
from ..engine.pipeline import AnalysisConfig, analyze
from ..errors import SemheatError
from ..jobs import FamilyJob, job_of, option_error
from ..safe_io import FAMILY_FORMAT, atomic_write, check_replaceable, writer_lock
from . import inputs as toy_inputs
from .build import REFERENCE_SEED, TOY_WORLD_SEED, toy_concepts
from .faults import clean_train_world
from .family import (FAMILY, ROUND_2, Tie, biased_head, damped_head, fit_probe, noisy_head,
                     probe_truth, role, tie_classifier, tie_named)
from .family_file import check_family, read_family  # noqa: F401  (re-exported)
from .models import load_toy_resnet, toy_classifier, toy_split, toy_vlm

MIN_TIED = 30  # known faults a bundle needs to count for or against a goal (issue 24)
# The head faults, each on the clean encoder.
HEADS = ("head-mix", "head-bias", "head-noise", "head-damp")


def _config(name: str) -> AnalysisConfig:
    return AnalysisConfig(attack_limit=0, batch_size=128, extra_info={"family": name})


def _analyze(classifier, name, ref: toy_inputs.ToyInputs, test: toy_inputs.ToyInputs, vlm,
             progress):
    both = ref + test
    present = [[a for a, on in zip(ATTRIBUTES, row) if on] for row in both.attributes]
    bundle = analyze(classifier, vlm, test.dataset(), reference=ref.dataset(), classes=CLASSES,
                     concepts=toy_concepts(),
                     class_prompts={c: class_prompts(c) for c in CLASSES}, config=_config(name),
                     name=name, extra_columns={"domain": both.domain, "attributes": present},
                     progress=progress, image_embeddings=both.image_emb)
    return bundle, both


def tie_bundle(tie: Tie, vlm, clean, test_natural, progress: bool, sizes: dict,
               cache=None, train: dict | None = None) -> Bundle:
    """One tie's bundle with ``gt_fault`` (construction) and ``probe_fault`` (probe) columns."""
    classifier = tie_classifier(tie, cache, progress=progress, **(train or {}))
    shift = toy_inputs.render([("shift", tie.shift(), sizes["n_shift"])], vlm)
    ref = toy_inputs.render([("reference", tie.world(REFERENCE_SEED), sizes["n_reference"])], vlm)
    bundle, both = _analyze(classifier, tie.name, ref, test_natural + shift, vlm, progress)
    src = bundle.column("source_id")
    tied = CLASSES.index(tie.cls)
    j = ATTRIBUTES.index(tie.concept)
    candidates = (toy_inputs.new_mistakes(bundle, both, clean) & both.attributes[src, j]
                  & (both.domain[src] != "reference") & (bundle.column("prediction") == tied))
    gt = np.where(candidates, "encoder", "")
    probe = fit_probe(classifier, tie)
    bundle.add_columns({
        "gt_fault": gt.astype(str), "gt_concept": np.where(candidates, tie.concept, "").astype(str),
        "probe_fault": probe_truth(probe, bundle.arrays["features"], bundle.column("label"),
                                   tied, candidates)})
    bundle.manifest["tie"] = {"concept": tie.concept, "class": tie.cls, "kind": tie.kind}
    return bundle


def head_bundles(vlm, clean, test_natural, progress: bool, sizes: dict):
    """The head faults on the clean encoder: mixed rows (the zoo's), a biased bias, noisy
    weights and a damped row."""
    ref = toy_inputs.render([("reference", clean_train_world().with_overrides(seed=REFERENCE_SEED),
                          sizes["n_reference"])], vlm)
    heads = {"head-mix": toy_classifier("head_fault")}
    for name, make in (("head-bias", biased_head), ("head-noise", noisy_head),
                       ("head-damp", damped_head)):
        faulty = load_toy_resnet("clean")
        faulty.fc = make(faulty.fc)
        heads[name] = toy_split(faulty, f"toy-head:{name[5:]}")
    for name, classifier in heads.items():
        bundle, both = _analyze(classifier, name, ref, test_natural, vlm, progress)
        src = bundle.column("source_id")
        gt = np.where(toy_inputs.new_mistakes(bundle, both, clean)
                      & (both.domain[src] != "reference"), "head", "")
        bundle.add_columns({"gt_fault": gt.astype(str), "probe_fault": gt.astype(str)})
        yield name, bundle


def build_family(directory, job: FamilyJob | None = None, /, *, progress: bool = True,
                 cache=None, **options) -> Path:
    """Build (or complete) the family's bundles into ``directory``; returns it. Give a
    :class:`~semheat_widgets.jobs.FamilyJob`, or its options as keywords
    (``build_family(d, ties=["wet-ship"], n_natural=300)``); ``cache``: where the tie
    classifiers are kept (default: the user cache)."""
    job = job_of(FamilyJob, job, options, "build_family")
    default = FAMILY if job.round == 1 else ROUND_2
    try:
        ties = default if job.ties is None else tuple(tie_named(t) for t in job.ties)
    except SemheatError as exc:
        raise option_error("ties", f"names an unknown tie: {exc}") from None
    directory, sizes, train = Path(directory), job.sizes(), job.training()
    with writer_lock(directory):
        kind = check_replaceable(directory, ("family",), "a fault family")
        directory.mkdir(parents=True, exist_ok=True)
        info_path = directory / "family.json"
        if kind == "family":  # an earlier (perhaps interrupted) build: completed
            info = read_family(directory)
            if info.get("round", 1) != job.round:
                raise option_error("round", f"is {job.round}, but {directory} holds a family of "
                                            f"round {info.get('round', 1)}")
        else:  # written first, so an interrupted build leaves a folder recognised as ours
            info = {"format": FAMILY_FORMAT, "sizes": sizes, "round": job.round, "bundles": {}}
            atomic_write(info_path, json.dumps(info, indent=1))
        vlm, clean = toy_vlm(), toy_classifier("clean")
        test = toy_inputs.render([("natural", ToyWorld(seed=TOY_WORLD_SEED), sizes["n_natural"])],
                                 vlm)
        for tie in ties:
            if tie.name in info["bundles"] and (directory / tie.name).is_dir():
                continue
            started = time.time()
            tie_bundle(tie, vlm, clean, test, progress, sizes, cache, train).save(
                directory / tie.name, overwrite=True)
            info["bundles"][tie.name] = {
                "fault": "encoder", "concept": tie.concept, "class": tie.cls, "kind": tie.kind,
                "role": role(tie.name, info.get("round", 1)),
                "seconds": round(time.time() - started, 1)}
            atomic_write(info_path, json.dumps(info, indent=1))
        if info.get("round", 1) == 1 and not all((directory / h).is_dir() for h in HEADS):
            for name, bundle in head_bundles(vlm, clean, test, progress, sizes):
                bundle.save(directory / name, overwrite=True)
                # the zoo's mixed head is what the method was first checked on: development
                info["bundles"][name] = {"fault": "head", "role": role(name)}
                atomic_write(info_path, json.dumps(info, indent=1))
    return directory


def family_report(directory) -> dict:
    """Per-bundle and mean localization figures of a fault family, against both truths and
    for both rules; means separately over the development ties (where settings were chosen)
    and the held-out bundles (where they are reported)."""
    from ..engine.reports.localization import localization_report

    info = read_family(directory)
    per, groups = {}, {}
    for name, meta in info["bundles"].items():
        rep = localization_report(Bundle.load(Path(directory) / name))
        entry = rep.get("ground_truth", {}).get(meta["fault"], {})
        per[name] = {**meta, **{k: entry.get(k) for k in (
            "n", "accuracy", "paper_accuracy", "probe_accuracy", "probe_paper_accuracy",
            "probe_agrees_with_construction", "n_probe", "responsible_concept_rank",
            "responsible_concept_rank_aligned", "coverage", "decided_accuracy",
            "mean_confidence", "confidence_ece")}}
        # a tie that barely takes counts neither for nor against a goal: reported apart
        role = meta["role"] if (per[name]["n"] or 0) >= MIN_TIED else "barely takes"
        per[name]["counted"] = role != "barely takes"
        groups.setdefault((meta["fault"], role), []).append(per[name])
    means = {}
    for (fault, role), entries in sorted(groups.items()):
        key = f"{fault}_{role.replace(' ', '_')}"
        means[key] = {k: round(float(np.mean([e[k] for e in entries if e.get(k) is not None])),
                               4)
                      for k in ("accuracy", "paper_accuracy", "probe_accuracy",
                                "probe_paper_accuracy", "coverage", "decided_accuracy",
                                "confidence_ece")
                      if any(e.get(k) is not None for e in entries)}
        means[key]["bundles"] = len(entries)
        ranks = [e["responsible_concept_rank"] for e in entries
                 if e.get("responsible_concept_rank") is not None]
        if ranks:
            means[key]["ties_with_rank_1"] = sum(r == 1 for r in ranks)
            means[key]["ties_in_top_3"] = sum(r <= 3 for r in ranks)
        aligned = [e["responsible_concept_rank_aligned"] for e in entries
                   if e.get("responsible_concept_rank_aligned") is not None]
        if aligned:
            means[key]["ties_with_rank_1_aligned"] = sum(r == 1 for r in aligned)
    return {"family": str(directory), "rule": "consensus", "bundles": per, "means": means}


def family_monitor_report(directory) -> dict:
    """The misclassification monitors of every bundle of a fault family (AUROC, and TPR / FPR
    at the calibrated 5 % false-alarm rate, of each detector), and per group (fault kind and
    role, as :func:`family_report`) how many bundles the bundle's own monitor ranks at least as
    well as maximum softmax (AUROC). Family bundles have no attacks: misclassification only."""
    from ..engine.reports.monitors import monitor_report

    info = read_family(directory)
    per, groups = {}, {}
    for name, meta in info["bundles"].items():
        bundle = Bundle.load(Path(directory) / name)
        task = monitor_report(bundle)["misclassification"]
        known = (bundle.column("gt_fault").astype(str) != "") & bundle.mask(split="eval")
        detectors = {d: {k: task[d].get(k) for k in ("auroc", "tpr", "fpr")}
                     for d in ("concept", "heatmap", "msp", "energy", "mahalanobis", "combined")
                     if isinstance(task.get(d), dict)}
        role = meta["role"] if int(known.sum()) >= MIN_TIED else "barely takes"
        own = task.get("monitor", "concept")
        per[name] = {**{k: meta.get(k) for k in ("fault", "concept", "class", "kind", "role")},
                     "counted": role != "barely takes", "n_positive": task.get("n_positive"),
                     "monitor": own, "detectors": detectors,
                     "monitor_at_least_msp": (detectors.get(own, {}).get("auroc") or 0)
                     >= (detectors.get("msp", {}).get("auroc") or 0)}
        groups.setdefault(f"{meta['fault']}_{role.replace(' ', '_')}", []).append(per[name])
    means = {key: {"bundles": len(entries),
                   "monitor_at_least_msp": sum(e["monitor_at_least_msp"] for e in entries),
                   **{f"{d}_auroc": round(float(np.mean([e["detectors"][d]["auroc"]
                                                         for e in entries])), 4)
                      for d in ("concept", "heatmap", "msp") if all(
                          e["detectors"].get(d, {}).get("auroc") is not None for e in entries)}}
             for key, entries in sorted(groups.items())}
    return {"family": str(directory), "task": "misclassification", "bundles": per,
            "means": means}

