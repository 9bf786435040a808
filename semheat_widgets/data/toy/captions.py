"""Words for the toy world: attribute phrases, captions for VLM training, concept prompts.

Captions name a *random subset* of the present attributes, and some name attributes only,
without the class: captions that listed every attribute taught a tiny CLIP far less about each
attribute (a measured fact from the project's feasibility run).
"""

from __future__ import annotations

import numpy as np

from .world import ATTRIBUTES, CLASSES, Scene

# Several phrasings per attribute; the first is the canonical one.
ATTRIBUTE_PHRASES: dict[str, tuple[str, ...]] = {
    "long-snout": ("a long snout", "an elongated snout", "a big snout"),
    "wings": ("wings", "a wing", "spread wings"),
    "wheels": ("wheels", "round wheels", "black wheels"),
    "text": ("text", "letters", "written letters"),
    "horns": ("horns", "antlers", "branching horns"),
    "floppy-ears": ("floppy ears", "droopy ears", "hanging ears"),
    "ears": ("pointy ears", "upright ears", "ears"),
    "colored-eyes": ("colored eyes", "bright eyes", "colorful eyes"),
    "tail": ("a tail", "tail", "a curved tail"),
    "mane": ("a mane", "a dark mane", "mane"),
    "beak": ("a beak", "an orange beak", "beak"),
    "hairy": ("hairy", "furry", "fur"),
    "metallic": ("metallic", "shiny metal", "metal"),
    "rectangular": ("rectangular", "a rectangular box", "boxy"),
    "wet": ("wet", "on water", "in the water"),
    "long": ("long", "elongated", "a long body"),
    "tall": ("tall", "a tall pole", "towering"),
    "patterned": ("patterned", "stripes or spots", "a pattern"),
}
assert tuple(ATTRIBUTE_PHRASES) == ATTRIBUTES

CLASS_TEMPLATES = ("a photo of a {}.", "a {}.", "a picture of a {}.")
ATTRIBUTE_TEMPLATES = ("{}", "something with {}", "a photo of something with {}")


def class_prompts(name: str) -> list[str]:
    return [t.format(name) for t in CLASS_TEMPLATES]


def attribute_prompts(attr: str) -> list[str]:
    return [t.format(p) for p in ATTRIBUTE_PHRASES[attr] for t in ATTRIBUTE_TEMPLATES]


def describe(scene: Scene, rng: np.random.Generator) -> tuple[str, list[str]]:
    """A random caption of ``scene`` and the attributes it names.

    The caption names the class and/or a random subset (up to three) of the present
    attributes, each in one of its phrasings.
    """
    present = list(scene.present)
    k = int(rng.integers(0, min(3, len(present)) + 1)) if present else 0
    chosen = [present[i] for i in rng.permutation(len(present))[:k]]
    words = [ATTRIBUTE_PHRASES[a][int(rng.integers(3))] for a in chosen]
    if len(words) > 1:
        listed = ", ".join(words[:-1]) + " and " + words[-1]
    else:
        listed = words[0] if words else ""
    if words and rng.random() < 0.3:  # attribute-only caption
        return (listed if rng.random() < 0.5 else f"something with {listed}"), chosen
    head = CLASS_TEMPLATES[int(rng.integers(len(CLASS_TEMPLATES)))].format(scene.class_name)
    return (head if not words else head.rstrip(".") + f" with {listed}."), chosen


def caption(scene: Scene, rng: np.random.Generator) -> str:
    return describe(scene, rng)[0]


def vocabulary_texts() -> list[str]:
    """Every text a toy VLM is trained or prompted with (to learn its used tokens)."""
    texts = [p for c in CLASSES for p in class_prompts(c)]
    texts += [p for a in ATTRIBUTES for p in attribute_prompts(a)]
    texts += [" and ", ", "]
    return texts
