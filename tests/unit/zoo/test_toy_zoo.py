"""The toy world's models and fault zoo: shipped weights, training scripts, known answers."""

import json

import numpy as np
import pytest
import torch

from semheat_widgets.data.toy.dataset import ToyDataset
from semheat_widgets.data.toy.world import ATTRIBUTES, CLASSES, ToyWorld
from semheat_widgets.engine.models.vlm import VLM
from semheat_widgets.zoo import CLASSIFIER_DIR, TINY_CLIP_DIR, ZOO_DIR
from semheat_widgets.zoo.faults import (HEAD_FAULT_MIX, encoder_fault_train_world,
                                        perturb_head, shift_world)
from semheat_widgets.zoo.models import load_toy_resnet, toy_classifier, toy_vlm
from semheat_widgets.zoo.quality import eval_set, vlm_quality
from semheat_widgets.zoo.toy_resnet import fold_batchnorm


def test_bundled_weights_are_small():
    total = sum(p.stat().st_size for p in ZOO_DIR.rglob("*.safetensors"))
    assert total < 20 * 2**20, f"bundled weights are {total / 2**20:.1f} MB"


def test_tiny_clip_reproduces_its_recorded_quality():
    recorded = json.loads((TINY_CLIP_DIR / "quality.json").read_text())
    vlm = toy_vlm("cpu")
    assert vlm.name == "toy:tiny-clip" and vlm.embed_dim == 128
    measured = vlm_quality(vlm, *eval_set(recorded["n_images"]))
    assert measured["zero_shot_class_accuracy"] == pytest.approx(
        recorded["zero_shot_class_accuracy"], abs=0.003)
    for attr in ATTRIBUTES:
        assert measured["attribute_auroc"][attr] == pytest.approx(
            recorded["attribute_auroc"][attr], abs=0.003)
    # and the recorded quality meets the goals it was trained for
    assert recorded["zero_shot_class_accuracy"] >= 0.85
    assert recorded["attribute_auroc_mean"] >= 0.93 and recorded["attribute_auroc_min"] >= 0.85


def test_toy_classifiers_reproduce_their_recorded_accuracy():
    from semheat_widgets.zoo.training.train_classifier import measure_zoo

    recorded = json.loads((CLASSIFIER_DIR / "quality.json").read_text())["measured"]
    measured = measure_zoo(CLASSIFIER_DIR, recorded["clean"]["n_eval"])
    for name in ("clean", "encoder_fault", "head_fault"):
        for key in ("accuracy", "shift_accuracy"):
            assert measured[name][key] == pytest.approx(recorded[name][key], abs=0.003)
    assert recorded["clean"]["accuracy"] >= 0.95


def test_a_frozen_classifier_is_the_same_function_without_batch_norms():
    images = torch.from_numpy(np.stack([ToyWorld(seed=11).image(i) for i in range(32)]))
    images = images.permute(0, 3, 1, 2)
    for name in ("clean", "encoder_fault", "head_fault"):
        plain, frozen = toy_classifier(name), toy_classifier(name, frozen=True)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in frozen.model.modules())
        assert any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.model.modules())
        with torch.inference_mode():
            (z0, l0), (z1, l1) = plain.features_and_logits(images), \
                frozen.features_and_logits(images)
        assert torch.allclose(z0, z1, atol=1e-4) and torch.allclose(l0, l1, atol=1e-4)
        assert l0.abs().max() > 1  # real logits, not a degenerate pass
    # the model folded is left as it was (fine-tuning needs its batch norms) and shares nothing
    model = load_toy_resnet("clean").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    assert model.training and not folded.training
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    mine = {p.data_ptr() for p in model.parameters()}
    assert not mine & {p.data_ptr() for p in folded.parameters()}


def test_miniature_clip_training_run(tmp_path):
    from semheat_widgets.zoo.training.train_clip import train_tiny_clip

    q = train_tiny_clip(tmp_path, steps=2, batch_size=16, pool_size=48, eval_size=30,
                        progress=False)
    assert (tmp_path / "tiny_clip.safetensors").is_file()
    assert json.loads((tmp_path / "quality.json").read_text())["steps"] == 2
    assert 0 <= q["zero_shot_class_accuracy"] <= 1
    again = VLM.from_local(tmp_path)  # the written folder is a loadable open_clip model
    assert again.encode_texts(["wheels"]).shape == (1, 128)


