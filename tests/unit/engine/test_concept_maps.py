"""Concept activation maps: exact through average-pooled features, a gradient fallback
otherwise, checked against attribute masks (toy renderer; RIVAL10's pickles on a fake tree),
and shown in the detail view, the grid and the report."""

import json

import numpy as np
import pytest
import torch

from semheat_widgets import cli
from semheat_widgets.engine import Bundle, load_classifier
from semheat_widgets.engine.concepts.cam import (EXACT, GRADIENT, bundle_concept_maps, class_maps,
                                                concept_maps, finer_method, input_images,
                                                overlay)
from semheat_widgets.engine.concepts.finer_maps import layer_features
from semheat_widgets.engine.vectors import unit_rows
from semheat_widgets.engine.concepts.grounding import dilate
from semheat_widgets.errors import SemheatError


@pytest.fixture(scope="module")
def clean(mini_world):
    return Bundle.load(mini_world / "clean"), load_classifier("toy:clean")


def test_final_feature_maps_are_exact_decompositions_of_the_concept_scores(clean):
    bundle, classifier = clean
    idx = np.arange(0, 60, 3)
    images = input_images(bundle, idx)
    st = bundle.standardizer
    maps = concept_maps(classifier, bundle.aligner, bundle.concept_embeddings, st.mean, st.std,
                        images, bundle.concept_names)  # without the finer maps' aligner
    assert maps.method == EXACT and maps.values.shape == (len(idx), 18, 4, 4)
    z = bundle.standardizer(bundle.scores(idx).astype(np.float64))
    # the mean over locations of each map is the input's z-score of that concept
    assert np.allclose(maps.values.mean((2, 3)), z, atol=1e-4)
    up = maps.upsampled(64)
    assert up.shape == (len(idx), 18, 64, 64)
    cams = class_maps(classifier, images, bundle.column("prediction")[idx])
    assert cams.shape == (len(idx), 4, 4)


def test_finer_maps_are_exact_decompositions_of_the_earlier_stage_scores(clean):
    """The bundle's finer maps (layer2, 16 x 16 on 64-pixel images): each map's mean over
    locations is the z-score of cos(A2 z2, t_j), z2 the pooled layer2 features, standardised
    with the fit inputs' statistics."""
    bundle, classifier = clean
    finer = bundle.map_aligner
    assert finer is not None and finer.layer == "layer2"
    assert bundle.manifest["concept_maps"]["feature_map"] == [16, 16]
    assert 0.5 < bundle.manifest["concept_maps"]["fidelity"]["mean_cosine"] <= 1
    idx = np.arange(1, 60, 3)
    images = input_images(bundle, idx)
    maps = bundle_concept_maps(bundle, classifier, images, ["wet", "wheels", "wings"])
    assert maps.method == finer_method("layer2") and maps.values.shape == (len(idx), 3, 16, 16)
    T = bundle.concept_embeddings[[bundle.concept_names.index(c)
                                   for c in ("wet", "wheels", "wings")]]
    z2 = layer_features(classifier, images, "layer2").mean((2, 3)).numpy()
    cos = unit_rows(finer.aligner.transform(z2)) @ T.T
    mean, std = finer.stats(T)
    assert np.allclose(maps.values.mean((2, 3)), (cos - mean) / std, atol=1e-4)
    # a classifier without that layer, given in its place, gets the final features' maps
    assert bundle_concept_maps(bundle, _max_pooled(), images[:2], ["wet"]).method == GRADIENT


def _max_pooled():
    from semheat_widgets.engine.models.classifier import ModelSplit
    from semheat_widgets.zoo.models import load_toy_resnet

    net = load_toy_resnet("clean")

    class MaxPooled(torch.nn.Module):  # max pooling: no exact decomposition
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Sequential(net.conv1, net.bn1, net.relu, net.layer1,
                                            net.layer2, net.layer3, net.layer4)

        def forward(self, x):
            return self.body(x).amax((2, 3))

    return ModelSplit(encoder=MaxPooled(), head=net.fc, mean=(0.5,) * 3, std=(0.25,) * 3,
                      input_size=64).eval()


