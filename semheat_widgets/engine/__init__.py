"""The analysis engine: from a classifier, a VLM and data to semantic heatmaps, fault
localization and runtime monitors. It knows no widget, no command line and no particular
dataset; models are opened by identifier through an open registry (:mod:`.models.registry`).

The names a notebook or a script needs are here::

    from semheat_widgets.engine import ModelSplit, VLM, ConceptBank, analyze, Bundle
"""

from .lazy import lazy_names

# Names load on first use (module ``__getattr__``, PEP 562): ``import semheat_widgets.engine``
# and everything that only reads a bundle stay free of torch, torchvision and open_clip.
_LAZY = {
    "Bundle": "bundle.core", "Selection": "bundle.queries",
    "KINDS": "heatmaps", "Heatmap": "heatmaps", "FaultLocalizer": "localize",
    "auroc": "metrics", "detection_summary": "metrics", "roc_curve": "metrics",
    "threshold_at_fpr": "metrics",
    "ADVERSARIAL": "tasks", "MISCLASSIFICATION": "tasks", "TASKS": "tasks", "Task": "tasks",
    # from inputs to arrays (stage package extract/) and the analysis (pipeline/)
    "Attack": "extract.attacks",
    "AnalysisConfig": "pipeline.types", "analyze": "pipeline.stages",
    # what a saved bundle says, as figures (reports/)
    "bundle_monitors": "reports.monitors", "detector_scores": "reports.monitors",
    "explain_record": "reports.monitors", "monitor_report": "reports.monitors",
    "localization_report": "reports.localization",
    # what opens and wraps models (stage package models/)
    "LinearAligner": "models.aligner", "ModelSplit": "models.classifier",
    "resolve_device": "models.device", "VLM": "models.vlm",
    "ModelId": "models.registry", "ModelIds": "models.registry",
    "load_classifier": "models.registry", "load_vlm": "models.registry",
    "register_classifier": "models.registry", "register_vlm": "models.registry",
    # what names concepts (stage package concepts/)
    "ConceptBank": "concepts.bank", "default_class_prompts": "concepts.bank",
    # the defect detectors (stage package detect/)
    "Combination": "detect.baselines", "Energy": "detect.baselines",
    "Mahalanobis": "detect.baselines", "MaxSoftmax": "detect.baselines",
    "ConceptMonitor": "detect.concept_monitor", "HeatmapMonitor": "detect.heatmap_monitor",
    "RuntimeMonitor": "detect.heatmap_monitor", "runtime_monitor": "detect.heatmap_monitor",
    "Detector": "detect.protocol", "Evidence": "detect.protocol",
    "detector_labels": "detect.registry", "register_detector": "detect.registry",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "ADVERSARIAL", "AnalysisConfig", "Attack", "Bundle", "Combination", "ConceptBank",
    "ConceptMonitor", "Detector", "Energy", "Evidence", "FaultLocalizer", "Heatmap",
    "HeatmapMonitor", "KINDS",
    "LinearAligner", "MISCLASSIFICATION", "Mahalanobis", "MaxSoftmax", "ModelId", "ModelIds",
    "ModelSplit", "RuntimeMonitor", "Selection", "TASKS", "Task", "VLM", "analyze", "auroc",
    "bundle_monitors", "default_class_prompts", "detection_summary", "detector_labels",
    "detector_scores", "explain_record", "load_classifier", "load_vlm", "localization_report",
    "monitor_report", "register_classifier",
    "register_detector", "register_vlm", "resolve_device", "roc_curve", "runtime_monitor",
    "threshold_at_fpr",
]
