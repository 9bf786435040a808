"""The task monitors every bundle holds, by name (a leaf: the command line and the job options
check a monitor's name without importing any detector)."""

from __future__ import annotations

from ...errors import SemheatError

MONITORS = ("concept", "heatmap")  # the bundle's config picks the one whose flags it reports


def check_monitor_name(name: str) -> str:
    if name not in MONITORS:
        raise SemheatError(f"unknown monitor {name!r}; choose from {list(MONITORS)}")
    return name
