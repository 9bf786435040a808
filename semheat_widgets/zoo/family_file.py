"""A fault family's description, ``DIR/family.json``: its schema and reader.

Declared once in :data:`FAMILY_SCHEMA` and checked by the same schema interpreter as bundle
manifests and ``world.json`` (:func:`..engine.bundle.json_schema.validate_json`). Kept apart from
:mod:`.family_build`, which imports the models, so reading a family imports no torch.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..engine.bundle.json_schema import validate_json
from ..errors import SemheatError
from ..safe_io import FAMILY_FORMAT, read_json

# a bundle of the family is a plain folder inside it: no separators, no leading dot
BUNDLE_NAME = "^[A-Za-z0-9][A-Za-z0-9_-]*$"

FAMILY_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "semheat fault family",
    "type": "object",
    "required": ["format", "bundles"],
    "properties": {
        "format": {"const": FAMILY_FORMAT},
        "sizes": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}},
        "round": {"enum": [1, 2]},
        "bundles": {
            "type": "object",
            "propertyNames": {"pattern": BUNDLE_NAME},
            "additionalProperties": {
                "type": "object", "required": ["fault", "role"],
                "properties": {
                    "fault": {"enum": ["encoder", "head"]},
                    "role": {"enum": ["development", "held out"]},
                    "concept": {"type": "string"}, "class": {"type": "string"},
                    "kind": {"type": "string"},
                    "seconds": {"type": "number", "minimum": 0}}}}},
}


def check_family(info, path) -> None:
    """``family.json`` against :data:`FAMILY_SCHEMA`; the first problem is one line naming the
    field (a bundle name that would leave the folder is one of them)."""
    if isinstance(info, dict) and isinstance(info.get("bundles"), dict):
        for name in info["bundles"]:  # said in the user's words, not as a regex mismatch
            if not isinstance(name, str) or not re.match(BUNDLE_NAME, name):
                raise SemheatError(f"{path}: bundle name {name!r} is not a folder inside the "
                                   f"family")
    elif isinstance(info, dict) and "bundles" in info:
        raise SemheatError(f"{path}: field bundles must be a mapping of bundle names, got "
                           f"{type(info['bundles']).__name__}")
    validate_json(info, FAMILY_SCHEMA, path)


def read_family(directory) -> dict:
    """``DIR/family.json``, checked; one line if it is missing, not ours, or damaged."""
    path = Path(directory) / "family.json"
    info = read_json(path, "fault family description")
    if not isinstance(info, dict) or info.get("format") != FAMILY_FORMAT:
        raise SemheatError(f"{directory} is not a fault family (no family.json)")
    check_family(info, path)
    return info
