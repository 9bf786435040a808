"""The analysis engine: from a classifier, a VLM and data to semantic heatmaps, fault
localization and runtime monitors. It knows no widget, no command line and no particular
dataset; models are opened by identifier through an open registry (:mod:`.models`).

The names a notebook or a script needs are here::

    from semheat_widgets.engine import ModelSplit, VLM, ConceptBank, analyze, Bundle
"""

from .aligner import LinearAligner
from .attacks import Attack
from .baselines import Combination, Energy, Mahalanobis, MaxSoftmax
from .bundle import Bundle, Selection
from .classifier import ModelSplit
from .concept_monitor import ConceptMonitor
from .concepts import ConceptBank, default_class_prompts
from .detectors import Detector, Evidence, detector_labels, register_detector
from .device import resolve_device
from .figures import (bundle_monitors, detector_scores, explain_record, localization_report,
                      monitor_report)
from .heatmaps import KINDS, Heatmap
from .localize import FaultLocalizer
from .metrics import auroc, detection_summary, roc_curve, threshold_at_fpr
from .models import (ModelId, ModelIds, load_classifier, load_vlm, register_classifier,
                     register_vlm)
from .monitor import HeatmapMonitor, RuntimeMonitor, runtime_monitor
from .pipeline import AnalysisConfig, analyze
from .tasks import ADVERSARIAL, MISCLASSIFICATION, TASKS, Task
from .vlm import VLM

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
