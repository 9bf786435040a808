"""Concept activation maps: *where* the classifier's own features show a text concept.

For an encoder that ends in global average pooling (ResNets, the toy ResNet),
``z = mean_hw F_hw`` and the aligner is affine, so ``A z = mean_hw (F_hw W + b)``: the aligned
embedding is the mean of per-location aligned vectors. A concept's score numerator
``t_j · A z`` is then *exactly* the mean of the per-location contributions
``t_j · (F_hw W + b)`` — a class-activation map (Zhou et al., CVPR 2016) for any text concept,
in CLIP space, through the classifier's own features. Dividing by ``|A z|`` and standardising
with the bundle's per-concept mean and spread makes the map's mean over locations equal to the
input's z-score of that concept in the heatmaps (:data:`EXACT`).

Where the bundle has the finer maps' aligner (:mod:`.finer_maps`: ResNet-layout classifiers,
``layer2``), maps come from it instead, by the same argument on that finer feature map
(:func:`finer_method`). For encoders without a final average pool the map falls back to
Grad-CAM (Selvaraju et al., ICCV 2017) of the concept score through the aligner, on the last
spatial activation (:data:`GRADIENT`); the map says which method made it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import SemheatError
from ..vectors import EPS

EXACT, GRADIENT = "exact (average-pooled features)", "gradient (Grad-CAM of the concept score)"


def finer_method(layer: str) -> str:
    return f"exact ({layer} features through their own aligner)"


@dataclass
class ConceptMaps:
    """Maps of some concepts on some images: ``values`` N x C x h x w at feature resolution,
    in z-score units (their mean over locations is the input's z-score of the concept)."""

    values: np.ndarray
    method: str
    concepts: list[str]

    def upsampled(self, size: int) -> np.ndarray:
        """``N x C x size x size`` (bilinear), for overlays and mask comparisons."""
        t = torch.as_tensor(self.values, dtype=torch.float32)
        return F.interpolate(t, size=(size, size), mode="bilinear",
                             align_corners=False).numpy()


def _pooled_features(classifier, images):
    """``(F, z, logits)``: the feature map entering a final average pool, when there is one
    whose mean is exactly ``z``; ``F`` is None otherwise."""
    model = getattr(classifier, "model", None)
    pool = getattr(model, "avgpool", None) if model is not None else None
    captured = {}
    handle = pool.register_forward_pre_hook(lambda _m, inp: captured.__setitem__(
        "F", inp[0])) if isinstance(pool, torch.nn.Module) else None
    try:
        z, logits = classifier.features_and_logits(images)
    finally:
        if handle is not None:
            handle.remove()
    fmap = captured.get("F")
    if fmap is None or fmap.ndim != 4 or not torch.allclose(
            fmap.mean((2, 3)), z.reshape(len(z), -1), atol=1e-4, rtol=1e-3):
        return None, z, logits
    return fmap, z, logits


def concept_maps(classifier, aligner, concept_embeddings, mean, std, images,
                 concepts: list[str], map_aligner=None) -> ConceptMaps:
    """Maps of the concepts (unit text embeddings ``C x m``, with the per-concept ``mean`` and
    ``std`` of their scores) on a batch of images, through ``classifier`` and ``aligner`` —
    or, given a :class:`~.finer_maps.MapAligner`, through it at its finer layer."""
    if map_aligner is not None:
        return _finer_maps(classifier, map_aligner, concept_embeddings, images, concepts)
    T = torch.as_tensor(np.asarray(concept_embeddings), dtype=torch.float32)
    W = torch.as_tensor(np.asarray(aligner.W_), dtype=torch.float32)
    b = torch.as_tensor(np.asarray(aligner.b_), dtype=torch.float32)
    mu = torch.as_tensor(np.asarray(mean), dtype=torch.float32)[None, :, None, None]
    sd = torch.as_tensor(np.asarray(std), dtype=torch.float32)[None, :, None, None]
    dev = classifier.device
    T, W, b, mu, sd = (t.to(dev) for t in (T, W, b, mu, sd))
    with torch.inference_mode():
        fmap, z, _ = _pooled_features(classifier, images)
    if fmap is not None:
        with torch.inference_mode():
            local = torch.einsum("ndhw,dm->nhwm", fmap.float(), W) + b  # per-location A
            norm = (z.float() @ W + b).norm(dim=1).clamp_min(EPS)[:, None, None, None]
            raw = torch.einsum("nhwm,cm->nchw", local, T) / norm  # mean_hw = cos(A z, t_j)
            return ConceptMaps(((raw - mu) / sd).cpu().numpy(), EXACT, list(concepts))
    return ConceptMaps(_gradient_maps(classifier, W, b, T, mu, sd, images), GRADIENT,
                       list(concepts))


def _finer_maps(classifier, map_aligner, concept_embeddings, images, concepts) -> ConceptMaps:
    """The exact maps of :mod:`.finer_maps`: per location ``t_j · (F_hw W + b) / |A₂ z₂|``,
    standardised with the fit inputs' mean and spread of ``cos(A₂ z₂, t_j)``."""
    from .finer_maps import layer_features

    fmap = layer_features(classifier, images, map_aligner.layer)
    dev = fmap.device
    W = torch.as_tensor(map_aligner.aligner.W_, dtype=torch.float32, device=dev)
    b = torch.as_tensor(map_aligner.aligner.b_, dtype=torch.float32, device=dev)
    T = torch.as_tensor(np.asarray(concept_embeddings), dtype=torch.float32, device=dev)
    mean, std = (torch.as_tensor(a, dtype=torch.float32, device=dev)[None, :, None, None]
                 for a in map_aligner.stats(concept_embeddings))
    with torch.inference_mode():
        local = torch.einsum("ndhw,dm->nhwm", fmap, W) + b  # per-location A₂
        norm = local.mean((1, 2)).norm(dim=1).clamp_min(EPS)[:, None, None, None]
        raw = torch.einsum("nhwm,cm->nchw", local, T) / norm  # mean_hw = cos(A₂ z₂, t_j)
    return ConceptMaps(((raw - mean) / std).cpu().numpy(), finer_method(map_aligner.layer),
                       list(concepts))


def _gradient_maps(classifier, W, b, T, mu, sd, images) -> np.ndarray:
    """Grad-CAM of each concept's z-score on the last 4-D activation of the classifier."""
    acts = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: acts.append(out))
             for m in classifier.modules() if not list(m.children())]
    try:
        with torch.enable_grad():
            z, _ = classifier.features_and_logits(images)
            spatial = [a for a in acts if isinstance(a, torch.Tensor) and a.ndim == 4
                       and a.requires_grad]
            if not spatial:
                raise SemheatError("this classifier has no spatial activation to map concepts on")
            fmap = spatial[-1]
            a = F.normalize(z.float().reshape(len(z), -1) @ W + b, dim=1)
            s = (a @ T.T - mu[:, :, 0, 0]) / sd[:, :, 0, 0]  # N x C z-scores
            maps = []
            for j in range(T.shape[0]):
                (grad,) = torch.autograd.grad(s[:, j].sum(), fmap, retain_graph=True)
                weights = grad.mean((2, 3), keepdim=True)
                maps.append(F.relu((weights * fmap).sum(1)).detach())
    finally:
        for h in hooks:
            h.remove()
    return torch.stack(maps, 1).cpu().numpy()


