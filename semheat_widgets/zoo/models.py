"""Load the bundled toy models: the tiny CLIP and the three classifiers of the fault zoo.

:func:`register` makes them available to the engine by identifier (``toy:tiny-clip``,
``toy:clean`` ...); it is this package's ``semheat_widgets.models`` entry point, so the engine
finds the toy zoo without importing it.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from ..engine.models.classifier import ModelSplit
from ..engine.models.device import resolve_device
from ..engine.models.registry import register_classifier, register_vlm
from ..engine.models.vlm import VLM
from ..errors import SemheatError
from . import CLASSIFIER_DIR, TINY_CLIP_DIR, TOY_CLASSIFIERS
from .faults import perturb_head
from .toy_resnet import ToyResNet, classifier_config, fold_batchnorm


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


def toy_split(model: ToyResNet, name: str, device=None, *, frozen: bool = False) -> ModelSplit:
    """A toy ResNet as a :class:`ModelSplit` with the toy world's preprocessing.

    ``frozen``: a copy for analyses that never train it, with its batch norms folded into the
    convolutions (:func:`~.toy_resnet.fold_batchnorm`) and its weights in channels-last order —
    the same function to float rounding, about 2× faster forward and 1.6× forward and backward
    (the attacks) on a CPU. Not for training: the copy has no batch norms left. Without it the
    model is used as given (and can be fine-tuned)."""
    cfg = classifier_config()
    if frozen:
        model = fold_batchnorm(model).to(memory_format=torch.channels_last)
    split = ModelSplit(model.eval(), mean=cfg["mean"], std=cfg["std"],
                       input_size=cfg["input_size"], name=name)
    return split.to(resolve_device(device)).eval()


def toy_classifier(name: str = "clean", device=None, *, frozen: bool = False) -> ModelSplit:
    """A toy classifier as a :class:`ModelSplit` (inputs: 64×64 images, 0..1 or uint8);
    ``frozen``: see :func:`toy_split`."""
    return toy_split(load_toy_resnet(name), f"toy:{name}", device, frozen=frozen)


def toy_vlm(device=None) -> VLM:
    """The tiny CLIP trained by the project on the toy world (bundled, offline). Its image
    tower is a small convolutional ResNet, kept in channels-last order (1.4× faster on a
    CPU; the same embeddings to float rounding)."""
    vlm = VLM.from_local(TINY_CLIP_DIR, device=device)
    vlm.model.visual.to(memory_format=torch.channels_last)
    return vlm


def _one_part(kind: str, parts: tuple[str, ...]) -> str:
    if len(parts) != 1:
        raise SemheatError(f"a toy {kind} id is toy:NAME, got toy:{':'.join(parts)}")
    return parts[0]


def _vlm_loader(parts, device):
    if _one_part("VLM", parts) != "tiny-clip":
        raise SemheatError(f"the toy world has one VLM, toy:tiny-clip (got toy:{parts[0]})")
    return toy_vlm(device)


def register() -> None:
    """Make the toy models loadable as ``toy:tiny-clip`` and ``toy:<classifier>``."""
    register_vlm("toy", _vlm_loader)
    from ..data.vocab import english_vocabulary, toy_vocabulary
    from ..engine.concepts.discover import register_vocabulary

    register_vocabulary("toy", lambda parts: toy_vocabulary())
    register_vocabulary("open_clip", lambda parts: english_vocabulary())
    register_classifier("toy", lambda parts, device: toy_classifier(_one_part("classifier",
                                                                              parts), device))
