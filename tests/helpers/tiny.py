"""Small models and data made here (no downloads): a tiny open_clip config, a tiny torchvision
ResNet, images whose colour is their class, and the size of the session's toy world."""

from __future__ import annotations

import numpy as np
import torch

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ("red", "green", "blue", "grey")
MINI_WORLD = dict(n_reference=300, n_natural=300, n_shift=100, attack_limit=120)


def make_resnet(num_classes: int = len(CLASSES), seed: int = 0):
    """A tiny torchvision ResNet (BasicBlock, one block per stage)."""
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(seed)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes).eval()


def colour_images(n: int, size: int = 32, seed: int = 0):
    """Noisy images whose dominant colour is their class (red, green, blue, grey)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [128, 128, 128]])
    img = base[labels][:, :, None, None] + rng.normal(0, 40, size=(n, 3, size, size))
    return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)), labels