def class_maps(classifier, images, classes) -> np.ndarray:
    """Class activation maps (Zhou et al.) of ``classes`` (one per image): the head's weights
    of that class on every location of the pooled feature map, ``N x h x w``."""
    with torch.inference_mode():
        fmap, _, _ = _pooled_features(classifier, images)
    if fmap is None:
        raise SemheatError("class activation maps need an encoder ending in average pooling")
    weight = classifier.head.weight.detach().float()[torch.as_tensor(np.asarray(classes),
                                                                     dtype=torch.long)]
    return torch.einsum("ndhw,nd->nhw", fmap.float(), weight.to(fmap.device)).cpu().numpy()


def bundle_concept_maps(bundle, classifier, images, concepts: list[str]) -> ConceptMaps:
    """:func:`concept_maps` with a bundle's aligner, concept embeddings and standardiser."""
    names = bundle.concept_names
    missing = [c for c in concepts if c not in names]
    if missing:
        raise SemheatError(f"unknown concept {missing[0]!r}")
    cols = [names.index(c) for c in concepts]
    st = bundle.standardizer
    finer = bundle.map_aligner
    if finer is not None:  # a classifier given in its place may lack the layer: coarser maps
        from .finer_maps import map_layer

        finer = finer if map_layer(classifier) == finer.layer else None
    args = (classifier, bundle.aligner, bundle.concept_embeddings[cols], st.mean[cols],
            st.std[cols], images, concepts)
    if finer is not None:
        try:
            return concept_maps(*args, map_aligner=finer)
        except SemheatError:  # that layer gives no spatial map here: the coarser maps
            pass
    return concept_maps(*args)


