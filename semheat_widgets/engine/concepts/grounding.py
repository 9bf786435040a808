"""Do concept maps point at the right place? The pointing game and mask IoU against attribute
masks, beside three baselines measured on the same inputs.

- **Pointing game** (Zhang et al., ECCV 2016): a hit when the map's maximum (upsampled to the
  image) lies within the attribute's mask, with the game's tolerance of 15 pixels at 224 —
  :data:`TOLERANCE` of the image side, so about 4 pixels on the toy world's 64-pixel images.
  Counted on inputs where the attribute is present (has a mask).
- **Mask IoU of the top region**: the map's top pixels, as many as the mask has, against the
  mask.
- Baselines: a **random point** (its expected hit rate is the share of the image the tolerant
  mask covers; its expected IoU that of a random region of the mask's size), the **image
  centre** (a centred square of the mask's size for IoU), and the **class activation map** of
  the predicted class.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import SemheatError
from .cam import bundle_concept_maps, class_maps

TOLERANCE = 15 / 224  # the pointing game's tolerance, as a share of the image side


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """``mask`` grown by ``radius`` pixels (a square neighbourhood)."""
    if radius <= 0:
        return mask
    t = torch.as_tensor(mask, dtype=torch.float32)[None, None]
    return F.max_pool2d(t, 2 * radius + 1, stride=1, padding=radius)[0, 0].numpy() > 0


def _upsample(maps: np.ndarray, size: int) -> np.ndarray:
    t = torch.as_tensor(maps, dtype=torch.float32)
    squeeze = t.ndim == 3
    t = t[:, None] if squeeze else t
    out = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).numpy()
    return out[:, 0] if squeeze else out


def _top_region(heat: np.ndarray, area: int) -> np.ndarray:
    flat = heat.ravel()
    region = np.zeros(flat.size, bool)
    region[np.argsort(-flat, kind="stable")[:area]] = True
    return region.reshape(heat.shape)


def _centre_square(size: int, area: int) -> np.ndarray:
    side = max(1, int(round(np.sqrt(area))))
    lo = (size - side) // 2
    sq = np.zeros((size, size), bool)
    sq[lo:lo + side, lo:lo + side] = True
    return sq


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def ground(bundle, classifier, images: torch.Tensor, masks: list[dict], predictions,
           concepts: list[str] | None = None) -> dict:
    """Pointing-game and IoU figures of the bundle's concept maps on ``images`` (``uint8 N x 3
    x H x W``, square) whose attribute masks (``{concept: bool H x W}`` per image, present
    attributes only) are ``masks``; ``predictions`` name each image's class for the class-map
    baseline."""
    if len(images) != len(masks) or len(images) == 0:
        raise SemheatError("give one mask dict per image, and at least one image")
    size = images.shape[-1]
    concepts = concepts or [c for c in bundle.concept_names
                            if any(c in m for m in masks)]
    if not concepts:
        raise SemheatError("no concept of the bundle has a mask on these inputs")
    maps = bundle_concept_maps(bundle, classifier, images, concepts)
    up = maps.upsampled(size)
    cam = _upsample(class_maps(classifier, images, np.asarray(predictions)), size)
    radius = int(round(TOLERANCE * size))
    centre = (size // 2, size // 2)
    per = {}
    for j, concept in enumerate(concepts):
        rows = {"map": [], "random": [], "centre": [], "class_cam": [], "iou_map": [],
                "iou_random": [], "iou_centre": [], "iou_class_cam": []}
        for i, m in enumerate(masks):
            mask = m.get(concept)
            if mask is None or not mask.any():
                continue
            tolerant = dilate(mask, radius)
            heat = up[i, j]
            y, x = np.unravel_index(np.argmax(heat), heat.shape)
            cy, cx = np.unravel_index(np.argmax(cam[i]), cam[i].shape)
            rows["map"].append(tolerant[y, x])
            rows["random"].append(tolerant.mean())
            rows["centre"].append(tolerant[centre])
            rows["class_cam"].append(tolerant[cy, cx])
            area = int(mask.sum())
            share = area / mask.size
            rows["iou_map"].append(_iou(_top_region(heat, area), mask))
            rows["iou_random"].append(share / (2 - share))  # E[IoU] of a random region
            rows["iou_centre"].append(_iou(_centre_square(size, area), mask))
            rows["iou_class_cam"].append(_iou(_top_region(cam[i], area), mask))
        if rows["map"]:
            per[concept] = {"n": len(rows["map"]),
                            **{k: round(float(np.mean(v)), 4) for k, v in rows.items()}}
    keys = ("map", "random", "centre", "class_cam", "iou_map", "iou_random", "iou_centre",
            "iou_class_cam")
    mean = {k: round(float(np.mean([e[k] for e in per.values()])), 4) for k in keys} \
        if per else {}
    return {"method": maps.method, "n_inputs": int(len(images)), "image_size": int(size),
            "tolerance_px": radius, "concepts": per, "mean": mean}
