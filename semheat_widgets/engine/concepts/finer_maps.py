"""Finer concept maps: a second aligner, on an earlier and finer feature map of the classifier.

The bundle's aligner reads the final pooled features ``z`` (ResNets: ``layer4``, 7 × 7 at 224
pixels, 4 × 4 on the toy world's 64), so its exact maps (:mod:`.cam`) are as coarse as that
grid: each location sees most of the image. A second affine map ``A₂`` from the pooled features
of an earlier stage (ResNets: ``layer2``, stride 8: 28 × 28 at 224 pixels, 16 × 16 on the toy
world) to the same VLM image embeddings gives maps four times finer along each side, and exact
in the same sense: ``z₂ = mean_hw F₂,hw`` and ``A₂`` is affine, so a concept's numerator
``t_j · A₂ z₂`` *is* the mean over locations of ``t_j · (F₂,hw W₂ + b₂)``. Each location is
divided by ``|A₂ z₂|`` and standardised with the mean and spread of ``cos(A₂ z₂, t_j)`` over
the fit inputs, so the map's mean over locations is the input's z-score of the concept as the
earlier stage reads it. (Class activation maps, Zhou et al., CVPR 2016; an aligner between a
classifier's features and CLIP space, Moayeri et al., Text-To-Concept, ICML 2023.)

**Why this layer.** Measured on development data only — the clean toy classifier on its own
training distribution, scenes seeded apart from every bundle's (``python
benchmarks/finer_maps_dev.py``, ``benchmarks/finer_maps_dev.json``) — the pointing game (Zhang
et al., ECCV 2016) on the toy renderer's attribute masks was 0.23 for the final features' maps,
0.46 from ``layer3``, 0.57 from ``layer2`` (random point: 0.115); one aligner on several
stages, each stage's exact map summed at the finest grid, scored 0.27 (``layer3+4``) and 0.35
(``layer2+3+4``): the coarse stages' blocks win the maximum. Also tried there: dense (à-trous)
evaluation of the final features at 32 × 32, exact on the original lattice (0.39); a region
aligner fit to the VLM's embeddings of crops (0.52); subtracting each location's mean map or
the other concepts' mean (no gain). ``A₂`` explains *where*; the bundle's aligner, whose
fidelity to the VLM is higher (mean cosine 0.92 against 0.77), explains *what* — heatmaps,
localization and monitors use it alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ...errors import SemheatError
from ..models.aligner import Fidelity, LinearAligner
from ..vectors import unit_rows

MAP_LAYER = "layer2"  # the torchvision ResNet layout's stage at stride 8
MAP_ALPHA = 0.1  # its aligner's ridge strength (relative, as LinearAligner's alpha)
MAP_FIT_ROWS = 2000  # fit inputs it is fit on, at most (seeded sample)
MAP_CALIB_ROWS = 500  # calibration inputs its fidelity is measured on, at most


@dataclass
class MapAligner:
    """The finer maps' aligner: ``layer``'s pooled features -> CLIP space, and the unit aligned
    embeddings of the inputs it was fit on (from which any concept's, a new one's too, score
    mean and spread are computed)."""

    layer: str
    aligner: LinearAligner
    fit_aligned: np.ndarray  # n x m unit rows of A₂ z₂ over the fit inputs

    def stats(self, concept_embeddings) -> tuple[np.ndarray, np.ndarray]:
        """Mean and spread of ``cos(A₂ z₂, t_j)`` over the fit inputs, per concept."""
        s = np.asarray(self.fit_aligned, np.float64) @ np.asarray(concept_embeddings,
                                                                  np.float64).T
        return s.mean(0), np.maximum(s.std(0), 1e-6)

    def state(self) -> dict[str, np.ndarray]:
        return {"map_aligner.W": self.aligner.W_, "map_aligner.b": self.aligner.b_,
                "map_aligner.fit_aligned": np.asarray(self.fit_aligned, np.float32)}

    @classmethod
    def from_state(cls, state: dict, layer: str) -> "MapAligner":
        aligner = LinearAligner.from_state({"aligner.W": state["map_aligner.W"],
                                            "aligner.b": state["map_aligner.b"]},
                                           alpha=MAP_ALPHA)
        return cls(layer, aligner, np.asarray(state["map_aligner.fit_aligned"]))


def map_layer(classifier) -> str | None:
    """The stage finer maps read, when the classifier has the ResNet layout (a module named
    :data:`MAP_LAYER` and a final average pool); ``None`` otherwise."""
    model = getattr(classifier, "model", None)
    if model is None or not isinstance(getattr(model, "avgpool", None), torch.nn.Module):
        return None
    return MAP_LAYER if isinstance(getattr(model, MAP_LAYER, None), torch.nn.Module) else None


def layer_features(classifier, images: torch.Tensor, layer: str) -> torch.Tensor:
    """``N x d x h x w``: the output of ``layer`` on ``images`` (the classifier's own
    preprocessing applies)."""
    module = getattr(getattr(classifier, "model", None), layer, None)
    if not isinstance(module, torch.nn.Module):
        raise SemheatError(f"the classifier has no layer {layer!r} to map concepts on")
    captured = {}
    handle = module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("F", out))
    try:
        with torch.inference_mode():
            classifier.features_and_logits(images)
    finally:
        handle.remove()
    fmap = captured.get("F")
    if not isinstance(fmap, torch.Tensor) or fmap.ndim != 4:
        raise SemheatError(f"layer {layer!r} of the classifier gives no spatial feature map")
    return fmap.float()


def _pooled(classifier, dataset, rows, layer: str, batch_size: int, progress) -> np.ndarray:
    out = []
    for start in range(0, len(rows), batch_size):
        items = [dataset[int(i)] for i in rows[start:start + batch_size]]
        images = torch.stack([torch.as_tensor(item[0]) for item in items])
        out.append(layer_features(classifier, images, layer).mean((2, 3)).cpu().numpy())
        if progress is not None:
            progress.update(len(items))
    return np.concatenate(out).astype(np.float32)


def fit_map_aligner(classifier, dataset, fit_rows, calib_rows, image_emb, *,
                    batch_size: int = 128, progress: bool = False, seed: int = 0
                    ) -> tuple[MapAligner, dict] | None:
    """The finer maps' aligner of ``classifier``, fit on (at most :data:`MAP_FIT_ROWS` of) the
    ``fit_rows`` of ``dataset`` against their VLM embeddings ``image_emb[rows]``, its fidelity
    measured on (at most :data:`MAP_CALIB_ROWS` of) ``calib_rows``; ``None`` when the classifier
    has no such layer. One more forward pass of the classifier over those inputs."""
    layer = map_layer(classifier)
    if layer is None or len(fit_rows) < 2:
        return None
    try:
        return _fit(classifier, dataset, layer, fit_rows, calib_rows, image_emb, batch_size,
                    progress, seed)
    except SemheatError as exc:  # a layer by that name that is no spatial stage: no finer maps
        warnings.warn(f"no finer concept maps: {exc}", stacklevel=2)
        return None


def _fit(classifier, dataset, layer, fit_rows, calib_rows, image_emb, batch_size, progress,
         seed):
    rng = np.random.default_rng(seed)
    fit = np.sort(rng.choice(fit_rows, min(MAP_FIT_ROWS, len(fit_rows)), replace=False))
    cal = np.sort(rng.choice(calib_rows, min(MAP_CALIB_ROWS, len(calib_rows)), replace=False)) \
        if len(calib_rows) else np.zeros(0, np.int64)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(fit) + len(cal), desc=f"finer concept maps ({layer})",
                   unit="img")
    try:
        z_fit = _pooled(classifier, dataset, fit, layer, batch_size, bar)
        z_cal = _pooled(classifier, dataset, cal, layer, batch_size, bar) if len(cal) else None
    finally:
        if bar is not None:
            bar.close()
    e_fit = np.asarray(image_emb[fit], np.float32)
    aligner = LinearAligner(alpha=MAP_ALPHA).fit(z_fit, e_fit)
    info = {"layer": layer, "alpha": MAP_ALPHA, "n_fit": int(len(fit)),
            "feature_map": list(layer_features(classifier, torch.as_tensor(
                dataset[int(fit[0])][0])[None], layer).shape[-2:])}
    if z_cal is not None and len(cal) >= 2:
        tally = Fidelity(aligner.n_outputs_)
        tally.add(aligner.transform(z_cal), np.asarray(image_emb[cal], np.float32))
        info["fidelity"] = tally.result()
    return MapAligner(layer, aligner, unit_rows(aligner.transform(z_fit))), info
