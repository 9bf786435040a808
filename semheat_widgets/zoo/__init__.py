"""Bundled toy models: the tiny CLIP and the toy classifiers (safetensors), with their configs."""

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
TINY_CLIP_DIR = ZOO_DIR / "tiny_clip"
CLASSIFIER_DIR = ZOO_DIR / "classifiers"
TOY_CLASSIFIERS = ("clean", "encoder_fault", "head_fault")  # the fault zoo: one bundle each
