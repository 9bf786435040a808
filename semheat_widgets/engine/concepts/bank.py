"""The concept bank: named, human-readable concepts embedded by the VLM's text encoder.

Concept ``c_j`` with prompts ``p`` has the embedding ``t_j = norm(mean_p norm(g_T(p)))``.
Concepts are open-vocabulary: :meth:`ConceptBank.add` works at any time, and embeddings are
cached per prompt, so re-adding or re-ordering costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ...arguments import clean_name
from ...errors import SemheatError
from ..vectors import unit_rows


@dataclass(frozen=True)
class Concept:
    name: str
    prompts: tuple[str, ...]


def _clean(text, what: str) -> str:
    """A name or prompt normalised (NFC, no zero-width or bidi controls), never empty."""
    return clean_name(text, what)


class ConceptBank:
    """An ordered set of concepts, each with one or more prompts.

    ``templates`` (e.g. ``("a photo of {}", "{}")``) expand every prompt; the default ``"{}"``
    keeps prompts as they are. :meth:`to_json` records the expanded prompts, so a saved bank
    embeds exactly the same texts when loaded again.
    """

    def __init__(self, concepts: Iterable = (), templates: Sequence[str] = ("{}",)):
        self.templates = tuple(templates)
        for t in self.templates:
            if "{}" not in t:
                raise SemheatError(f"template {t!r} has no '{{}}' placeholder")
        self._concepts: list[Concept] = []
        self._cache: dict[tuple[str, str], np.ndarray] = {}  # (vlm name, prompt) -> vector
        for item in concepts:
            if isinstance(item, str):
                self.add(item)
            elif isinstance(item, Concept):
                self.add(item.name, item.prompts)
            else:
                name, prompts = item
                self.add(name, prompts)

    def add(self, name: str, prompts: Sequence[str] | str | None = None) -> Concept:
        """Add a concept (its prompts default to its name); returns it."""
        name = _clean(name, "concept name")
        if name in self.names:
            raise SemheatError(f"concept {name!r} already exists")
        if prompts is None:
            prompts = [name]
        elif isinstance(prompts, str):
            prompts = [prompts]
        prompts = tuple(_clean(p, f"prompt of concept {name!r}") for p in prompts)
        if not prompts:
            raise SemheatError(f"concept {name!r} needs at least one prompt")
        concept = Concept(name, prompts)
        self._concepts.append(concept)
        return concept

    @property
    def names(self) -> list[str]:
        return [c.name for c in self._concepts]

    @property
    def concepts(self) -> list[Concept]:
        return list(self._concepts)

    def __len__(self) -> int:
        return len(self._concepts)

    def __iter__(self):
        return iter(self._concepts)

    def __getitem__(self, name: str) -> Concept:
        for c in self._concepts:
            if c.name == name:
                return c
        raise SemheatError(f"unknown concept {name!r}")

    def expanded_prompts(self, concept: Concept) -> list[str]:
        return [t.format(p) for p in concept.prompts for t in self.templates]

    def embed(self, vlm, names: Sequence[str] | None = None) -> np.ndarray:
        """``float32 C x m`` unit vectors of the chosen concepts (all by default)."""
        chosen = self._concepts if names is None else [self[n] for n in names]
        todo = sorted({p for c in chosen for p in self.expanded_prompts(c)
                       if (vlm.name, p) not in self._cache})
        if todo:
            for p, v in zip(todo, vlm.encode_texts(todo).numpy()):
                self._cache[(vlm.name, p)] = v
        if not chosen:
            return np.zeros((0, vlm.embed_dim), np.float32)
        means = np.stack([np.mean([self._cache[(vlm.name, p)] for p in self.expanded_prompts(c)],
                                  axis=0) for c in chosen])
        return unit_rows(means).astype(np.float32)  # t_j = norm(mean_p norm(g_T(p)))

    def to_json(self) -> list[dict]:
        return [{"name": c.name, "prompts": self.expanded_prompts(c)} for c in self._concepts]


CLASS_PROMPT = "a photo of a {}."  # CLIP's usual zero-shot prompt


def default_class_prompts(classes) -> dict[str, list[str]]:
    """One zero-shot prompt per class name, for when a dataset brings none."""
    return {c: [CLASS_PROMPT.format(c)] for c in classes}


def as_concept_bank(concepts) -> ConceptBank:
    """A :class:`ConceptBank` from what a user has: a bank, a list of names (each its own
    prompt), a dict ``name -> prompt(s)``, or a single name."""
    if isinstance(concepts, ConceptBank):
        return concepts
    if concepts is None:
        raise SemheatError("give concepts: a list of names, a dict name -> prompts, or a "
                           "ConceptBank")
    if isinstance(concepts, str):
        concepts = [concepts]
    if isinstance(concepts, dict):
        return ConceptBank(concepts.items())
    try:
        return ConceptBank(list(concepts))
    except TypeError:
        raise SemheatError(f"concepts must be a list of names, a dict name -> prompts or a "
                           f"ConceptBank, got {type(concepts).__name__}") from None


def check_class_names(classes) -> list[str]:
    """Class names as a list of unique, non-empty strings (one line naming a duplicate)."""
    names = [str(c) for c in classes]
    seen = set()
    for c in names:
        if not c.strip():
            raise SemheatError("class names must be non-empty strings")
        if c in seen:
            raise SemheatError(f"class name {c!r} appears {names.count(c)} times; class names "
                               f"must be unique")
        seen.add(c)
    return names
