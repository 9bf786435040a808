"""Stage 1 of the engine: from inputs to arrays.

- :mod:`.inputs` — what users have (PIL images, arrays, tensors of any size and mode) as what
  the engine takes;
- :mod:`.attacks` — the L∞ attacks (FGSM, PGD) applied to a batch before its forward passes;
- :mod:`.local` — one pass over a dataset in this process: classifier features and logits,
  VLM image embeddings, thumbnails (:func:`extract`);
- :mod:`.on_ray` — the same records on a Ray cluster (:class:`RayExtractor`).

Modules import downward only: ``inputs``, ``attacks`` <- ``local`` <- ``on_ray`` (pixels, one
way to scale, resize and crop images, are the engine's: :mod:`..pixels`).
"""

from ..lazy import lazy_names

_LAZY = {
    "Attack": "attacks", "ArrayImages": "inputs", "PreparedImages": "inputs",
    "image_tensor": "inputs", "to_rgb01": "inputs", "Extracted": "local", "extract": "local",
    "forward_batch": "local", "RayExtractor": "on_ray", "require_ray": "on_ray",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
