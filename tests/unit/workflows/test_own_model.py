"""``sw.analyze(model, data, ...)``: what users have goes in, one clear line when it cannot.

Each mistake of issue 26 has a test here that failed before (a deep torch traceback or a
misleading message)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from PIL import Image
from torch.utils.data import DataLoader, Dataset

import semheat_widgets as sw
from semheat_widgets.engine import AnalysisConfig, ConceptBank, ModelSplit
from semheat_widgets.engine import analyze as engine_analyze
from semheat_widgets.engine.extract.inputs import PreparedImages, image_tensor, to_rgb01
from semheat_widgets.errors import SemheatError

from helpers.tiny import CLASSES, colour_images, make_resnet

N = 24
FAST = dict(attack_limit=0, progress=False)
ENGINE_FAST = dict(config=AnalysisConfig(attack_limit=0), progress=False)


def pil_items(n=N, sizes=(32,), modes=("RGB",)):
    images, labels = colour_images(n, size=48)
    out = []
    for i in range(n):
        arr = images[i].permute(1, 2, 0).numpy()
        s = sizes[i % len(sizes)]
        im = Image.fromarray(arr).resize((s, s + 3 * (i % 2)))
        out.append((im.convert(modes[i % len(modes)]), int(labels[i])))
    return out


class PILDataset(Dataset):
    classes = list(CLASSES)

    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def _run(data, tiny_vlm, model=None, **kw):
    kw = {**FAST, **kw}
    return sw.analyze(model or make_resnet(), data, concepts=kw.pop("concepts", ["red", "blue"]),
                      vlm=tiny_vlm, **kw)


def test_pil_dataset_of_mixed_sizes_and_modes(tiny_vlm):
    # before: default_collate TypeError (PIL), "stack expects each tensor to be equal size"
    ds = PILDataset(pil_items(sizes=(24, 40, 33), modes=("RGB", "L", "RGBA", "P")))
    bundle = _run(ds, tiny_vlm)
    assert bundle.n == N
    assert bundle.classes == list(CLASSES)  # from the dataset's .classes


def test_dataloader_of_pil_images(tiny_vlm):
    loader = DataLoader(PILDataset(pil_items()), batch_size=5)
    bundle = _run(loader, tiny_vlm)
    assert bundle.n == N


def test_grayscale_tensors_and_plain_list_of_concepts(tiny_vlm):
    # before: "images must be N x 3 x H x W" and AttributeError: 'list' has no 'embed'
    images, labels = colour_images(N)
    grey = images.float().mean(1, keepdim=True).div(255)  # N x 1 x H x W floats
    bundle = _run((grey, labels), tiny_vlm, concepts=["loop", "line"])
    assert bundle.n == N
    assert bundle.concept_names == ["loop", "line"]


def test_dict_of_prompts_and_hwc_uint8_arrays(tiny_vlm):
    images, labels = colour_images(N)
    hwc = images.permute(0, 2, 3, 1).numpy()
    bundle = _run((hwc, labels), tiny_vlm, classes=list(CLASSES),
                  concepts={"reddish": ["red", "a red thing"], "bluish": "blue"})
    assert bundle.concept_names == ["reddish", "bluish"]
    assert bundle.n == N


def test_normalised_inputs_are_mapped_back():
    images, _ = colour_images(2)
    x = images[0].float() / 255
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normed = (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)
    back, note = to_rgb01(normed, mean, std)
    assert note == "normalised"
    assert torch.allclose(back, x.clamp(0, 1), atol=1e-5)
    assert to_rgb01(x * 255, mean, std)[1] == "0..255"


def test_image_layouts():
    assert image_tensor(np.zeros((7, 9), np.uint8)).shape == (1, 7, 9)
    assert image_tensor(np.zeros((7, 9, 3), np.uint8)).shape == (3, 7, 9)
    assert image_tensor(torch.zeros(4, 7, 9)).shape == (4, 7, 9)
    assert image_tensor(np.zeros((7, 9), np.uint16)).dtype == torch.float32
    ds = PreparedImages([(np.zeros((7, 9, 4), np.uint8), 1)], 5)
    x, y = ds[0]
    assert x.shape == (3, 5, 5) and x.dtype == torch.float32 and y == 1


def test_image_folder_path(tmp_path, tiny_vlm):
    for i, (im, y) in enumerate(pil_items(sizes=(30, 41))):
        (tmp_path / CLASSES[y]).mkdir(exist_ok=True)
        im.save(tmp_path / CLASSES[y] / f"{i}.png")
    bundle = _run(str(tmp_path), tiny_vlm)
    assert bundle.n == N
    assert sorted(bundle.classes) == sorted(CLASSES)
    assert all(str(tmp_path) in p for p in bundle.records["path"].to_pylist())


def test_label_outside_range_is_one_line(tiny_vlm):
    # before: IndexError: list index out of range (pipeline.py)
    images, labels = colour_images(N)
    labels = labels.copy()
    labels[5] = 7
    with pytest.raises(SemheatError, match=r"label 7 of input 5 is outside 0\.\.3"):
        _run((images, labels), tiny_vlm)


def test_label_outside_range_through_the_engine(tiny_vlm, tiny_split):
    images, labels = colour_images(N)
    labels = labels.copy()
    labels[3] = -1
    data = list(zip(images, labels.tolist()))
    with pytest.raises(SemheatError, match="outside 0..3"):
        engine_analyze(tiny_split, tiny_vlm, data, classes=CLASSES, concepts=ConceptBank(["red"]),
                       **ENGINE_FAST)


def test_duplicated_class_names_are_one_line(tiny_vlm, tiny_split):
    # before: "concept 'a' already exists"
    images, labels = colour_images(N)
    data = list(zip(images, labels.tolist()))
    with pytest.raises(SemheatError, match="class name 'a' appears 2 times"):
        engine_analyze(tiny_split, tiny_vlm, data, classes=["a", "b", "a", "c"],
                       concepts=["red"], **ENGINE_FAST)
    with pytest.raises(SemheatError, match="class name 'a' appears 2 times"):
        _run((images, labels), tiny_vlm, classes=["a", "b", "a", "c"])


def test_plain_list_of_concepts_through_the_engine(tiny_vlm, tiny_split):
    images, labels = colour_images(N)
    bundle = engine_analyze(tiny_split, tiny_vlm, list(zip(images, labels.tolist())),
                            classes=CLASSES, concepts=["red", "blue"], **ENGINE_FAST)
    assert bundle.concept_names == ["red", "blue"]


def test_classes_count_mismatch_and_missing_labels(tiny_vlm):
    images, labels = colour_images(N)
    with pytest.raises(SemheatError, match="4 outputs but 3 class names"):
        _run((images, labels), tiny_vlm, classes=["a", "b", "c"])
    with pytest.raises(SemheatError, match="need labels"):
        _run(images, tiny_vlm)


def test_half_precision_model(tiny_vlm):
    # before: a torch dtype error 23 frames deep
    images, labels = colour_images(N)
    bundle = _run((images, labels), tiny_vlm, model=make_resnet().half())
    assert bundle.n == N
    assert np.isfinite(bundle.records["confidence"]).all()


def test_model_on_another_device_than_the_data_is_followed():
    # the split's preprocessing lives where the model lives (here: both CPU, checked by device)
    split = ModelSplit(make_resnet())
    assert split.mean.device == next(split.model.parameters()).device
    assert split(torch.zeros(2, 3, 16, 16, dtype=torch.uint8)).shape == (2, 4)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_model_on_cuda_with_cpu_data(tiny_vlm):
    images, labels = colour_images(N)
    bundle = _run((images, labels), tiny_vlm, model=make_resnet().cuda())
    assert bundle.n == N


def test_wrong_data_type_is_one_line(tiny_vlm):
    with pytest.raises(SemheatError, match="data must be a Dataset"):
        _run(42, tiny_vlm)
    with pytest.raises(SemheatError, match="not a folder"):
        _run("/nonexistent/images", tiny_vlm)
    with pytest.raises(SemheatError, match="give concepts"):
        sw.analyze(make_resnet(), [], vlm=tiny_vlm)


def test_model_returning_a_dict(tiny_vlm):
    class DictNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = make_resnet()
            self.body.fc = nn.Identity()
            self.out = nn.Linear(512, 4)

        def forward(self, x):
            z = self.body(x)
            return {"embedding": z, "scores": self.out(z)}

    images, labels = colour_images(N)
    with pytest.raises(SemheatError, match="output='KEY'"):
        _run((images, labels), tiny_vlm, model=DictNet())
    bundle = _run((images, labels), tiny_vlm, model=DictNet(), output="scores")
    assert bundle.n == N
