"""Every place in a JSON-like object, for tests that damage a manifest one place at a time."""

from __future__ import annotations


def json_paths(obj, prefix=(), items: int | None = None):
    """The key paths of ``obj`` (itself first), lists walked to their first ``items``."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from json_paths(v, prefix + (k,), items)
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:items]):
            yield from json_paths(v, prefix + (i,), items)
