"""The analysis: from a classifier, a VLM, concepts and a dataset to a bundle.

- :mod:`.types` — the stage types, a leaf: the options (:class:`AnalysisConfig`) and what one
  stage hands the next (:class:`Records`, :class:`ConceptScores`);
- :mod:`.stages` — the stage functions and :func:`analyze`, which runs them in order
  (extraction, concept scores, localization, the detectors of :mod:`..detect`, the bundle).

``types`` <- ``stages``; the detectors' stage (:mod:`..detect.fit`) imports ``types`` only.
"""

from ..lazy import lazy_names

_LAZY = {
    "AnalysisConfig": "types", "ConceptScores": "types", "Records": "types",
    "analyze": "stages", "assemble": "stages", "assign_splits": "stages",
    "check_labels": "stages", "extract_records": "stages", "localize_faults": "stages",
    "score_concepts": "stages",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
