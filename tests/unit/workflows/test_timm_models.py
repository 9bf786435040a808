"""timm classifiers (random weights, ``pretrained=False``: no model hub) split by
:class:`ModelSplit` without help: the head is timm's own classifier layer, the input size and
normalisation are the model's, and a forward through the split gives the model's own logits.
timm is not a dependency of the project: without it these tests are skipped."""

from __future__ import annotations

import pytest
import torch

from semheat_widgets.engine.models.classifier import ModelSplit, model_input_size

timm = pytest.importorskip("timm")

K = 4  # small heads
VIT_SIDE = 32  # the ViTs are built at this size (2 x 2 patches of 16): small and fast
# the architectures docs/your_own_model.md lists as checked; ViTs built at a small size
TIMM_MODELS = {
    "resnet10t": {},
    "mobilenetv3_small_050": {},
    "tf_efficientnet_lite0": {},
    "efficientnet_b0": {},
    "vit_tiny_patch16_224": {"img_size": VIT_SIDE},
    "deit_tiny_patch16_224": {"img_size": VIT_SIDE},
    "convnext_atto": {},
    "regnetx_002": {},
}


def _timm(name: str, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=K, **kwargs).eval()


def test_timm_vit_built_at_a_small_size_uses_that_size():
    model = _timm("vit_tiny_patch16_224", img_size=64)
    assert model.pretrained_cfg["input_size"][-1] == 224  # what the config still says
    assert model_input_size(model) == 64
    split = ModelSplit(model)
    assert split.input_size == 64
    with torch.no_grad():
        logits = split(torch.rand(2, 3, 100, 80))  # resized to 64, not 224: no assertion error
    assert logits.shape == (2, K)
    assert ModelSplit(model, input_size=48).input_size == 48  # input_size= still wins


@pytest.mark.parametrize("name", list(TIMM_MODELS))
def test_timm_model_splits_without_help(name):
    model = _timm(name, **TIMM_MODELS[name])
    split = ModelSplit(model, name=f"timm:{name}")
    side = VIT_SIDE if "img_size" in TIMM_MODELS[name] else model.pretrained_cfg["input_size"][-1]
    assert split.input_size == side
    cfg = model.pretrained_cfg
    assert torch.allclose(split.mean.flatten().cpu(), torch.tensor(cfg["mean"]))
    assert torch.allclose(split.std.flatten().cpu(), torch.tensor(cfg["std"]))
    images = torch.randint(0, 256, (2, 3, 40, 48), dtype=torch.uint8)  # any size: resized
    with torch.no_grad():
        z, logits = split.features_and_logits(images)
        own = model(split.preprocess(images))
    assert split.head is model.get_classifier()  # timm's own classifier layer
    assert z.shape == (2, model.get_classifier().in_features) and logits.shape == (2, K)
    assert torch.allclose(logits, own, atol=1e-5)
    assert torch.allclose(split.head(z), logits, atol=1e-5)
    assert split.num_classes == K
