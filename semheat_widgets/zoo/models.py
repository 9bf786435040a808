"""Load the bundled toy models: the tiny CLIP and the three classifiers of the fault zoo."""

from __future__ import annotations

import copy
from pathlib import Path

from ..engine.split import ModelSplit
from ..engine.vlm import VLM
from ..errors import SemheatError
from . import CLASSIFIER_DIR
from .faults import perturb_head
from .toy_resnet import ToyResNet, classifier_config

TOY_CLASSIFIERS = ("clean", "encoder_fault", "head_fault")


def load_toy_resnet(name: str, directory=CLASSIFIER_DIR) -> ToyResNet:
    """The toy ResNet ``name`` with its weights (safetensors, fp16 on disk, fp32 in memory)."""
    from safetensors.torch import load_file

    if name not in TOY_CLASSIFIERS:
        raise SemheatError(f"unknown toy classifier {name!r}; choose from {TOY_CLASSIFIERS}")
    base = "clean" if name == "head_fault" else name
    path = Path(directory) / f"{base}.safetensors"
    if not path.is_file():
        raise SemheatError(f"bundled weights missing: {path} (run the zoo training scripts)")
    cfg = classifier_config()
    model = ToyResNet(widths=tuple(cfg["widths"]))
    model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    if name == "head_fault":
        model = copy.deepcopy(model)
        model.fc = perturb_head(model.fc)
    return model.eval()


def toy_classifier(name: str = "clean", device=None) -> ModelSplit:
    """A toy classifier as a :class:`ModelSplit` (inputs: 64×64 images, 0..1 or uint8)."""
    from ..engine.vlm import resolve_device

    cfg = classifier_config()
    split = ModelSplit(load_toy_resnet(name), mean=cfg["mean"], std=cfg["std"],
                       input_size=cfg["input_size"], name=f"toy:{name}")
    return split.to(resolve_device(device)).eval()


def toy_vlm(device=None) -> VLM:
    return VLM.toy(device=device)
