"""Which feature map should concept maps read? The development measurement behind
``semheat_widgets.engine.concepts.finer_maps`` (issue 24, part 4).

    python benchmarks/finer_maps_dev.py [--fit 3000] [--test 400]

Development data only: the clean toy classifier on its own training distribution, scenes seeded
apart from every bundle's (fit: seed 777, test: seed 778). For each candidate — an aligner on the
pooled features of one stage (``layer2``, ``layer3``, ``layer4``), or one aligner on several
stages' pooled features with each stage's exact map summed at the finest grid — it fits the
aligner (ridge, relative strength ``--alpha``) to the tiny CLIP's image embeddings and plays the
pointing game (the map's maximum within the attribute's mask, 4-pixel tolerance) on the test
scenes' renderer masks. The held-out figure is ``semheat ground`` on the toy world's bundles.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from semheat_widgets.data.toy.world import ATTRIBUTES
from semheat_widgets.engine.concepts.finer_maps import layer_features
from semheat_widgets.engine.concepts.grounding import TOLERANCE, dilate
from semheat_widgets.engine.models.aligner import LinearAligner
from semheat_widgets.zoo.build import toy_concepts
from semheat_widgets.zoo.faults import clean_train_world
from semheat_widgets.zoo.models import toy_classifier, toy_vlm

CANDIDATES = (("layer4",), ("layer3",), ("layer2",), ("layer3", "layer4"),
              ("layer2", "layer3", "layer4"))


def scenes(world, n):
    images, masks = [], []
    for i in range(n):
        scene = world.scene(i)
        image, mask = world.render(scene)
        images.append(torch.from_numpy(image).permute(2, 0, 1))
        masks.append({a: mask[a] for a in scene.present if a in mask})
    return torch.stack(images), masks


def stage_maps(classifier, images, layers):
    return {name: torch.cat([layer_features(classifier, images[s:s + 256], name)
                             for s in range(0, len(images), 256)]) for name in layers}


def pointing(maps: torch.Tensor, masks, size: int = 64) -> dict:
    """Mean over attributes of the share of inputs whose map maximum is inside the mask."""
    up = F.interpolate(maps, size=(size, size), mode="bilinear", align_corners=False).numpy()
    radius = int(round(TOLERANCE * size))
    hits, chance = {}, {}
    for i, m in enumerate(masks):
        for j, a in enumerate(ATTRIBUTES):
            mask = m.get(a)
            if mask is None or not mask.any():
                continue
            tolerant = dilate(mask, radius)
            y, x = np.unravel_index(np.argmax(up[i, j]), (size, size))
            hits.setdefault(a, []).append(tolerant[y, x])
            chance.setdefault(a, []).append(tolerant.mean())
    return {"pointing": round(float(np.mean([np.mean(v) for v in hits.values()])), 4),
            "random": round(float(np.mean([np.mean(v) for v in chance.values()])), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fit", type=int, default=3000)
    ap.add_argument("--test", type=int, default=400)
    ap.add_argument("--alpha", type=float, default=0.1)
    args = ap.parse_args()
    torch.manual_seed(0)
    classifier, vlm = toy_classifier("clean"), toy_vlm()
    T = torch.as_tensor(np.asarray(toy_concepts().embed(vlm)), dtype=torch.float32)
    world = clean_train_world()
    fit_images, _ = scenes(world.with_overrides(seed=777), args.fit)
    test_images, masks = scenes(world.with_overrides(seed=778), args.test)
    with torch.inference_mode():
        emb = torch.cat([vlm.encode_images(fit_images[s:s + 256])
                         for s in range(0, args.fit, 256)]).float().numpy()
    layers = sorted({name for c in CANDIDATES for name in c})
    fit_f, test_f = stage_maps(classifier, fit_images, layers), stage_maps(classifier,
                                                                           test_images, layers)
    out = {"fit": args.fit, "test": args.test, "alpha": args.alpha, "candidates": {}}
    for combo in CANDIDATES:
        z = torch.cat([fit_f[name].mean((2, 3)) for name in combo], 1).numpy()
        aligner = LinearAligner(alpha=args.alpha).fit(z, emb)
        W, b = torch.as_tensor(aligner.W_), torch.as_tensor(aligner.b_)
        finest = max(test_f[name].shape[-1] for name in combo)
        total, offset = 0, 0
        for name in combo:  # each stage's exact map, repeated onto the finest grid
            d = test_f[name].shape[1]
            part = torch.einsum("ndhw,dm,cm->nchw", test_f[name], W[offset:offset + d], T)
            total = total + F.interpolate(part, size=(finest, finest), mode="nearest")
            offset += d
        maps = total + (b @ T.T)[None, :, None, None]
        fid = aligner.fidelity(z, emb)["mean_cosine"]
        out["candidates"]["+".join(combo)] = {"grid": finest, "fit_mean_cosine": round(fid, 4),
                                              **pointing(maps, masks)}
        print("+".join(combo), out["candidates"]["+".join(combo)], flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
