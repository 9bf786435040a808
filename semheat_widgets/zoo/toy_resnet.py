"""The toy classifier: a small ResNet built from torchvision's ``BasicBlock``.

It has the layout of torchvision's ResNets (``conv1 … layer4, avgpool, fc``), so the engine
splits it exactly like a ResNet-18: features ``z`` are the pooled output of ``layer4`` and the
head is ``fc``. Widths (24, 48, 96, 192) and a stride-2 stem keep it at ~0.7M parameters for
64×64 images.
"""

from __future__ import annotations

import copy
import json

import torch
import torch.nn as nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.resnet import BasicBlock, conv1x1

from . import CLASSIFIER_DIR

WIDTHS = (24, 48, 96, 192)


class ToyResNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths=WIDTHS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        layers, inplanes = [], widths[0]
        for i, planes in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes:
                down = nn.Sequential(conv1x1(inplanes, planes, stride), nn.BatchNorm2d(planes))
            layers.append(BasicBlock(inplanes, planes, stride, down))
            inplanes = planes
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def fold_batchnorm(model: ToyResNet) -> ToyResNet:
    """A frozen copy of ``model`` for analysis: every batch norm folded into the convolution
    before it (``w' = w·γ/σ``, ``b' = β − μ·γ/σ``; the function is the same up to float
    rounding, about 1e-6 on the logits). Forward and backward passes skip the normalisation,
    which makes the attacks' gradient steps about 1.3× faster on a CPU. Evaluation only: the
    copy has no batch statistics left to train."""
    model = copy.deepcopy(model).eval()
    pairs = [(model, "conv1", "bn1")]
    for block in model.modules():
        if isinstance(block, BasicBlock):
            pairs += [(block, "conv1", "bn1"), (block, "conv2", "bn2")]
            if block.downsample is not None:
                pairs.append((block.downsample, "0", "1"))
    for owner, conv, bn in pairs:
        setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
        setattr(owner, bn, nn.Identity())
    return model


def classifier_config() -> dict:
    return json.loads((CLASSIFIER_DIR / "config.json").read_text())
