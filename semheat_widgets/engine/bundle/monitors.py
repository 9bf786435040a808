"""A bundle's fitted detectors and monitors, by task: what the manifest records of each
(``monitor.<task>``), and the detectors rebuilt from the fitted state (``detector.*`` tensors,
see :mod:`..detect.protocol`)."""

from __future__ import annotations

from ...errors import SemheatError, SemheatTypeError
from ..detect.registry import unpack
from ..tasks import TASKS, Task, task_named


def as_task(task) -> Task:
    """A task given as a :class:`Task` or its name."""
    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise SemheatTypeError(f"task must be a task name {list(TASKS)}, got {task!r}")
    return task_named(task)


def monitor_info(manifest: dict, task) -> dict:
    """The manifest's record of ``task``'s monitor (a copy; empty where there is none)."""
    task = as_task(task)
    return dict(manifest.get("monitor", {}).get(task.name, {}))


def detector(manifest: dict, state: dict, name, task):
    """Detector ``name`` of ``task`` (or of no task) rebuilt from ``state``."""
    if not isinstance(name, str):
        raise SemheatTypeError(f"detector name must be a string, got {name!r}")
    task = as_task(task) if task is not None else None
    info = monitor_info(manifest, task) if task else {}
    info = {**info, **info.get("detectors", {}).get(name, {})}  # what it chose, if recorded
    return unpack(name, state, task, info)


def monitor(manifest: dict, state: dict, task):
    """``task``'s fitted monitor, refused in one line where the bundle has none."""
    task = as_task(task)
    info = monitor_info(manifest, task)
    if not info.get("available", False):
        raise SemheatError(f"the bundle has no fitted {task.name} monitor")
    return detector(manifest, state, info.get("monitor", "heatmap"), task)


def fitted_tasks(manifest: dict) -> list[Task]:
    """The tasks whose monitor the bundle has fitted."""
    return [t for t in TASKS.values() if monitor_info(manifest, t).get("available", False)]
