"""Build the toy world: one bundle per classifier of the fault zoo, with known answers.

    semheat toy build DIR

All three bundles analyse the same inputs: fresh natural scenes plus a shifted set where the
encoder fault's spurious tie breaks (trucks and cars on water), and FGSM / PGD versions of a
subset. Each bundle gets ground-truth columns: ``gt_fault`` (``encoder`` / ``head`` / empty when
unknown) and ``gt_concept`` (the responsible concept of an encoder fault), derived from the
construction of the zoo (see :mod:`.faults`). ``DIR/world.json`` lists the bundles.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..data.toy.captions import attribute_prompts, class_prompts
from ..data.toy.dataset import ToyDataset
from ..data.toy.world import ATTRIBUTES, CLASSES, ToyWorld
from ..engine.analyze import AnalysisConfig, analyze
from ..engine.attacks import Attack
from ..engine.bundle import Bundle
from ..engine.concepts import ConceptBank
from ..errors import SemheatError
from .faults import ENCODER_FAULT_CLASS, ENCODER_FAULT_CONCEPT, shift_world
from .models import TOY_CLASSIFIERS, toy_classifier, toy_vlm

WORLD_FORMAT = "semheat-toy-world"
TOY_WORLD_SEED = 4242


def toy_concepts() -> ConceptBank:
    return ConceptBank([(a, attribute_prompts(a)) for a in ATTRIBUTES])


def toy_inputs(n_natural: int, n_shift: int, progress: bool = True):
    """Images, labels, attribute flags and domain of the toy world's analysis set."""
    parts = [ToyDataset(ToyWorld(seed=TOY_WORLD_SEED), 0, n_natural)]
    if n_shift:
        parts.append(ToyDataset(shift_world(TOY_WORLD_SEED + 1), 0, n_shift))
    images = torch.cat([p.render_all() for p in parts])
    labels = np.concatenate([p.labels for p in parts])
    attributes = np.concatenate([p.attributes for p in parts])
    domain = np.array(["natural"] * n_natural + ["shift"] * n_shift)
    return images, labels, attributes, domain


def ground_truth(name: str, bundle: Bundle, clean_correct: np.ndarray,
                 attributes: np.ndarray) -> dict[str, np.ndarray]:
    """``gt_fault`` / ``gt_concept`` of every record of a toy bundle (see :mod:`.faults`)."""
    natural = bundle.mask(kind="natural")
    src = bundle.column("source_id")
    wrong = natural & ~bundle.column("correct").astype(bool)
    was_right = clean_correct[src]
    gt_fault = np.full(bundle.n, "", dtype=object)
    gt_concept = np.full(bundle.n, "", dtype=object)
    if name == "encoder_fault":
        j = ATTRIBUTES.index(ENCODER_FAULT_CONCEPT)
        tied = wrong & was_right & attributes[src, j] & (
            bundle.column("prediction") == CLASSES.index(ENCODER_FAULT_CLASS))
        gt_fault[tied] = "encoder"
        gt_concept[tied] = ENCODER_FAULT_CONCEPT
    elif name == "head_fault":
        gt_fault[wrong & was_right] = "head"
    return {"gt_fault": gt_fault.astype(str), "gt_concept": gt_concept.astype(str)}


def build_toy_world(out_dir, *, n_natural: int = 4000, n_shift: int = 800,
                    attack_limit: int | None = 1200, overwrite: bool = False,
                    progress: bool = True, device=None) -> Path:
    """Build the toy-world bundles into ``out_dir`` and return it."""
    out_dir = Path(out_dir)
    if (out_dir / "world.json").exists() and not overwrite:
        raise SemheatError(f"{out_dir} already holds a toy world; use --force to rebuild")
    if out_dir.exists() and not (out_dir / "world.json").exists() and any(out_dir.iterdir()):
        raise SemheatError(f"{out_dir} exists and is not a toy world; choose an empty directory")
    started = time.time()
    images, labels, attributes, domain = toy_inputs(n_natural, n_shift, progress)
    dataset = TensorDataset(images, torch.from_numpy(labels))
    vlm = toy_vlm(device)
    concepts = toy_concepts()
    cprompts = {c: class_prompts(c) for c in CLASSES}
    present = [[a for a, on in zip(ATTRIBUTES, row) if on] for row in attributes]
    config = AnalysisConfig(attacks=(Attack("fgsm"), Attack("pgd", steps=10)),
                            attack_limit=attack_limit, batch_size=256)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        clean_correct = None
        for name in TOY_CLASSIFIERS:
            split = toy_classifier(name, device)
            config.extra_info = {"toy_world": {"classifier": name, "n_natural": n_natural,
                                               "n_shift": n_shift, "seed": TOY_WORLD_SEED}}
            bundle = analyze(split, vlm, dataset, classes=CLASSES, concepts=concepts,
                             class_prompts=cprompts, config=config, name=name,
                             extra_columns={"domain": domain, "attributes": present},
                             progress=progress)
            if clean_correct is None:
                nat = bundle.mask(kind="natural")
                clean_correct = np.zeros(len(labels), bool)
                clean_correct[bundle.column("source_id")[nat]] = bundle.column("correct")[nat]
            bundle.add_columns(ground_truth(name, bundle, clean_correct, attributes))
            bundle.save(tmp / name)
        world = {"format": WORLD_FORMAT, "bundles": list(TOY_CLASSIFIERS), "primary": "clean",
                 "n_natural": n_natural, "n_shift": n_shift, "attack_limit": attack_limit,
                 "seed": TOY_WORLD_SEED, "build_seconds": round(time.time() - started, 1),
                 "encoder_fault": {"concept": ENCODER_FAULT_CONCEPT,
                                   "class": ENCODER_FAULT_CLASS}}
        (tmp / "world.json").write_text(json.dumps(world, indent=1))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def is_world(path) -> bool:
    return (Path(path) / "world.json").is_file()


def world_bundles(path) -> dict[str, Path]:
    """``{name: bundle path}`` of a toy-world directory."""
    path = Path(path)
    try:
        world = json.loads((path / "world.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SemheatError(f"cannot read {path / 'world.json'}: {exc}") from None
    if world.get("format") != WORLD_FORMAT:
        raise SemheatError(f"{path} is not a toy world (format {world.get('format')!r})")
    return {name: path / name for name in world["bundles"]}
