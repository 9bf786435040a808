"""A family of faults with known answers, for measuring localization on faults it was not
built around.

**Encoder faults: any (concept, class) tie.** A :class:`Tie` trains a toy classifier on a world
where ``concept`` appears with every input of ``cls`` and with no other class (the recipe of
the zoo's ``encoder_fault``, for any pair), then deploys it where the tie breaks: the natural
world (where the concept belongs to several classes) plus a *shift* of the other classes, all
showing the concept. Classifiers are trained once and cached under the user cache (not
shipped). Two ground truths describe each misclassified test input of a tie:

- **construction** (``gt_fault``): the input shows the concept, is not of the tied class, is
  predicted as the tied class, and the clean classifier gets it right → ``encoder``;
- **probe** (``probe_fault``): a linear probe (scikit-learn logistic regression) fit on the
  classifier's features of its *own* training distribution. Where the probe also calls a
  construction-encoder input the tied class, no head trained on that data could recover the
  truth: the representation itself is at fault (``encoder``). Where it recovers the true class,
  the features still carry it (``head``) — the construction overstates the encoder's part.

The verdict is meant to match the probe: "encoder" in the paper's sense means that the
classifier's representation already looks like the wrong class, which is what the probe tests
with the classifier's own data, and what the construction only presumes.

**Head faults of four kinds**: the zoo's ``head_fault`` (rows of the last layer mixed), a
bias shift toward one class (:func:`biased_head`), noise on every weight (:func:`noisy_head`)
and one class's row damped (:func:`damped_head`). Inputs the clean classifier gets right and
these get wrong are head faults (the features are the clean ones).
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.toy.world import ATTRIBUTES, CLASSES, ToyWorld
from ..engine.models.classifier import ModelSplit
from ..errors import SemheatError
from ..jobs import FamilyJob
from ..safe_io import atomic_write
from .faults import CLASSIFIER_TRAIN_SEED, clean_train_world
from .models import toy_split
from .toy_resnet import ToyResNet, classifier_config

FAMILY_TRAIN = FamilyJob().training()  # the tie classifiers' recipe (defaults: in FamilyJob)
PROBE_SEED, PROBE_SIZE = 6161, 3000  # the probe's sample of each tie's own training world
SHIFT_SEED = 4545


@dataclass(frozen=True)
class Tie:
    """``concept`` shows with every input of ``cls`` and with no other class in training."""

    concept: str
    cls: str
    kind: str  # texture / part / background / shape: what sort of concept it is

    def __post_init__(self):
        if self.concept not in ATTRIBUTES or self.cls not in CLASSES:
            raise SemheatError(f"unknown tie {self.concept!r} -> {self.cls!r}")

    @property
    def name(self) -> str:
        return f"{self.concept}-{self.cls}".replace("_", "-")

    def world(self, seed: int) -> ToyWorld:
        """The tied world (training, reference and probe data differ only by seed)."""
        tie = {c: {self.concept: 0.0} for c in CLASSES if c != self.cls}
        tie[self.cls] = {self.concept: 1.0}
        return clean_train_world().with_overrides(seed=seed, attribute_probs=tie)

    def shift(self, seed: int = SHIFT_SEED) -> ToyWorld:
        """Where the tie breaks: every other class, always showing the concept."""
        others = tuple(c for c in CLASSES if c != self.cls)
        return ToyWorld(seed=seed, classes=others,
                        attribute_probs={c: {self.concept: 1.0} for c in others})


# Concepts of every sort the toy world has (its background ``wet``; textures; parts; shapes and
# sizes; ``colored-eyes``, its one colour), tied to classes they do not define, over all ten
# classes. Declared before any method of issue 24 was changed: the DEVELOPMENT ties (a quarter)
# are where settings may be chosen, every other bundle is held out and only reported. The first
# two were the development ties of issue 18; ``metallic-plane`` and ``horns-dog`` were held out
# there, and their failures were published in issue 24, so they are studied here, not reported.
FAMILY = (
    Tie("wet", "ship", "background"),
    Tie("text", "truck", "part"),
    Tie("metallic", "plane", "texture"),
    Tie("horns", "dog", "part"),
    Tie("patterned", "frog", "texture"),
    Tie("tall", "equine", "shape"),
    Tie("rectangular", "car", "shape"),
    Tie("wet", "deer", "background"),
    Tie("hairy", "bird", "texture"),
    Tie("metallic", "dog", "texture"),
    Tie("wings", "deer", "part"),
    Tie("beak", "cat", "part"),
    Tie("wheels", "bird", "part"),
    Tie("mane", "frog", "part"),
    Tie("long", "cat", "size"),
    Tie("colored-eyes", "truck", "colour"),
)
DEVELOPMENT = ("wet-ship", "text-truck", "metallic-plane", "horns-dog", "head-mix")

# Round 2, declared on 2026-12-07 after round 1's held-out figures were measured and published
# (docs/localization.md) and before any method was changed again: every bundle of round 1
# becomes development, and these ten ties, of every sort of concept and over eight classes,
# are held out. A method changed after round 1 is reported on these.
ROUND_2 = (
    Tie("hairy", "truck", "texture"),
    Tie("patterned", "plane", "texture"),
    Tie("metallic", "frog", "texture"),
    Tie("wheels", "cat", "part"),
    Tie("tail", "ship", "part"),
    Tie("floppy-ears", "car", "part"),
    Tie("text", "deer", "part"),
    Tie("tall", "dog", "shape"),
    Tie("rectangular", "bird", "shape"),
    Tie("wet", "equine", "background"),
)


def role(name: str, round: int = 1) -> str:
    """``development`` or ``held out``: a bundle's role in round ``round`` of the family."""
    if round == 1:
        return "development" if name in DEVELOPMENT else "held out"
    return "held out" if name in {t.name for t in ROUND_2} else "development"


