"""One scene of the toy world: its class, attributes, background and seed (a leaf, read by the
world that samples scenes and by the renderer that draws them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..names import RIVAL10_ATTRIBUTES, RIVAL10_CLASSES

CLASSES = RIVAL10_CLASSES
ATTRIBUTES = RIVAL10_ATTRIBUTES
BACKGROUNDS = ("sky", "grass", "sand", "road", "indoor", "dusk")


@dataclass(frozen=True)
class Scene:
    """Everything that decides one image: its class, attributes, background and seed."""

    index: int
    label: int
    attributes: tuple[bool, ...]
    background: str
    seed: int

    @property
    def class_name(self) -> str:
        return CLASSES[self.label]

    @property
    def present(self) -> tuple[str, ...]:
        return tuple(a for a, on in zip(ATTRIBUTES, self.attributes) if on)

    def with_attribute(self, name: str, present: bool) -> "Scene":
        """The same scene with one attribute switched on or off (all else unchanged)."""
        flags = list(self.attributes)
        flags[ATTRIBUTES.index(name)] = present
        return dataclasses.replace(self, attributes=tuple(flags))
