"""A toy world's description, ``DIR/world.json``: its schema and readers.

Kept apart from :mod:`.build` (which imports the models and the analysis pipeline) so that the
commands that only read a world's bundles — ``semheat info``, ``localize``, ``monitor``,
``report`` — import neither torch nor open_clip.
"""

from __future__ import annotations

from pathlib import Path

from ..engine.bundle.json_schema import validate_json
from ..errors import SemheatError
from ..safe_io import WORLD_FORMAT, owned_kind, read_json

WORLD_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "semheat toy world",
    "type": "object",
    "required": ["format", "bundles", "primary"],
    "properties": {
        "format": {"const": WORLD_FORMAT},
        "bundles": {"type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$"}},
        "primary": {"type": "string"},
        "n_reference": {"type": "integer", "minimum": 0},
        "n_natural": {"type": "integer", "minimum": 0},
        "n_shift": {"type": "integer", "minimum": 0},
        "attack_limit": {"type": ["integer", "null"], "minimum": 0},
        "similarity": {"enum": ["cosine", "euclidean"]},
        "monitor": {"enum": ["concept", "heatmap"]},
        "seed": {"type": "integer"},
        "build_seconds": {"type": "object", "additionalProperties": {"type": "number"}},
    },
}


def default_toy_dir() -> Path:
    """Where the toy world lives unless told otherwise: ``$SEMHEAT_TOY_DIR`` or the user cache."""
    import os

    env = os.environ.get("SEMHEAT_TOY_DIR")
    return Path(env) if env else Path.home() / ".cache" / "semheat_widgets" / "toy_world"


def read_world(path) -> dict:
    """A toy world's ``world.json``, checked against :data:`WORLD_SCHEMA` (one-line errors)."""
    file = Path(path) / "world.json"
    world = read_json(file, "toy world description")
    if not isinstance(world, dict) or world.get("format") != WORLD_FORMAT:
        found = world.get("format") if isinstance(world, dict) else type(world).__name__
        raise SemheatError(f"{file}: field format: not a toy world ({found!r})")
    validate_json(world, WORLD_SCHEMA, file)
    if world["primary"] not in world["bundles"]:
        raise SemheatError(f"{file}: field primary: {world['primary']!r} is not one of its "
                           f"bundles {world['bundles']}")
    return world


def is_world(path) -> bool:
    """Whether ``path`` claims to be a toy world (its ``world.json`` is checked on reading)."""
    import os

    return os.path.lexists(Path(path) / "world.json")


def world_bundles(path) -> dict[str, Path]:
    """``{name: bundle path}`` of the bundles of a toy world that are built."""
    path = Path(path)
    return {name: path / name for name in read_world(path)["bundles"]
            if owned_kind(path / name) == "bundle"}


def missing_bundles(path) -> list[str]:
    path = Path(path)
    return [n for n in read_world(path)["bundles"] if owned_kind(path / n) != "bundle"]