def input_images(bundle, indices) -> "torch.Tensor":
    """The images of some records for recomputing maps: the original file when the record
    names one (``path`` column) and it can be read, else the bundle's thumbnail (exact for the
    toy world, whose thumbnails are its images; an approximation for larger images)."""
    from ..image_files import load_image

    out = []
    paths = bundle.column("path") if bundle.has_column("path") else None
    size = bundle.arrays["thumbs"].shape[1] if "thumbs" in bundle.arrays else None
    for i in np.asarray(indices, dtype=np.int64):
        image = None
        if paths is not None and paths[i]:
            try:
                image = load_image(paths[i], size=bundle.manifest.get("image_size"))
            except SemheatError:
                image = None
        if image is None:
            image = torch.from_numpy(np.array(bundle.thumbnail(int(i)))).permute(2, 0, 1)
        out.append(image)
    shapes = {tuple(x.shape) for x in out}
    if len(shapes) > 1:  # files and thumbnails mixed: bring all to the thumbnails' size
        from ..pixels import resize_center_crop, to_float01, to_uint8

        out = [to_uint8(resize_center_crop(to_float01(x), size or out[0].shape[-1]))
               for x in out]
    return torch.stack(out) if out else torch.zeros(0, 3, size or 1, size or 1,
                                                     dtype=torch.uint8)


# -- overlays ------------------------------------------------------------------------------------
_STOPS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]],
                  dtype=np.float64)  # a perceptually ordered dark-to-bright ramp (inferno-like)
OVERLAY_ALPHA = 0.55


def colour(values01: np.ndarray) -> np.ndarray:
    """``H x W`` in [0, 1] to ``uint8 H x W x 3`` along :data:`_STOPS`."""
    x = np.clip(values01, 0, 1) * (len(_STOPS) - 1)
    lo = np.floor(x).astype(int).clip(0, len(_STOPS) - 2)
    t = (x - lo)[..., None]
    return ((1 - t) * _STOPS[lo] + t * _STOPS[lo + 1]).round().astype(np.uint8)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """``image`` (``uint8 H x W x 3``) with ``heat`` (``H x W``, any scale: its own range is
    shown dark to bright) blended over it."""
    lo, hi = float(np.min(heat)), float(np.max(heat))
    norm = (heat - lo) / (hi - lo) if hi > lo else np.zeros_like(heat)
    mix = (1 - alpha) * np.asarray(image, dtype=np.float64) + alpha * colour(norm)
    return mix.round().clip(0, 255).astype(np.uint8)


# -- for the views ------------------------------------------------------------------------------
def open_classifier(bundle, given=None):
    """The bundle's classifier (given, or re-opened by its id); None when it cannot be."""
    if given is not None:
        return given
    from ..models.registry import load_classifier

    try:
        return load_classifier(bundle.models.classifier)
    except SemheatError:
        return None


def map_pngs(bundle, classifier, indices, concept: str) -> list[bytes]:
    """PNG overlays of ``concept``'s activation map on the inputs ``indices``."""
    from ..bundle.images import png_bytes

    if not len(indices):
        return []
    images = input_images(bundle, indices)
    heat = bundle_concept_maps(bundle, classifier, images, [concept]).upsampled(
        images.shape[-1])[:, 0]
    return [png_bytes(overlay(np.asarray(img.permute(1, 2, 0)), h))
            for img, h in zip(images, heat)]


def class_map_png(bundle, classifier, index: int) -> bytes:
    """PNG overlay of the predicted class's activation map on one input."""
    from ..bundle.images import png_bytes

    images = input_images(bundle, [index])
    k = [int(bundle.column("prediction")[index])]
    cam = class_maps(classifier, images, k)
    up = F.interpolate(torch.as_tensor(cam)[:, None], size=images.shape[-2:], mode="bilinear",
                       align_corners=False)[0, 0].numpy()
    return png_bytes(overlay(np.asarray(images[0].permute(1, 2, 0)), up))
