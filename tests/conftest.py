"""Shared fixtures: a tiny randomly initialised open_clip model, a tiny torchvision ResNet,
small image sets generated here (no downloads), a small toy world and a small saved bundle.
Plain helpers live in ``tests/helpers``."""

from __future__ import annotations

import os

import pytest
import torch

from helpers.tiny import CLASSES, MINI_WORLD, TINY_CLIP_CFG, colour_images, make_resnet

os.environ.setdefault("TQDM_DISABLE", "1")

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


@pytest.fixture(scope="session")
def tiny_split():
    from semheat_widgets.engine.models.classifier import ModelSplit

    return ModelSplit(make_resnet(), input_size=32, name="test:resnet10")


@pytest.fixture(scope="session")
def colour_dataset():
    from torch.utils.data import TensorDataset

    images, labels = colour_images(96)
    return TensorDataset(images, torch.from_numpy(labels))


@pytest.fixture(scope="session")
def mini_world(tmp_path_factory):
    """A small toy world built once per test session with the bundled models."""
    from semheat_widgets.zoo.build import build_toy_world

    return build_toy_world(tmp_path_factory.mktemp("toy") / "world", progress=False,
                           **MINI_WORLD)


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
