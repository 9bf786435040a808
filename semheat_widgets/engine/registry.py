"""Re-open the models a bundle was built with, from the identifiers in its manifest.

Identifiers: ``toy:tiny-clip`` and ``toy:<classifier>`` for the bundled toy world,
``open_clip:<ARCH>:<TAG>`` for open_clip models (``none`` = random weights).
"""

from __future__ import annotations

from ..errors import SemheatError


def load_vlm(model_id: str, device=None):
    from .vlm import VLM

    if model_id == "toy:tiny-clip":
        return VLM.toy(device=device)
    parts = model_id.split(":")
    if parts[0] == "open_clip" and len(parts) == 3:
        return VLM.create(parts[1], parts[2], device=device)
    raise SemheatError(f"cannot re-open VLM {model_id!r}; pass the VLM explicitly")


def load_classifier(model_id: str, device=None):
    if model_id.startswith("toy:"):
        from ..zoo.models import toy_classifier

        return toy_classifier(model_id.split(":", 1)[1], device)
    raise SemheatError(f"cannot re-open classifier {model_id!r}; pass it explicitly")


def bundle_vlm(bundle, device=None):
    """The VLM a bundle was built with (needed to embed new free-text concepts)."""
    model_id = bundle.manifest.get("models", {}).get("vlm")
    if not model_id:
        raise SemheatError("the bundle does not record its VLM")
    return load_vlm(model_id, device)
