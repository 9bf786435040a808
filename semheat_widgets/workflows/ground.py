"""``semheat ground``: check a bundle's concept maps against attribute masks.

Masks come from where the inputs came from: the toy world's renderer (toy bundles, re-rendered
from their scenes) or RIVAL10's ``_attr_dict.pkl`` files (bundles of ``semheat analyze --data
rival10:...``, whose records name their image files). The classifier is re-opened by its id,
from the checkpoint the analysis recorded, or given as ``resnet18:CKPT``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..engine.bundle import Bundle
from ..engine.concepts.cam import input_images
from ..engine.concepts.grounding import ground
from ..engine.models.registry import load_classifier
from ..errors import SemheatError
from ..jobs import mentioning, option_error


def bundle_classifier(bundle: Bundle, spec: str | None = None):
    """The classifier a bundle was built with: ``spec`` (``resnet18:CKPT``), else its
    registered id, else the fine-tuned checkpoint its analysis recorded."""
    from ..engine.models.classifier import IMAGENET_MEAN, IMAGENET_STD, ModelSplit
    from .fine_tune import build_resnet18

    checkpoint = None
    if spec:
        name, _, ckpt = spec.partition(":")
        if name != "resnet18" or not ckpt:
            raise option_error("classifier", f"must be resnet18:CKPT, got {spec!r}")
        checkpoint = Path(ckpt)
    else:
        try:
            return load_classifier(bundle.models.classifier)
        except SemheatError:
            recorded = bundle.manifest.get("classifier_checkpoint")
            if not recorded:
                raise mentioning(f"cannot re-open the bundle's classifier "
                                 f"{bundle.models.classifier!r}; give classifier resnet18:CKPT",
                                 "classifier") from None
            checkpoint = Path(recorded)
    if not checkpoint.is_file():
        raise SemheatError(f"classifier checkpoint not found: {checkpoint}")
    model, _ = build_resnet18(len(bundle.classes), checkpoint)
    return ModelSplit(model, mean=IMAGENET_MEAN, std=IMAGENET_STD, name="resnet18").eval()


def masked_inputs(bundle: Bundle, indices):
    """``(images, masks)`` of some natural records: the toy renderer's masks, or RIVAL10's."""
    if bundle.manifest.get("toy_world"):
        from ..zoo.masks import toy_masks

        return toy_masks(bundle, indices)
    if str(bundle.manifest.get("data", "")).startswith("rival10:") and bundle.has_column("path"):
        from ..data.rival10 import image_masks

        size = bundle.manifest.get("image_size")
        masks = [image_masks(bundle.column("path")[i], size) for i in indices]
        return input_images(bundle, indices), masks
    raise SemheatError(f"{bundle.name} has no attribute masks to check maps against (toy-world "
                       f"and RIVAL10 bundles have them)")


def ground_bundle(bundle: Bundle, limit: int = 600, classifier: str | None = None,
                  seed: int = 0) -> dict:
    """Pointing game and IoU on up to ``limit`` natural eval inputs (chosen at random); for the
    toy encoder fault also on its shifted inputs (trucks and cars on water), for ``wet``."""
    classifier = bundle_classifier(bundle, classifier)
    evaluated = np.flatnonzero(bundle.mask(perturbation="natural", split="eval"))
    if not len(evaluated):
        raise SemheatError("the bundle has no natural eval inputs")
    chosen = np.sort(np.random.default_rng(seed).choice(
        evaluated, size=min(limit, len(evaluated)), replace=False))
    images, masks = masked_inputs(bundle, chosen)
    predictions = bundle.column("prediction")[chosen]
    out = {"bundle": bundle.name, **ground(bundle, classifier, images, masks, predictions)}
    toy = bundle.manifest.get("toy_world") or {}
    if toy.get("classifier") == "encoder_fault" and bundle.has_column("domain"):
        shift = bundle.column("domain")[chosen] == "shift"
        if shift.any():  # the picture that makes the encoder fault obvious
            out["shift"] = ground(bundle, classifier, images[shift],
                                  [m for m, s in zip(masks, shift) if s], predictions[shift],
                                  ["wet"])
    return out
