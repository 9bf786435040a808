"""Shared fixtures: a tiny randomly initialised open_clip model, a tiny torchvision ResNet,
and small image sets generated here (no downloads)."""

from __future__ import annotations

import contextlib
import os
import signal

import numpy as np
import pytest
import torch

os.environ.setdefault("TQDM_DISABLE", "1")

TINY_CLIP_CFG = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
CLASSES = ("red", "green", "blue", "grey")


@pytest.fixture(scope="session")
def tiny_vlm():
    """A genuine open_clip CLIP from a small custom config, randomly initialised."""
    import open_clip
    from open_clip.model import CLIP

    from semheat_widgets.engine.models.vlm import VLM

    torch.manual_seed(0)
    model = CLIP(**TINY_CLIP_CFG)
    return VLM(model, open_clip.tokenizer.SimpleTokenizer(context_length=16), image_size=32,
               name="test:tiny-clip", device="cpu")


def make_resnet(num_classes: int = len(CLASSES), seed: int = 0):
    """A tiny torchvision ResNet (BasicBlock, one block per stage)."""
    from torchvision.models.resnet import BasicBlock, ResNet

    torch.manual_seed(seed)
    return ResNet(BasicBlock, [1, 1, 1, 1], num_classes=num_classes).eval()


@pytest.fixture(scope="session")
def tiny_split():
    from semheat_widgets.engine.models.classifier import ModelSplit

    return ModelSplit(make_resnet(), input_size=32, name="test:resnet10")


def colour_images(n: int, size: int = 32, seed: int = 0):
    """Noisy images whose dominant colour is their class (red, green, blue, grey)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % len(CLASSES)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200], [128, 128, 128]])
    img = base[labels][:, :, None, None] + rng.normal(0, 40, size=(n, 3, size, size))
    return torch.from_numpy(np.clip(img, 0, 255).astype(np.uint8)), labels


@pytest.fixture(scope="session")
def colour_dataset():
    from torch.utils.data import TensorDataset

    images, labels = colour_images(96)
    return TensorDataset(images, torch.from_numpy(labels))


MINI_WORLD = dict(n_reference=300, n_natural=300, n_shift=100, attack_limit=120)


@pytest.fixture(scope="session")
def mini_world(tmp_path_factory):
    """A small toy world built once per test session with the bundled models."""
    from semheat_widgets.zoo.build import build_toy_world

    return build_toy_world(tmp_path_factory.mktemp("toy") / "world", progress=False,
                           **MINI_WORLD)


@contextlib.contextmanager
def no_hang(seconds: int = 20):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``, e.g.
    when a regression opens a FIFO. Main thread only (SIGALRM)."""
    def expired(*_):
        raise TimeoutError(f"still blocked after {seconds} s (a hang?)")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="session")
def small_bundle(tiny_split, tiny_vlm, colour_dataset, tmp_path_factory):
    """The path of one small saved bundle (FGSM on 16 inputs, four concepts), analysed once per
    session and shared by the tests that only read it or copy it before damaging it."""
    from semheat_widgets.engine.extract.attacks import Attack
    from semheat_widgets.engine.concepts.bank import ConceptBank
    from semheat_widgets.engine.pipeline import AnalysisConfig, analyze

    cfg = AnalysisConfig(attacks=(Attack("fgsm", 8 / 255),), attack_limit=16, batch_size=48,
                         thumb_size=8)
    b = analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                concepts=ConceptBank(["red", "green", "blue", "dark"]), config=cfg,
                name="small", progress=False)
    return b.save(tmp_path_factory.mktemp("small") / "small")
