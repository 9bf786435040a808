"""The toy world's specification: which scenes exist and how they are sampled.

A :class:`ToyWorld` is a frozen description (seed, per-class attribute probabilities,
backgrounds, difficulty). Scene ``i`` of a world is a pure function of ``(world, i)``, so
datasets are deterministic and any image can be re-rendered from its index alone. Callers
make shifts and faults by overriding probabilities or backgrounds, never by editing code::

    clean = ToyWorld(seed=0)
    trucks_on_water = clean.with_overrides(attribute_probs={"truck": {"wet": 1.0}},
                                           classes=["truck"])
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from .render import render_scene
from .scene import ATTRIBUTES, BACKGROUNDS, CLASSES, Scene

__all__ = ["ATTRIBUTES", "BACKGROUNDS", "CLASSES", "DEFAULT_ATTRIBUTE_PROBS", "Scene",
           "ToyWorld"]

# P(attribute present | class). Unlisted attributes are absent (probability 0). Values strictly
# between 0 and 1 give within-class variation, which the concept scores must pick up beyond
# what the class alone predicts. ``wet`` (a water band) belongs to no single class here, so a
# model trained on this world has no reason to read "water" as "ship".
DEFAULT_ATTRIBUTE_PROBS: dict[str, dict[str, float]] = {
    "truck": {"wheels": 0.95, "text": 0.6, "metallic": 0.5, "rectangular": 0.85, "long": 0.5,
              "tall": 0.25, "patterned": 0.1, "wet": 0.15},
    "car": {"wheels": 0.95, "text": 0.2, "metallic": 0.6, "rectangular": 0.2, "long": 0.25,
            "tall": 0.1, "patterned": 0.15, "wet": 0.15},
    "plane": {"wings": 0.95, "text": 0.45, "metallic": 0.6, "tail": 0.85, "long": 0.6,
              "wheels": 0.3, "tall": 0.1},
    "ship": {"wet": 0.9, "text": 0.4, "metallic": 0.45, "rectangular": 0.55, "long": 0.55,
             "tall": 0.5, "patterned": 0.1},
    "cat": {"ears": 0.9, "tail": 0.7, "hairy": 0.6, "colored-eyes": 0.55, "patterned": 0.45,
            "long": 0.15},
    "dog": {"floppy-ears": 0.55, "ears": 0.35, "long-snout": 0.6, "tail": 0.65, "hairy": 0.65,
            "patterned": 0.3, "colored-eyes": 0.15, "long": 0.2, "wet": 0.1},
    "equine": {"mane": 0.85, "long-snout": 0.75, "tail": 0.8, "ears": 0.5, "tall": 0.6,
               "hairy": 0.3, "patterned": 0.25, "long": 0.3},
    "deer": {"horns": 0.7, "ears": 0.75, "tail": 0.35, "tall": 0.55, "long-snout": 0.5,
             "patterned": 0.35, "hairy": 0.15},
    "frog": {"wet": 0.55, "colored-eyes": 0.7, "patterned": 0.5, "long": 0.1},
    "bird": {"wings": 0.85, "beak": 0.95, "tail": 0.55, "colored-eyes": 0.45, "patterned": 0.35,
             "wet": 0.1, "tall": 0.1},
}


def _freeze(mapping: Mapping | None) -> tuple:
    if not mapping:
        return ()
    return tuple(sorted((k, tuple(sorted(v.items())) if isinstance(v, Mapping) else tuple(v))
                        for k, v in mapping.items()))


@dataclass(frozen=True)
class ToyWorld:
    """A deterministic generator of RIVAL10-like scenes.

    ``attribute_probs`` and ``backgrounds`` are per-class overrides on top of the defaults
    (``{"truck": {"wet": 1.0}}``; ``{"plane": ["sky"]}``); ``classes`` restricts which classes
    are generated (scenes cycle through them, so every class is equally frequent).
    """

    seed: int = 0
    size: int = 64
    attribute_probs: tuple = field(default=())
    backgrounds: tuple = field(default=())
    classes: tuple[str, ...] = CLASSES
    noise: float = 5.0
    occluder_prob: float = 0.2

    def __post_init__(self):
        # Accept plain dicts from callers, store hashable tuples.
        for name in ("attribute_probs", "backgrounds"):
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, _freeze(value))
        object.__setattr__(self, "classes", tuple(self.classes))
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown or not self.classes:
            raise ValueError(f"unknown or empty classes {unknown or list(self.classes)}; "
                             f"choose from {list(CLASSES)}")
        for cls, probs in self.attribute_probs:
            if cls not in CLASSES:
                raise ValueError(f"attribute_probs: unknown class {cls!r}")
            for attr, p in probs:
                if attr not in ATTRIBUTES:
                    raise ValueError(f"attribute_probs[{cls!r}]: unknown attribute {attr!r}")
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"attribute_probs[{cls!r}][{attr!r}] = {p} is not in [0, 1]")
        for cls, kinds in self.backgrounds:
            if cls not in CLASSES:
                raise ValueError(f"backgrounds: unknown class {cls!r}")
            bad = [k for k in kinds if k not in BACKGROUNDS]
            if bad or not kinds:
                raise ValueError(f"backgrounds[{cls!r}]: unknown or empty {bad}; "
                                 f"choose from {list(BACKGROUNDS)}")
        if self.size < 16 or self.size % 2:
            raise ValueError(f"size must be an even number >= 16, got {self.size}")

    # -- derived tables -------------------------------------------------------------------
    def probability_table(self) -> np.ndarray:
        """``(10, 18)`` matrix of P(attribute | class) with the overrides applied."""
        table = np.zeros((len(CLASSES), len(ATTRIBUTES)))
        for c, probs in DEFAULT_ATTRIBUTE_PROBS.items():
            for a, p in probs.items():
                table[CLASSES.index(c), ATTRIBUTES.index(a)] = p
        for c, probs in self.attribute_probs:
            for a, p in probs:
                table[CLASSES.index(c), ATTRIBUTES.index(a)] = p
        return table

    def background_choices(self, class_name: str) -> tuple[str, ...]:
        return dict(self.backgrounds).get(class_name, BACKGROUNDS)

    def with_overrides(self, **changes) -> "ToyWorld":
        """A copy with some fields changed; overrides merge with the existing ones."""
        if "attribute_probs" in changes:
            merged = {c: dict(p) for c, p in self.attribute_probs}
            for c, probs in changes["attribute_probs"].items():
                merged.setdefault(c, {}).update(probs)
            changes["attribute_probs"] = merged
        if "backgrounds" in changes:
            changes["backgrounds"] = {**dict(self.backgrounds), **changes["backgrounds"]}
        return dataclasses.replace(self, **changes)

    # -- sampling -------------------------------------------------------------------------
    def scene(self, index: int) -> Scene:
        """Scene ``index``: a pure function of the world and the index."""
        if index < 0:
            raise IndexError(f"scene index must be >= 0, got {index}")
        rng = np.random.default_rng([self.seed, index, 0x5EED])
        class_name = self.classes[index % len(self.classes)]
        label = CLASSES.index(class_name)
        probs = self._table()[label]
        attributes = tuple(bool(x) for x in rng.random(len(ATTRIBUTES)) < probs)
        choices = self.background_choices(class_name)
        background = choices[int(rng.integers(len(choices)))]
        seed = int(rng.integers(2**31 - 1))
        return Scene(index, label, attributes, background, seed)

    def _table(self) -> np.ndarray:
        cached = self.__dict__.get("_table_cache")
        if cached is None:
            cached = self.probability_table()
            object.__setattr__(self, "_table_cache", cached)
        return cached

    def scenes(self, start: int, count: int) -> list[Scene]:
        return [self.scene(i) for i in range(start, start + count)]

    def render(self, scene: Scene, masks: bool = True):
        """``(image uint8 HxWx3, {attribute: bool mask HxW})`` of one scene (without
        ``masks``: the same image, an empty dict)."""
        return render_scene(scene, self.size, self.noise, self.occluder_prob, masks=masks)

    def image(self, index: int) -> np.ndarray:
        return self.render(self.scene(index), masks=False)[0]
