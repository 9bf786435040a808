"""Build the toy world: one bundle per classifier of the fault zoo, with known answers.

    semheat toy build DIR

Every classifier is analysed on the same test set — fresh natural scenes plus a shifted set
where the encoder fault's spurious tie breaks (trucks and cars on water) — with FGSM / PGD
versions of a subset, and with a reference set (held-out data of its own training
distribution) for fitting the aligner, the heatmap references and the thresholds. Each bundle
gets ground-truth columns: ``gt_fault`` (``encoder`` / ``head`` / empty when unknown) and
``gt_concept`` (the responsible concept of an encoder fault), derived from the construction of
the zoo (see :mod:`.faults`). ``DIR/world.json`` lists the bundles.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
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
from ..engine.schema import validate_json
from ..errors import SemheatError
from ..safe_io import (WORLD_FORMAT, atomic_write, check_replaceable, publish_dir, read_json,
                       recover, temp_dir_for, writer_lock)
from .faults import (ENCODER_FAULT_CLASS, ENCODER_FAULT_CONCEPT, clean_train_world,
                     encoder_fault_train_world, shift_world)
from .models import TOY_CLASSIFIERS, toy_classifier, toy_vlm
from .quality import aligned_attribute_quality

TOY_WORLD_SEED = 4242  # the test set
REFERENCE_SEED = 4343  # held-out reference sets


def toy_concepts() -> ConceptBank:
    return ConceptBank([(a, attribute_prompts(a)) for a in ATTRIBUTES])


@dataclass
class ToyInputs:
    """Rendered images with their labels, attribute flags and domain (one entry per input)."""

    images: torch.Tensor
    labels: np.ndarray
    attributes: np.ndarray
    domain: np.ndarray

    @classmethod
    def render(cls, parts: list[tuple[str, ToyWorld, int]]) -> "ToyInputs":
        data = [(d, ToyDataset(w, 0, n)) for d, w, n in parts if n]
        return cls(torch.cat([x.render_all() for _, x in data]),
                   np.concatenate([x.labels for _, x in data]),
                   np.concatenate([x.attributes for _, x in data]),
                   np.concatenate([np.full(len(x), d) for d, x in data]))

    def dataset(self) -> TensorDataset:
        return TensorDataset(self.images, torch.from_numpy(self.labels))

    def __add__(self, other: "ToyInputs") -> "ToyInputs":
        return ToyInputs(torch.cat([self.images, other.images]),
                         np.r_[self.labels, other.labels], np.r_[self.attributes, other.attributes],
                         np.r_[self.domain, other.domain])


def reference_world(name: str) -> ToyWorld:
    """Held-out data from the classifier's own training distribution (other seed)."""
    base = encoder_fault_train_world() if name == "encoder_fault" else clean_train_world()
    return base.with_overrides(seed=REFERENCE_SEED)


def ground_truth(name: str, bundle: Bundle, clean_correct: np.ndarray,
                 attributes: np.ndarray, domain: np.ndarray) -> dict[str, np.ndarray]:
    """``gt_fault`` / ``gt_concept`` of every record of a toy bundle (see :mod:`.faults`)."""
    natural = bundle.mask(kind="natural")
    src = bundle.column("source_id")
    wrong = natural & ~bundle.column("correct").astype(bool)
    was_right = clean_correct[src]
    gt_fault = np.full(bundle.n, "", dtype=object)
    gt_concept = np.full(bundle.n, "", dtype=object)
    if name == "encoder_fault":
        j = ATTRIBUTES.index(ENCODER_FAULT_CONCEPT)
        tied = wrong & was_right & attributes[src, j] & (domain[src] != "reference") & (
            bundle.column("prediction") == CLASSES.index(ENCODER_FAULT_CLASS))
        gt_fault[tied] = "encoder"
        gt_concept[tied] = ENCODER_FAULT_CONCEPT
    elif name == "head_fault":
        gt_fault[wrong & was_right] = "head"
    return {"gt_fault": gt_fault.astype(str), "gt_concept": gt_concept.astype(str)}


def build_toy_world(out_dir, *, n_reference: int = 2400, n_natural: int = 2400,
                    n_shift: int = 600, attack_limit: int | None = 1200, overwrite: bool = False,
                    progress: bool = True, device=None, similarity: str = "cosine") -> Path:
    """Build the toy-world bundles into ``out_dir`` and return it.

    Each classifier is analysed with a reference set drawn from its *own* training
    distribution (aligner, heatmap references and thresholds come from it, as a user would fit
    them on their validation data) and the same test set: fresh natural scenes plus the
    tie-breaking shift.
    """
    out_dir = Path(out_dir)
    with writer_lock(out_dir):
        recover(out_dir)
        kind = check_replaceable(out_dir, ("toy-world",), "a toy world")
        if kind == "toy-world" and not overwrite:
            raise SemheatError(f"{out_dir} already holds a toy world; use --force to rebuild")
        return _build(out_dir, n_reference=n_reference, n_natural=n_natural, n_shift=n_shift,
                      attack_limit=attack_limit, progress=progress, device=device,
                      similarity=similarity)


