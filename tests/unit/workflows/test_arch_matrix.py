"""The supported-architecture matrix (docs/your_own_model.md): torchvision architectures with
random weights, an ``nn.Sequential`` and a dict-returning model, each split by
:class:`ModelSplit` without help and fed every input kind a user has (PIL RGB / grayscale /
RGBA of mixed sizes, uint8 and float tensors, grayscale tensors, normalised floats, H x W x C
arrays) through one ``DataLoader``; a full ``sw.analyze`` on a few of them (all: ``slow``)."""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torchvision.models as tvm
from PIL import Image
from torch.utils.data import DataLoader

import semheat_widgets as sw
from semheat_widgets.engine import ModelSplit
from semheat_widgets.engine.extract.inputs import PreparedImages
from semheat_widgets.errors import SemheatError

K = 5
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class DictNet(nn.Module):
    """Returns a dict; its last layer is called ``out`` and a temperature follows it."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(8, K)

    def forward(self, x):
        z = self.body(x)
        return {"features": z, "logits": self.out(z) / 1.5}


def _sequential():
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, K))


def _vit():  # a small torchvision ViT; its input size (32) is read from the model
    return tvm.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                 hidden_dim=32, mlp_dim=64, num_classes=K)


BUILDERS = {
    "resnet18": lambda: tvm.resnet18(num_classes=K),
    "mobilenet_v2": lambda: tvm.mobilenet_v2(num_classes=K),
    "mobilenet_v3_small": lambda: tvm.mobilenet_v3_small(num_classes=K),
    "efficientnet_b0": lambda: tvm.efficientnet_b0(num_classes=K),
    "shufflenet_v2_x0_5": lambda: tvm.shufflenet_v2_x0_5(num_classes=K),
    "mnasnet0_5": lambda: tvm.mnasnet0_5(num_classes=K),
    "regnet_x_400mf": lambda: tvm.regnet_x_400mf(num_classes=K),
    "regnet_y_400mf": lambda: tvm.regnet_y_400mf(num_classes=K),
    "googlenet": lambda: tvm.googlenet(num_classes=K, aux_logits=False, init_weights=False),
    "convnext_tiny": lambda: tvm.convnext_tiny(num_classes=K),
    "vit (torchvision VisionTransformer)": _vit,
    "squeezenet1_1 (features='features')": lambda: tvm.squeezenet1_1(num_classes=K),
    "Sequential": _sequential,
    "dict output, head 'out', temperature": DictNet,
}
SLOW_BUILDERS = {  # large: construction alone takes seconds
    "swin_t": lambda: tvm.swin_t(num_classes=K),
    "densenet121": lambda: tvm.densenet121(num_classes=K),
    "efficientnet_v2_s": lambda: tvm.efficientnet_v2_s(num_classes=K),
    "resnext50_32x4d": lambda: tvm.resnext50_32x4d(num_classes=K),
    "vgg11": lambda: tvm.vgg11(num_classes=K),
    "alexnet": lambda: tvm.alexnet(num_classes=K),
    "maxvit_t": lambda: tvm.maxvit_t(num_classes=K),
    "vit_b_16": lambda: tvm.vit_b_16(num_classes=K),
}
SIDE = {"alexnet": 64, "maxvit_t": 224, "vit_b_16": 224}  # inputs they need


def split_of(name, model):
    kwargs = {"features": "features"} if name.startswith("squeezenet") else {}
    return ModelSplit(model.eval(), name=name, **kwargs)


def input_kinds(seed=0):
    """One item per input kind a user has, with its label; images of different sizes."""
    rng = np.random.default_rng(seed)

    def rgb(h, w):
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)

    x = torch.from_numpy(rgb(30, 30)).permute(2, 0, 1)
    normalised = (x.float() / 255 - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(
        3, 1, 1)
    return [
        ("PIL RGB", Image.fromarray(rgb(40, 52)), 0),
        ("PIL grayscale", Image.fromarray(rgb(33, 33)).convert("L"), 1),
        ("PIL RGBA", Image.fromarray(rgb(24, 20)).convert("RGBA"), 2),
        ("uint8 tensor", torch.from_numpy(rgb(36, 36)).permute(2, 0, 1).contiguous(), 3),
        ("float tensor", torch.from_numpy(rgb(28, 44)).permute(2, 0, 1).float() / 255, 4),
        ("grayscale tensor", torch.rand(1, 32, 32), 0),
        ("normalised float", normalised, 1),
        ("H x W x C array", rgb(50, 35), 2),
    ]


def _check(name, build, kind=None):
    """Every input kind in one batch (``kind=None``), or three inputs of one kind alone."""
    torch.manual_seed(0)
    split = split_of(name, build())
    side = SIDE.get(name.split()[0], 32)
    if kind is None:
        items = [(image, label) for _, image, label in input_kinds()]
    else:
        items = [(image, label) for seed in range(3) for k, image, label in input_kinds(seed)
                 if k == kind]
    normalised = kind in (None, "normalised float")
    with pytest.warns(UserWarning, match="normalised") if normalised else _no_warning():
        loader = DataLoader(PreparedImages(items, side, mean=MEAN, std=STD), batch_size=len(items))
        (images, labels), = list(loader)
    assert labels.tolist() == [label for _, label in items]
    assert images.shape == (len(items), 3, side, side)
    with torch.no_grad():
        z, logits = split.features_and_logits(images)
        direct = split.model(split.preprocess(images))
    direct = direct["logits"] if isinstance(direct, dict) else direct
    assert split.num_classes == K
    assert logits.shape == (len(items), K) and z.shape[0] == len(items) and z.ndim == 2
    assert torch.isfinite(z).all() and torch.isfinite(logits).all()
    assert torch.allclose(logits, direct, atol=1e-5)  # the model's own predictions


@pytest.mark.filterwarnings("ignore:.*changes the output")
@pytest.mark.parametrize("name", list(BUILDERS))
def test_architecture_takes_every_input_kind(name):
    _check(name, BUILDERS[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", list(SLOW_BUILDERS))
def test_large_architecture_takes_every_input_kind(name):
    _check(name, SLOW_BUILDERS[name])


@pytest.mark.filterwarnings("ignore:.*changes the output")
@pytest.mark.parametrize("kind", [k for k, _, _ in input_kinds()])
@pytest.mark.parametrize("name", ["resnet18", "vit (torchvision VisionTransformer)",
                                  "Sequential", "dict output, head 'out', temperature"])
def test_each_input_kind_alone(name, kind):
    """The matrix crossed one by one: a dataset of one input kind only (three inputs of
    different sizes), on a CNN, a ViT, a Sequential and a dict-returning model."""
    _check(name, BUILDERS[name], kind)


@contextlib.contextmanager
def _no_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "normalised" guess on raw pixels
        yield


def test_the_split_found_the_right_layers():
    assert split_of("resnet18", BUILDERS["resnet18"]()).head_name == "fc"
    assert split_of("x", _sequential()).resolve().head_name == "6"  # traced: the last Linear
    assert split_of("x", _vit()).input_size == 32
    with pytest.warns(UserWarning, match="changes the output of out"):
        assert split_of("x", DictNet()).resolve().head_name == "out"


def test_what_cannot_be_split_says_how():
    with pytest.raises(SemheatError, match="pass features='NAME' .*features, classifier"):
        ModelSplit(tvm.squeezenet1_1(num_classes=K)).resolve()
    with pytest.raises(SemheatError, match="has no layer 'layer9' for features="):
        ModelSplit(tvm.resnet18(num_classes=K), features="layer9")
    with pytest.raises(SemheatError, match="pass input_size="):  # a ViT told nothing, at 224
        ModelSplit(nn.Sequential(_vit()), input_size=64).resolve()


def test_features_from_another_layer():
    torch.manual_seed(0)
    split = ModelSplit(tvm.resnet18(num_classes=K).eval(), features="layer3")
    z, logits = split.features_and_logits(torch.rand(3, 3, 32, 32))
    assert z.shape == (3, 256) and logits.shape == (3, K) and split.num_classes == K


def test_explicit_head_name():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.proj = nn.Linear(4, 6)
            self.scores = nn.Linear(6, K)

        def forward(self, x):
            return self.scores(torch.relu(self.proj(self.conv(x).mean((2, 3)))))

    split = ModelSplit(Net().eval(), head="scores")
    z, logits = split.features_and_logits(torch.rand(2, 3, 16, 16))
    assert split.head_name == "scores" and z.shape == (2, 6) and split.num_classes == K


@pytest.mark.filterwarnings("ignore:.*changes the output")
@pytest.mark.parametrize("name", ["Sequential", "dict output, head 'out', temperature",
                                  "resnet18"])
def test_full_analysis(name, tiny_vlm):
    assert _analysis(name, BUILDERS[name], tiny_vlm) == 40


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*changes the output")
@pytest.mark.parametrize("name", [n for n in {**BUILDERS, **SLOW_BUILDERS} if n not in (
    "Sequential", "dict output, head 'out', temperature", "resnet18")])
def test_full_analysis_every_architecture(name, tiny_vlm):
    """Correct record counts, or one clear line: a randomly initialised network may give the
    same features for every input (e.g. mobilenet_v3_small), which the analysis refuses."""
    try:
        n = _analysis(name, {**BUILDERS, **SLOW_BUILDERS}[name], tiny_vlm)
    except SemheatError as exc:
        assert "\n" not in str(exc) and "scores the same on every reference input" in str(exc)
    else:
        assert n == 40


def _analysis(name, build, tiny_vlm):
    torch.manual_seed(0)
    items = [(image, j % K) for j, image in enumerate(
        image for i in range(5) for _, image, _ in input_kinds(i))]  # every class in every split
    kwargs = {"features": "features"} if name.startswith("squeezenet") else {}
    if name in SIDE:  # a model that needs a given input size (maxvit_t: 224)
        kwargs["input_size"] = SIDE[name]
    with pytest.warns(UserWarning, match="normalised"):
        bundle = sw.analyze(build().eval(), DataLoader(items, batch_size=16), concepts=["a", "b"],
                            vlm=tiny_vlm, attack_limit=0, progress=False, **kwargs)
    assert bundle.classes == [str(k) for k in range(K)]
    return bundle.n
