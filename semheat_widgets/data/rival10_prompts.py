"""Text prompts for the 18 RIVAL10 attributes and the 10 classes, in this project's wording.

Each attribute has a few short phrasings so that its concept embedding (the mean over prompts)
does not hinge on one sentence. Plain data, kept in ``rival10_prompts.json`` beside this file:
the engine's concept bank is built from it by
:func:`semheat_widgets.workflows.datasets.rival10_concepts`.
"""

from __future__ import annotations

import json
from pathlib import Path

_PROMPTS = json.loads((Path(__file__).with_name("rival10_prompts.json")).read_text("utf-8"))

RIVAL10_PROMPTS: dict[str, list[str]] = _PROMPTS["attributes"]
"""Attribute name -> 3-5 prompts, in the order of :data:`RIVAL10_ATTRIBUTES`."""

RIVAL10_CLASS_PROMPTS: dict[str, list[str]] = _PROMPTS["classes"]
"""Class name -> a few prompts, in the order of :data:`RIVAL10_CLASSES`."""
