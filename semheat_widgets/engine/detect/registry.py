"""The detectors by name: how a bundle stores its fitted detectors and reads them back.

Each detector class has a ``name``; its fitted state lives in the bundle's
``state.safetensors`` under :func:`state_prefix` (``detector.[task.]name.``) and its scores in
the record column :func:`score_column`. The built-in detectors are listed here; a user's own
detector joins with :func:`register_detector`. Above the detectors' modules, which know
nothing of it.
"""

from __future__ import annotations

import numpy as np

from ...errors import SemheatError
from ..tasks import Task
from .baselines import Combination, Energy, Mahalanobis, MaxSoftmax
from .concept_monitor import ConceptMonitor
from .heatmap_monitor import HeatmapMonitor
from .protocol import Detector


# The built-in detectors, then whatever a user registers.
_registry: dict[str, type[Detector]] = {cls.name: cls for cls in (
    MaxSoftmax, Energy, Mahalanobis, Combination, HeatmapMonitor, ConceptMonitor)}


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Make a detector available by its ``name`` (usable as a class decorator): a bundle that
    stores it can then be read back."""
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise SemheatError(f"register_detector takes a Detector subclass, got {cls!r}")
    _registry[cls.name] = cls
    return cls


def detector_class(name: str) -> type[Detector]:
    if name not in _registry:
        raise SemheatError(f"unknown detector {name!r}; choose from {list(_registry)}")
    return _registry[name]


def detector_labels() -> dict[str, str]:
    """``{name: label}`` of every registered detector, in display order."""
    ranked = sorted(_registry.items(), key=lambda item: item[1].order)
    return {name: cls.label for name, cls in ranked}


def state_prefix(name: str, task: Task | None) -> str:
    """Where a detector's arrays live in a bundle's state: ``detector.[task.]name.``."""
    cls = detector_class(name)
    return f"detector.{task.name}.{name}." if cls.per_task else f"detector.{name}."


def score_column(name: str, task: Task) -> str:
    """The record column holding a detector's scores for a task."""
    return task.column(name) if detector_class(name).per_task else name


def pack(detector: Detector, task: Task | None) -> dict[str, np.ndarray]:
    prefix = state_prefix(detector.name, task)
    return {prefix + k: v for k, v in detector.state().items()}


def unpack(name: str, state: dict, task: Task | None, info: dict | None = None) -> Detector:
    """A fitted detector back from a bundle's state (``info``: what the manifest says of it)."""
    prefix = state_prefix(name, task)
    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    cls = detector_class(name)
    if not mine and cls.state is not Detector.state:
        where = f" for {task.name}" if task is not None else ""
        raise SemheatError(f"the bundle has no fitted {name} detector{where}")
    return cls.from_state(mine, info or {})
