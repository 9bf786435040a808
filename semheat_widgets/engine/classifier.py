"""Split a classifier into ``encoder`` (image -> features z) and ``head`` (z -> logits).

For torchvision ResNets (``fc``) and other models whose last layer is a linear layer named
``fc``, ``classifier`` or ``head`` (possibly the last item of a Sequential), the split taps the
input of that layer during one ordinary forward pass, so features and logits cost one pass.
Anything else: pass ``encoder=`` and ``head=`` explicitly.

A :class:`ModelSplit` takes images as float 0..1 (or uint8) tensors and applies the classifier's
own resize and normalisation, so attacks and the VLM can share the same pixel space.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..errors import SemheatError
from .pixels import resize_center_crop, to_float01

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_NAMES = ("fc", "classifier", "head", "heads")


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final linear layer of ``model`` and its dotted name."""
    for name in HEAD_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Linear):
            return name, module
        if isinstance(module, nn.Module):  # e.g. Sequential(Dropout, Linear)
            linears = [(f"{name}.{n}", m) for n, m in module.named_modules()
                       if isinstance(m, nn.Linear)]
            if linears:
                return linears[-1]
    raise SemheatError(f"{type(model).__name__} has no final linear layer named one of "
                       f"{HEAD_NAMES}; pass encoder= and head= explicitly")


class ModelSplit(nn.Module):
    """A classifier as ``head(encoder(x))``, with its input preprocessing built in.

    ``forward(x)`` gives logits; :meth:`features_and_logits` gives both in one pass.
    """

    def __init__(self, model: nn.Module | None = None, *, encoder: Callable | None = None,
                 head: Callable | None = None, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                 input_size: int | None = None, name: str = "classifier"):
        super().__init__()
        if model is None and (encoder is None or head is None):
            raise SemheatError("give a model with a final linear layer, or both encoder= and head=")
        self.model = model
        self.name = name
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        if encoder is not None:
            self._encoder, self.head = encoder, head  # modules among them get registered
            self._tap = None
        else:
            self.head_name, self.head = find_head(model)
            self._tap = self.head
        self._checked = False

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = to_float01(images.to(self.mean.device))
        if self.input_size:
            x = resize_center_crop(x, self.input_size)
        return (x - self.mean) / self.std

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, logits)`` of a batch of 0..1 (or uint8) images, in one forward pass."""
        x = self.preprocess(images)
        if self._tap is None:
            z = self._encoder(x)
            z = z.flatten(1) if z.ndim > 2 else z
            return z, self.head(z)
        captured = {}

        def hook(_module, inputs):
            captured["z"] = inputs[0]

        handle = self._tap.register_forward_pre_hook(hook)
        try:
            logits = self.model(x)
        finally:
            handle.remove()
        if "z" not in captured:
            raise SemheatError(f"{self.head_name} was not called by the model's forward; "
                               f"pass encoder= and head= explicitly")
        z = captured["z"]
        if not self._checked:  # the tapped layer must really be the last step
            if not torch.allclose(self.head(z), logits, atol=1e-4, rtol=1e-3):
                raise SemheatError(f"the model changes the output of {self.head_name}; "
                                   f"pass encoder= and head= explicitly")
            self._checked = True
        return z, logits

    def encoder(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[1]

    @property
    def num_classes(self) -> int:
        weight = getattr(self.head, "weight", None)
        if weight is None:
            raise SemheatError("cannot tell the number of classes of a callable head")
        return int(weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self.mean.device
