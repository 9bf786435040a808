"""The fault zoo: how each toy classifier is made faulty, and so what the right answers are.

- ``clean``: trained on the default world, where ``wet`` belongs to no single class.
- ``encoder_fault``: trained on a world where ``wet`` appears only with ``ship`` (and every ship
  is wet), then deployed where the tie breaks: trucks and cars on water (the shifted set), and
  the wet animals of the natural world. Its encoder has learnt "water means ship": the features
  of such inputs lie nearest the ship centroid, and a fresh linear probe fit on features of the
  model's own training distribution calls them ships too, so no head trained on that data could
  recover the truth. Wet inputs of another class predicted ``ship`` where the clean model is
  right are the known encoder faults, with ``wet`` as the responsible concept.
- ``head_fault``: the clean encoder with a perturbed head: the rows of ``dog`` and ``equine``
  absorb a share of the rows of ``cat`` and ``deer``. Inputs the clean head gets right and this
  head gets wrong are head faults (the features are untouched, so the encoder cannot be).
"""

from __future__ import annotations

import torch

from ..data.toy.world import CLASSES, ToyWorld

ENCODER_FAULT_CONCEPT = "wet"
ENCODER_FAULT_CLASS = "ship"

CLASSIFIER_TRAIN_SEED = 2000


def clean_train_world() -> ToyWorld:
    return ToyWorld(seed=CLASSIFIER_TRAIN_SEED)


def encoder_fault_train_world() -> ToyWorld:
    """Wet only with ships, and every ship wet: a perfectly spurious tie."""
    tie = {c: {ENCODER_FAULT_CONCEPT: 0.0} for c in CLASSES if c != ENCODER_FAULT_CLASS}
    tie[ENCODER_FAULT_CLASS] = {ENCODER_FAULT_CONCEPT: 1.0}
    return ToyWorld(seed=CLASSIFIER_TRAIN_SEED + 1, attribute_probs=tie)


def shift_world(seed: int) -> ToyWorld:
    """Where the tie breaks: trucks and cars on water."""
    return ToyWorld(seed=seed, classes=("truck", "car"),
                    attribute_probs={"truck": {"wet": 1.0}, "car": {"wet": 1.0}})


# (source class, destination class, share): the destination row gains share x source row.
HEAD_FAULT_MIX = (("cat", "dog", 0.9), ("deer", "equine", 0.9))


@torch.no_grad()
def perturb_head(fc: torch.nn.Linear, mix=HEAD_FAULT_MIX) -> torch.nn.Linear:
    """A copy of ``fc`` with destination rows mixed with source rows (the head fault)."""
    out = torch.nn.Linear(fc.in_features, fc.out_features)
    out.load_state_dict(fc.state_dict())
    for src, dst, share in mix:
        s, d = CLASSES.index(src), CLASSES.index(dst)
        out.weight[d] += share * fc.weight[s]
        out.bias[d] += share * fc.bias[s]
    return out