def _build(out_dir: Path, *, n_reference, n_natural, n_shift, attack_limit, progress, device,
           similarity) -> Path:
    for n, what in ((n_reference, "reference"), (n_natural, "natural")):
        if n < 20:
            raise SemheatError(f"the toy world needs at least 20 {what} inputs, got {n}")
    started = time.time()
    test = ToyInputs.render([("natural", ToyWorld(seed=TOY_WORLD_SEED), n_natural),
                             ("shift", shift_world(TOY_WORLD_SEED + 1), n_shift)])
    references = {}
    vlm = toy_vlm(device)
    concepts = toy_concepts()
    cprompts = {c: class_prompts(c) for c in CLASSES}
    config = AnalysisConfig(attacks=(Attack("fgsm"), Attack("pgd", steps=10)),
                            attack_limit=attack_limit, batch_size=256,
                            monitor_similarity=similarity)
    tmp = temp_dir_for(out_dir)
    try:
        clean_correct, quality = None, None
        for name in TOY_CLASSIFIERS:
            world = reference_world(name)
            if world not in references:
                references[world] = ToyInputs.render([("reference", world, n_reference)])
            ref = references[world]
            both = ref + test  # reference inputs first, as analyze() numbers them
            config.extra_info = {"toy_world": {"classifier": name, "n_reference": n_reference,
                                               "n_natural": n_natural, "n_shift": n_shift,
                                               "seed": TOY_WORLD_SEED}}
            present = [[a for a, on in zip(ATTRIBUTES, row) if on] for row in both.attributes]
            bundle = analyze(toy_classifier(name, device), vlm, test.dataset(),
                             reference=ref.dataset(), classes=CLASSES, concepts=concepts,
                             class_prompts=cprompts, config=config, name=name,
                             extra_columns={"domain": both.domain, "attributes": present},
                             progress=progress)
            if clean_correct is None:
                nat = bundle.mask(kind="natural")
                clean_correct = np.zeros(len(both.labels), bool)
                clean_correct[bundle.column("source_id")[nat]] = bundle.column("correct")[nat]
            bundle.add_columns(ground_truth(name, bundle, clean_correct, both.attributes,
                                            both.domain))
            bundle.save(tmp / name)
            if name == "clean":
                quality = aligned_attribute_quality(bundle, both.attributes)
        info = {"format": WORLD_FORMAT, "bundles": list(TOY_CLASSIFIERS), "primary": "clean",
                "n_reference": n_reference, "n_natural": n_natural, "n_shift": n_shift,
                "attack_limit": attack_limit, "seed": TOY_WORLD_SEED,
                "build_seconds": round(time.time() - started, 1),
                "encoder_fault": {"concept": ENCODER_FAULT_CONCEPT, "class": ENCODER_FAULT_CLASS},
                "quality": quality}
        atomic_write(tmp / "world.json", json.dumps(info, indent=1))
        publish_dir(tmp, out_dir, ("toy-world",), "a toy world")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def default_toy_dir() -> Path:
    """Where the toy world lives unless told otherwise: ``$SEMHEAT_TOY_DIR`` or the user cache."""
    env = os.environ.get("SEMHEAT_TOY_DIR")
    return Path(env) if env else Path.home() / ".cache" / "semheat_widgets" / "toy_world"


def toy_world(directory=None, **build_kwargs) -> Path:
    """The toy world's directory, built there on first use (with progress bars)."""
    directory = Path(directory) if directory is not None else default_toy_dir()
    if not is_world(directory):
        build_toy_world(directory, **build_kwargs)
    return directory


def is_world(path) -> bool:
    """Whether ``path`` claims to be a toy world (its ``world.json`` is checked on reading)."""
    return os.path.lexists(Path(path) / "world.json")


WORLD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "semheat toy world",
    "type": "object",
    "required": ["format", "bundles", "primary"],
    "properties": {
        "format": {"const": WORLD_FORMAT},
        "bundles": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}},
        "primary": {"type": "string"},
        "n_reference": {"type": "integer", "minimum": 0},
        "n_natural": {"type": "integer", "minimum": 0},
        "n_shift": {"type": "integer", "minimum": 0},
        "attack_limit": {"type": ["integer", "null"], "minimum": 0},
        "seed": {"type": "integer"},
        "build_seconds": {"type": "number", "minimum": 0},
    },
}


def read_world(path) -> dict:
    """A toy world's ``world.json``, checked against :data:`WORLD_SCHEMA` (one-line errors)."""
    file = Path(path) / "world.json"
    world = read_json(file, "toy world description")
    if not isinstance(world, dict) or world.get("format") != WORLD_FORMAT:
        found = world.get("format") if isinstance(world, dict) else type(world).__name__
        raise SemheatError(f"{file}: field format: not a toy world ({found!r})")
    validate_json(world, WORLD_SCHEMA, file)
    if world["primary"] not in world["bundles"]:
        raise SemheatError(f"{file}: field primary: {world['primary']!r} is not one of its "
                           f"bundles {world['bundles']}")
    return world


def world_bundles(path) -> dict[str, Path]:
    """``{name: bundle path}`` of a toy-world directory."""
    path = Path(path)
    return {name: path / name for name in read_world(path)["bundles"]}