def tie_named(name: str) -> Tie:
    for tie in FAMILY + ROUND_2:
        if tie.name == name:
            return tie
    for concept in sorted(ATTRIBUTES, key=len, reverse=True):  # "long-snout-dog" and such
        if name.startswith(concept + "-"):
            return Tie(concept, name[len(concept) + 1:], "custom")
    raise SemheatError(f"a tie is CONCEPT-CLASS (e.g. wet-ship), got {name!r}")


def family_cache() -> Path:
    import os

    env = os.environ.get("SEMHEAT_FAMILY_DIR")
    return Path(env) if env else Path.home() / ".cache" / "semheat_widgets" / "family"


def tie_classifier(tie: Tie, cache: Path | None = None, device=None, progress: bool = True,
                   **train) -> ModelSplit:
    """The toy classifier trained on ``tie``'s world: loaded from the cache, or trained (a few
    minutes on two cores) and cached, with its accuracy beside it."""
    from safetensors.torch import load_file

    from .training.train_classifier import save_fp16, train_classifier

    cache = Path(cache) if cache is not None else family_cache()
    settings = {**FAMILY_TRAIN, **train}
    path = cache / f"{tie.name}-{settings['n_train']}x{settings['epochs']}.safetensors"
    cfg = classifier_config()
    model = ToyResNet(widths=tuple(cfg["widths"]))
    if path.is_file():
        try:
            model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        except Exception as exc:  # a damaged entry: moved aside and rebuilt
            aside = path.with_name(f"{path.name}.damaged-{int(time.time())}")
            os.replace(path, aside)
            warnings.warn(f"tie cache {path} was damaged ({str(exc).splitlines()[0][:80]}); "
                          f"moved it to {aside.name} and retraining", stacklevel=2)
            model = ToyResNet(widths=tuple(cfg["widths"]))
    if not path.is_file():
        started = time.time()
        model, info = train_classifier(tie.world(CLASSIFIER_TRAIN_SEED + 7), progress=progress,
                                       **settings)
        cache.mkdir(parents=True, exist_ok=True)
        save_fp16(model, path)  # fp16, as the zoo ships its weights
        model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
        atomic_write(path.with_suffix(".json"), json.dumps(
            {**info, "tie": tie.name, "seconds": round(time.time() - started, 1)}, indent=1))
    return toy_split(model, f"toy-tie:{tie.name}", device)


@torch.no_grad()
def biased_head(fc: torch.nn.Linear, cls: str = "bird", shift: float = 4.0) -> torch.nn.Linear:
    """A head fault of another kind: a copy of ``fc`` whose bias favours ``cls`` by ``shift``
    logits, so that inputs the clean head barely decides flip to ``cls``."""
    out = torch.nn.Linear(fc.in_features, fc.out_features)
    out.load_state_dict(fc.state_dict())
    out.bias[CLASSES.index(cls)] += shift
    return out


@torch.no_grad()
def noisy_head(fc: torch.nn.Linear, scale: float = 1.5, seed: int = 2424) -> torch.nn.Linear:
    """A head fault of a third kind: a copy of ``fc`` with seeded Gaussian noise on every weight
    (``scale`` times the weights' standard deviation), so mistakes spread over many classes."""
    out = torch.nn.Linear(fc.in_features, fc.out_features)
    out.load_state_dict(fc.state_dict())
    gen = torch.Generator().manual_seed(seed)
    out.weight += scale * float(fc.weight.std()) * torch.randn(fc.weight.shape, generator=gen)
    return out


@torch.no_grad()
def damped_head(fc: torch.nn.Linear, cls: str = "plane", factor: float = 0.1) -> torch.nn.Linear:
    """A head fault of a fourth kind: a copy of ``fc`` whose row of ``cls`` is scaled down by
    ``factor``, so that inputs of ``cls`` go to whichever class comes next."""
    out = torch.nn.Linear(fc.in_features, fc.out_features)
    out.load_state_dict(fc.state_dict())
    out.weight[CLASSES.index(cls)] *= factor
    return out


def fit_probe(classifier: ModelSplit, tie: Tie, n: int = PROBE_SIZE):
    """A linear probe on the classifier's features of its own training distribution."""
    from sklearn.linear_model import LogisticRegression

    from ..data.toy.dataset import ToyDataset

    data = ToyDataset(tie.world(PROBE_SEED), 0, n)
    images = data.render_all()
    with torch.inference_mode():
        z = torch.cat([classifier.features_and_logits(images[s:s + 256])[0]
                       for s in range(0, n, 256)]).numpy()
    return LogisticRegression(max_iter=3000).fit(z, data.labels)


def probe_truth(probe, features: np.ndarray, labels: np.ndarray, tied: int,
                candidates: np.ndarray) -> np.ndarray:
    """``probe_fault`` of each record: for the construction-encoder candidates, ``encoder``
    where the probe also calls the tied class, ``head`` where it recovers the true class,
    ``undecided`` otherwise; empty elsewhere."""
    out = np.full(len(labels), "", dtype=object)
    if candidates.any():
        pred = probe.predict(np.asarray(features)[candidates])
        verdict = np.where(pred == tied, "encoder",
                           np.where(pred == labels[candidates], "head", "undecided"))
        out[candidates] = verdict
    return out.astype(str)
