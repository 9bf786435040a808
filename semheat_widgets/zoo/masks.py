"""Where each attribute is in the toy world's images: the renderer's own masks, for the
records of a toy bundle (to check concept maps against, see :mod:`..engine.concepts.grounding`)."""

from __future__ import annotations

import numpy as np
import torch

from ..data.toy.world import ToyWorld
from ..errors import SemheatError
from .build import TOY_WORLD_SEED, reference_world
from .faults import shift_world


def _scene_source(bundle, source: int):
    """The world and scene index a toy bundle's natural input was rendered from."""
    info = bundle.manifest.get("toy_world")
    if not info:
        raise SemheatError(f"{bundle.name} is not a toy-world bundle: it has no attribute masks")
    n_ref, n_nat = info["n_reference"], info["n_natural"]
    if source < n_ref:
        return reference_world(info["classifier"]), source
    t = source - n_ref
    if t < n_nat:
        return ToyWorld(seed=TOY_WORLD_SEED), t
    return shift_world(TOY_WORLD_SEED + 1), t - n_nat


def toy_masks(bundle, indices) -> tuple[torch.Tensor, list[dict]]:
    """``(images uint8 N x 3 x H x W, masks)`` of some natural records of a toy bundle,
    re-rendered from their scenes (and checked against the bundle's thumbnails)."""
    images, masks = [], []
    for i in np.asarray(indices, dtype=np.int64):
        world, k = _scene_source(bundle, int(bundle.column("source_id")[i]))
        scene = world.scene(k)
        image, mask = world.render(scene)
        if not np.array_equal(image, np.asarray(bundle.thumbnail(int(i)))):
            raise SemheatError(f"record {int(i)} does not match its scene: the bundle was not "
                               f"built from this toy world")
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        masks.append({a: mask[a] for a in scene.present if a in mask})
    return torch.stack(images), masks
