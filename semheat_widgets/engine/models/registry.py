"""Model identifiers, parsed in one place, and an open registry of loaders.

An identifier is ``PREFIX:REST``. Built in: ``open_clip:ARCH:TAG`` (a VLM; ``TAG`` ``none`` =
random weights, offline). Other prefixes are registered by whoever provides the models —
:func:`register_vlm` / :func:`register_classifier` from code, or the ``semheat_widgets.models``
entry-point group of an installed package (the bundled toy zoo registers ``toy:`` that way, so
the engine never imports it). This mirrors open_clip's open model registry.

A bundle records the identifiers of its models (``manifest["models"]``), so the models can be
re-opened later, e.g. to embed a new free-text concept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ...errors import SemheatError

ENTRY_POINTS = "semheat_widgets.models"
ALIASES = {"toy": "toy:tiny-clip"}  # the command line's shorthand for the toy world's VLM

_vlm_loaders: dict[str, Callable] = {}
_classifier_loaders: dict[str, Callable] = {}
_plugins_loaded = False


@dataclass(frozen=True)
class ModelId:
    """A parsed identifier: ``prefix`` chooses the loader, ``parts`` are its arguments."""

    prefix: str
    parts: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> "ModelId":
        text = ALIASES.get(text, text) if isinstance(text, str) else text
        if not isinstance(text, str) or ":" not in text:
            raise SemheatError(f"a model id looks like PREFIX:NAME (e.g. open_clip:RN50:openai "
                               f"or toy:tiny-clip), got {text!r}")
        prefix, *parts = text.split(":")
        if not prefix or not all(parts):
            raise SemheatError(f"model id {text!r} has an empty part")
        return cls(prefix, tuple(parts))

    def __str__(self) -> str:
        return ":".join((self.prefix, *self.parts))


@dataclass(frozen=True)
class ModelIds:
    """The models a bundle was built with."""

    classifier: str
    vlm: str


def register_vlm(prefix: str, loader: Callable) -> None:
    """``loader(parts: tuple[str, ...], device) -> VLM`` for identifiers ``prefix:...``."""
    _vlm_loaders[prefix] = loader


def register_classifier(prefix: str, loader: Callable) -> None:
    """``loader(parts: tuple[str, ...], device) -> ModelSplit`` for identifiers ``prefix:...``."""
    _classifier_loaders[prefix] = loader


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINTS):
        ep.load()()  # each plugin's register() calls register_vlm / register_classifier


def _open_clip(parts: tuple[str, ...], device):
    from .vlm import VLM

    if len(parts) != 2:
        raise SemheatError(f"an open_clip id is open_clip:ARCH:TAG, got "
                           f"{str(ModelId('open_clip', parts))!r}")
    return VLM.create(parts[0], parts[1], device=device)


register_vlm("open_clip", _open_clip)


def _loader(table: dict, model_id: str, what: str):
    parsed = ModelId.parse(model_id)
    if parsed.prefix not in table:
        _load_plugins()
    if parsed.prefix not in table:
        known = ", ".join(sorted(table)) or "none"
        raise SemheatError(f"no {what} loader for {str(parsed)!r} (known prefixes: {known}); "
                           f"pass the {what} explicitly or register a loader")
    return table[parsed.prefix], parsed


def check_vlm_id(model_id: str) -> str:
    """The canonical spelling of a VLM id, checked before any heavy work."""
    _, parsed = _loader(_vlm_loaders, model_id, "VLM")
    return str(parsed)


def load_vlm(model_id: str, device=None):
    """Open the VLM ``model_id`` (``open_clip:ViT-B-32:openai``, ``toy:tiny-clip`` ...)."""
    loader, parsed = _loader(_vlm_loaders, model_id, "VLM")
    return loader(parsed.parts, device)


def load_classifier(model_id: str, device=None):
    """Open the classifier ``model_id`` as a :class:`~.classifier.ModelSplit`."""
    loader, parsed = _loader(_classifier_loaders, model_id, "classifier")
    return loader(parsed.parts, device)
