"""Quality measurements of the toy models on freshly generated images.

Used by the training scripts (recorded next to the weights) and by the tests (which check that
the shipped weights reproduce what was recorded).
"""

from __future__ import annotations

import numpy as np

from ..data.toy.captions import attribute_prompts, class_prompts
from ..data.toy.dataset import ToyDataset
from ..data.toy.world import ATTRIBUTES, CLASSES, ToyWorld
from ..engine.concepts.bank import ConceptBank
from ..engine.metrics import auroc
from ..engine.vectors import zero_shot

# Images the models never saw: training uses other seeds.
EVAL_WORLD = ToyWorld(seed=777)


def vlm_quality(vlm, images, labels: np.ndarray, attributes: np.ndarray) -> dict:
    """Zero-shot class accuracy and per-attribute AUROC of a VLM on labelled toy images."""
    img = vlm.encode_images(images).numpy()
    cls = ConceptBank([(c, class_prompts(c)) for c in CLASSES]).embed(vlm)
    att = ConceptBank([(a, attribute_prompts(a)) for a in ATTRIBUTES]).embed(vlm)
    accuracy = float((zero_shot(img, cls) == labels).mean())
    scores = img @ att.T
    per_attr = {a: auroc(scores[:, j], attributes[:, j]) for j, a in enumerate(ATTRIBUTES)}
    values = np.array(list(per_attr.values()))
    return {"zero_shot_class_accuracy": round(accuracy, 4),
            "attribute_auroc_mean": round(float(np.nanmean(values)), 4),
            "attribute_auroc_min": round(float(np.nanmin(values)), 4),
            "attribute_auroc": {a: round(v, 4) for a, v in per_attr.items()},
            "n_images": int(len(labels))}


def eval_set(n: int = 2000, world: ToyWorld = EVAL_WORLD):
    data = ToyDataset(world, 0, n)
    return data.render_all(), data.labels, data.attributes


def aligned_attribute_quality(bundle, attributes: np.ndarray, split: str = "eval") -> dict:
    """How well the *aligned classifier features* predict the true attributes.

    Per attribute: AUROC of the concept score ``cos(A z, t_j)`` on natural ``split`` records,
    beside the AUROC of the best the true class alone can do (the attribute's frequency in
    its class on the ``fit`` split, used as the score).
    """
    nat = bundle.mask(perturbation="natural")
    src = bundle.column("source_id")
    labels = bundle.column("label")
    ev = nat & bundle.mask(split=split)
    fit = nat & bundle.mask(split="fit")
    scores = bundle.scores()
    out, class_only = {}, {}
    for j, a in enumerate(ATTRIBUTES):
        if a not in bundle.concept_names:
            continue
        col = bundle.concept_names.index(a)
        truth = attributes[src, j]
        freq = np.array([truth[fit & (labels == k)].mean() if (fit & (labels == k)).any()
                         else 0.0 for k in range(len(CLASSES))])
        out[a] = round(auroc(scores[ev, col], truth[ev]), 4)
        class_only[a] = round(auroc(freq[labels[ev]], truth[ev]), 4)
    fid = bundle.manifest["aligner"]["fidelity"].get(split, {})
    return {"aligner_mean_cosine": round(fid.get("mean_cosine", float("nan")), 4),
            "aligner_r2": round(fid.get("r2", float("nan")), 4),
            "aligned_attribute_auroc_mean": round(float(np.nanmean(list(out.values()))), 4),
            "class_only_attribute_auroc_mean": round(float(np.nanmean(list(class_only.values()))),
                                                     4),
            "aligned_attribute_auroc": out, "class_only_attribute_auroc": class_only}