def test_a_layer2_that_is_no_spatial_stage_gives_no_finer_maps(tiny_vlm):
    """A model with the ResNet names but whose ``layer2`` gives no spatial map: the analysis
    warns and goes on without finer maps (it does not fail after extraction)."""
    from semheat_widgets.engine.concepts.finer_maps import fit_map_aligner
    from semheat_widgets.engine.models.classifier import ModelSplit

    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3)
            self.avgpool = torch.nn.AdaptiveAvgPool2d(1)
            self.layer2 = torch.nn.Linear(4, 4)
            self.fc = torch.nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.layer2(self.avgpool(self.conv(x)).flatten(1)))

    split = ModelSplit(Odd().eval(), input_size=16)
    data = [(torch.rand(3, 16, 16), i % 3) for i in range(12)]
    with pytest.warns(UserWarning, match="no finer concept maps"):
        assert fit_map_aligner(split, data, np.arange(8), np.arange(8, 12),
                               np.random.default_rng(0).normal(size=(12, 32))) is None


def test_without_average_pooling_the_map_is_a_gradient_map(clean):
    bundle, _ = clean
    split = _max_pooled()
    images = input_images(bundle, [0, 1])
    maps = bundle_concept_maps(bundle, split, images, ["wet", "wheels"])
    assert maps.method == GRADIENT and maps.values.shape == (2, 2, 4, 4)
    assert np.isfinite(maps.values).all() and (maps.values >= 0).all()
    with pytest.raises(SemheatError, match="average pooling"):
        class_maps(split, images, [0, 0])


def test_overlays_and_dilation():
    image = np.zeros((8, 8, 3), np.uint8)
    heat = np.zeros((8, 8))
    heat[2, 5] = 1.0
    out = overlay(image, heat)
    assert out.shape == (8, 8, 3) and out[2, 5].sum() > out[0, 0].sum()
    mask = np.zeros((9, 9), bool)
    mask[4, 4] = True
    assert dilate(mask, 2).sum() == 25 and dilate(mask, 0).sum() == 1


def test_ground_command_on_a_toy_bundle(mini_world, capsys):
    assert cli.main(["ground", str(mini_world / "encoder_fault"), "--limit", "80",
                     "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["method"] == finer_method("layer2") and r["n_inputs"] == 80
    assert r["tolerance_px"] == 4
    for concept, e in r["concepts"].items():
        assert e["n"] >= 1
        for key in ("map", "random", "centre", "class_cam", "iou_map", "iou_random"):
            assert 0.0 <= e[key] <= 1.0, (concept, key)
    assert set(r["mean"]) >= {"map", "random", "centre", "class_cam"}
    assert "wet" in r["shift"]["concepts"]  # the encoder fault's shifted inputs
    assert cli.main(["ground", str(mini_world / "clean"), "--classifier", "vgg:x"]) == 2
    assert "--classifier must be resnet18:CKPT" in capsys.readouterr().err  # the flag


def test_widgets_show_maps(clean):
    from semheat_widgets.widgets import DetailView, ImageGrid
    from semheat_widgets.widgets.cell import Cell

    bundle, _ = clean
    wrong = int(np.flatnonzero(~bundle.column("correct") & bundle.mask(
        perturbation="natural"))[0])
    view = DetailView(bundle)
    view.index = wrong
    assert view.concept == bundle.column("top_concepts")[wrong][0]  # the most responsible
    first = bytes(view.map_image.value)
    assert first.startswith(b"\x89PNG") and bytes(view.cam_image.value).startswith(b"\x89PNG")
    view.concept_box.value = "wet"
    assert view.concept == "wet" and bytes(view.map_image.value) != first
    grid = ImageGrid(bundle)
    k = bundle.classes[int(bundle.column("prediction")[wrong])]
    grid.cell = Cell("incorrect", "natural", k, "wet")
    plain = list(grid._images)
    grid.overlay = True
    assert len(grid._images) == len(plain) and grid._images[0] != plain[0]


def test_report_shows_where_for_telling_cells(mini_world, tmp_path):
    out = tmp_path / "r.html"
    assert cli.main(["report", str(mini_world / "encoder_fault"), "--html", str(out)]) == 0
    assert "class='map'" in out.read_text()


def test_ground_on_a_fake_rival10_tree(tmp_path, capsys):
    from helpers.fake_rival10 import make_fake_rival10

    fake = make_fake_rival10(tmp_path / "data", n_per_class=3, malformed=False)
    out = tmp_path / "b"
    assert cli.main(["analyze", "--data", f"rival10:{fake.root}", "--vlm", "open_clip:RN50:none",
                     "--train-epochs", "1", "--out", str(out), "--attack-limit", "0",
                     "--batch-size", "16", "--workers", "0", "--quiet"]) == 0
    capsys.readouterr()
    b = Bundle.load(out)
    assert b.column("path")[0].endswith(".JPEG")
    assert cli.main(["ground", str(out), "--limit", "10", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["n_inputs"] == 10 and r["image_size"] == 224 and r["concepts"]