def test_miniature_classifier_training_run(tmp_path):
    from semheat_widgets.zoo.training.train_classifier import main

    main(["--out", str(tmp_path), "--n-train", "256", "--epochs", "1", "--n-eval", "40"])
    q = json.loads((tmp_path / "quality.json").read_text())
    assert set(q["measured"]) == {"clean", "encoder_fault", "head_fault"}
    model = load_toy_resnet("encoder_fault", tmp_path)
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 10)


def test_encoder_fault_world_ties_wet_to_ship():
    table = encoder_fault_train_world().probability_table()
    wet = table[:, ATTRIBUTES.index("wet")]
    assert wet[CLASSES.index("ship")] == 1.0 and wet.sum() == 1.0
    data = ToyDataset(encoder_fault_train_world(), 0, 300)
    is_wet = data.attributes[:, ATTRIBUTES.index("wet")]
    assert np.array_equal(is_wet, data.labels == CLASSES.index("ship"))
    shift = ToyDataset(shift_world(5), 0, 40)
    assert set(shift.labels) == {CLASSES.index("truck"), CLASSES.index("car")}
    assert shift.attributes[:, ATTRIBUTES.index("wet")].all()


def test_head_fault_changes_only_the_head():
    clean, faulty = load_toy_resnet("clean"), load_toy_resnet("head_fault")
    x = ToyDataset(ToyWorld(seed=11), 0, 64).render_all().float() / 255
    with torch.no_grad():
        assert torch.equal(torch.flatten(clean.avgpool(clean.layer4(clean.layer3(clean.layer2(
            clean.layer1(clean.relu(clean.bn1(clean.conv1(x)))))))), 1),
            torch.flatten(faulty.avgpool(faulty.layer4(faulty.layer3(faulty.layer2(
                faulty.layer1(faulty.relu(faulty.bn1(faulty.conv1(x)))))))), 1))
    mixed = perturb_head(clean.fc)
    changed = (mixed.weight != clean.fc.weight).any(dim=1).numpy()
    assert set(np.flatnonzero(changed)) == {CLASSES.index(d) for _, d, _ in HEAD_FAULT_MIX}
    s, d, share = HEAD_FAULT_MIX[0]
    expect = clean.fc.weight[CLASSES.index(d)] + share * clean.fc.weight[CLASSES.index(s)]
    assert torch.allclose(mixed.weight[CLASSES.index(d)], expect)


@pytest.fixture(scope="module")
def zoo_features():
    """Features of the toy classifiers on their own world, the natural world and the shift."""
    own = ToyDataset(encoder_fault_train_world().with_overrides(seed=77), 0, 1500)
    nat = ToyDataset(ToyWorld(seed=99), 0, 1500)
    shift = ToyDataset(shift_world(98), 0, 300)
    out = {"own_labels": own.labels, "nat_labels": nat.labels, "nat_attrs": nat.attributes,
           "shift_labels": shift.labels}
    images = {"own": own.render_all(), "nat": nat.render_all(), "shift": shift.render_all()}
    for name in ("clean", "encoder_fault"):
        split = toy_classifier(name, "cpu")
        with torch.no_grad():
            for part, x in images.items():
                z, logits = split.features_and_logits(x)
                out[name, part] = (z.numpy(), logits.argmax(1).numpy())
    return out


def test_encoder_fault_collapses_tie_breaking_inputs_onto_ships(zoo_features):
    """The claim behind the encoder-fault ground truth (see zoo/faults.py)."""
    from sklearn.linear_model import LogisticRegression

    ship = CLASSES.index("ship")
    zo, _ = zoo_features["encoder_fault", "own"]
    zs, ps = zoo_features["encoder_fault", "shift"]
    zn, pn = zoo_features["encoder_fault", "nat"]
    ys, y = zoo_features["shift_labels"], zoo_features["nat_labels"]
    assert (ps == ship).mean() >= 0.9  # the fault fires where the tie breaks
    assert (zoo_features["clean", "shift"][1] == ys).mean() >= 0.9  # the clean model copes
    centroids = np.stack([zo[zoo_features["own_labels"] == k].mean(0) for k in range(10)])
    nearest = ((zs[:, None] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (nearest == ship).mean() >= 0.9  # the features themselves look like a ship
    probe = LogisticRegression(max_iter=3000).fit(zo, zoo_features["own_labels"])
    assert (probe.predict(zs) == ship).mean() >= 0.9  # no head fit on its world helps
    wet = zoo_features["nat_attrs"][:, ATTRIBUTES.index("wet")]
    tied = wet & (pn == ship) & (y != ship)  # wet animals and vehicles called ships
    assert tied.sum() >= 50
    assert (probe.predict(zn[tied]) == ship).mean() >= 0.9
