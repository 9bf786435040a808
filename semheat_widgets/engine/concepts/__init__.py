"""What names and finds concepts: the concepts a user names, the ones discovered in an open
vocabulary, the error slices they name, and where in an image the classifier shows them.

- :mod:`.bank` — :class:`ConceptBank`, named concepts embedded by the VLM's text encoder, and
  the default class prompts;
- :mod:`.discover` — concept discovery: the vocabularies (registered per VLM prefix), their
  cached phrase embeddings, and which phrases separate a selection of records from its
  reference (:class:`Discovery`);
- :mod:`.slices` — error slices: the mistakes grouped in CLIP space, each named by discovery
  (:class:`Slice`, :func:`find_slices`);
- :mod:`.cam` — concept activation maps (exact for average-pooled encoders, Grad-CAM otherwise)
  and their overlays; :mod:`.finer_maps` — the second aligner that makes them finer (an earlier
  feature map of the classifier);
- :mod:`.grounding` — whether the maps point at the right place: the pointing game and mask
  IoU against attribute masks, beside baselines (:func:`ground`).

Modules import downward only: ``discover`` <- ``slices``; ``finer_maps`` <- ``cam`` <-
``grounding``; ``bank`` imports none of them. The models they need (the registry, the
classifier) are opened inside functions, from :mod:`..models`.
"""

from ..lazy import lazy_names

# Names load on first use (PEP 562), as in the engine's namespace: a bundle's open vocabulary
# imports the bank and discovery without torch, which only the maps need. (The function
# ``discover`` is not a name here: it would be shadowed by its module, :mod:`.discover`.)
_LAZY = {
    "Concept": "bank", "ConceptBank": "bank", "as_concept_bank": "bank",
    "check_class_names": "bank", "default_class_prompts": "bank",
    "Discovery": "discover", "PhraseEmbeddings": "discover", "Vocabulary": "discover",
    "phrase_embeddings": "discover", "register_vocabulary": "discover",
    "vocabulary_for": "discover",
    "Slice": "slices", "find_slices": "slices",
    "EXACT": "cam", "GRADIENT": "cam", "ConceptMaps": "cam", "bundle_concept_maps": "cam",
    "class_maps": "cam", "concept_maps": "cam",
    "MapAligner": "finer_maps", "fit_map_aligner": "finer_maps", "map_layer": "finer_maps",
    "ground": "grounding",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
