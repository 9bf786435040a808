"""What opens and wraps the models an analysis reads: the classifier, the VLM, and the map
between their spaces.

- :mod:`.registry` — model identifiers (:class:`ModelId`, :class:`ModelIds`) and the open
  registry of loaders by prefix (:func:`load_vlm`, :func:`load_classifier`, the
  ``semheat_widgets.models`` entry points);
- :mod:`.vlm` — :class:`VLM`, the wrapper over an open_clip model (batched image and text
  encoders), and the compact weights of a sparse token embedding;
- :mod:`.classifier` — :class:`ModelSplit`, a classifier split into encoder (image -> features)
  and head (features -> logits), and its input size;
- :mod:`.aligner` — :class:`LinearAligner`, the affine map from classifier features to the
  VLM's image-embedding space, fit by ridge regression, and its fidelity;
- :mod:`.device` — :func:`resolve_device`, which device to compute on.

Modules import downward only: ``device`` <- ``vlm``; ``registry``, ``classifier`` and
``aligner`` import none of the others at module level (the registry opens ``vlm`` inside the
open_clip loader, so reading identifiers costs no torch).
"""

from ..lazy import lazy_names

# Names load on first use (PEP 562), as in the engine's namespace: parsing a model id (a bundle's
# manifest does) imports the registry, not torch or open_clip.
_LAZY = {
    "LinearAligner": "aligner", "Fidelity": "aligner", "fit_best_alpha": "aligner",
    "IMAGENET_MEAN": "classifier", "IMAGENET_STD": "classifier", "ModelSplit": "classifier",
    "model_input_size": "classifier",
    "resolve_device": "device",
    "ModelId": "registry", "ModelIds": "registry", "check_vlm_id": "registry",
    "load_classifier": "registry", "load_vlm": "registry",
    "register_classifier": "registry", "register_vlm": "registry",
    "VLM": "vlm",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
