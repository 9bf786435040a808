"""Stage 4 of the engine: the defect detectors.

- :mod:`.protocol` — the :class:`Detector` protocol and the :class:`Evidence` detectors see;
- :mod:`.heatmap_monitor` — the paper's heatmap monitor (Hu et al., CAIN 2025) and the
  :class:`RuntimeMonitor` that runs a monitor next to the classifier;
- :mod:`.signals` — the nine concept-space signals; :mod:`.concept_monitor` — their stack, the
  :class:`ConceptMonitor`;
- :mod:`.baselines` — maximum softmax, energy, Mahalanobis and the logistic combination;
- :mod:`.names` — the task monitors' names (a leaf the command line reads);
- :mod:`.registry` — the detectors by name: how a bundle's fitted detectors are stored and
  rebuilt, and where a user's own detector registers;
- :mod:`.fit` — the stage itself: every detector fitted, calibrated and run on a pipeline's
  records (:func:`fit_detectors`).

Modules import downward only: ``names``, ``protocol`` <- the detectors <- ``registry`` <-
``fit``.
"""

from ..lazy import lazy_names

# Names load on first use (PEP 562), as in the engine's namespace: reading a bundle's fitted
# monitor imports the protocol and that monitor's module, not every detector.
_LAZY = {
    "Combination": "baselines", "Energy": "baselines", "Mahalanobis": "baselines",
    "MaxSoftmax": "baselines", "best_baseline": "baselines",
    "ConceptMonitor": "concept_monitor", "Explanation": "concept_monitor",
    "top_reasons": "concept_monitor",
    "SIGNALS": "signals", "SIGNAL_KEYS": "signals",
    "Detection": "fit", "MONITORS": "names", "check_monitor_name": "names",
    "fit_detectors": "fit",
    "HeatmapMonitor": "heatmap_monitor", "RuntimeMonitor": "heatmap_monitor",
    "defect_score": "heatmap_monitor", "runtime_monitor": "heatmap_monitor",
    "Detector": "protocol", "Evidence": "protocol", "RowView": "protocol",
    "detector_class": "registry", "detector_labels": "registry",
    "register_detector": "registry", "score_column": "registry",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
