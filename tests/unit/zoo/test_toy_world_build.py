"""The toy world is built lazily, one bundle when first asked for, and a lazily built bundle is
the same bundle a full build makes."""

import json

import numpy as np
import pytest
import torch

from semheat_widgets import cli
from semheat_widgets.data.toy.world import ATTRIBUTES, CLASSES
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.zoo.build import build_toy_world, missing_bundles, read_world, world_bundles
from semheat_widgets.errors import SemheatError
from semheat_widgets.zoo.toy_dir import toy_bundle, toy_world

SMALL = dict(n_reference=60, n_natural=60, n_shift=20, attack_limit=24)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    return build_toy_world(tmp_path_factory.mktemp("full") / "w", progress=False, **SMALL)


def test_one_bundle_on_demand_then_the_rest(full, tmp_path, capsys):
    world = tmp_path / "w"
    path = toy_bundle("encoder_fault", world, progress=False, **SMALL)
    assert path == world / "encoder_fault"
    assert sorted(missing_bundles(world)) == ["clean", "head_fault"]
    assert set(world_bundles(world)) == {"encoder_fault"}
    assert (world / "inputs" / "test" / "images.npy").is_file()  # kept for the other bundles
    # the command line says the world is only partly built, in one line
    assert cli.main(["monitor", str(world), "--json"]) == 2
    assert "partly built" in capsys.readouterr().err
    # `semheat toy build` completes it (no --force needed) and drops the shared inputs
    assert cli.main(["toy", "build", str(world), "--quiet", "--reference", "60", "--natural",
                     "60", "--shift", "20", "--attack-limit", "24"]) == 0
    capsys.readouterr()
    assert missing_bundles(world) == [] and not (world / "inputs").exists()
    assert set(read_world(world)["build_seconds"]) == {"clean", "encoder_fault", "head_fault"}
    # ... and every bundle is the one a full build makes from scratch
    for name in ("clean", "encoder_fault", "head_fault"):
        lazy, whole = Bundle.load(world / name), Bundle.load(full / name)
        assert lazy.n == whole.n
        for key in ("label", "prediction", "split", "gt_fault"):
            assert np.array_equal(lazy.column(key), whole.column(key)), (name, key)
        assert np.allclose(lazy.arrays["scores"], whole.arrays["scores"], atol=1e-5)
    assert cli.main(["toy", "build", str(world), "--quiet"]) == 2  # complete: needs --force
    err = capsys.readouterr().err
    assert "already holds a toy world; pass --force to rebuild it" in err  # the flag, not the
    assert "overwrite" not in err  # Python option the message names


def test_the_world_records_its_ground_truth_and_quality(full):
    world = read_world(full)
    assert world["n_natural"] == 60 and world["attack_limit"] == 24
    assert 0 <= world["quality"]["aligned_attribute_auroc_mean"] <= 1
    enc = Bundle.load(full / "encoder_fault")
    gt = enc.column("gt_fault")
    assert set(gt) <= {"", "encoder"} and (gt == "encoder").sum() > 0
    assert set(Bundle.load(full / "head_fault").column("gt_fault")) <= {"", "head"}
    assert enc.mask(perturbation="pgd").sum() == 24


def test_bundles_are_named_by_any_iterable_or_one_name(full):
    assert toy_world(full, "clean") == full  # one name, not its letters
    assert toy_world(full, iter(["clean", "head_fault"])) == full  # read once
    with pytest.raises(SemheatError, match="no bundle 'wet'"):
        toy_world(full, ["clean", "wet"])


def test_a_world_is_not_silently_taken_for_one_with_other_settings(full):
    assert toy_bundle("clean", full, progress=False, **SMALL) == full / "clean"  # the same
    with pytest.raises(SemheatError, match="built with n_natural=60, not 61; ask for its "
                                           "bundles without n_natural") as caught:
        toy_bundle("clean", full, progress=False, n_natural=61)
    assert caught.value.option == "n_natural"


@pytest.mark.parametrize("name", ["encoder_fault", "head_fault"])
def test_ground_truth_from_the_mistakes_alone_is_the_full_pass_one(full, name):
    """The build runs the clean classifier on a bundle's mistakes only; the ground truth is the
    one a pass of the clean classifier over every input gives."""
    from semheat_widgets.zoo.build import _reference_parts, _test_parts
    from semheat_widgets.zoo.faults import ENCODER_FAULT_CLASS
    from semheat_widgets.zoo.inputs import render
    from semheat_widgets.zoo.models import toy_classifier, toy_vlm

    world, bundle = read_world(full), Bundle.load(full / name)
    inputs = render(_reference_parts(name, world) + _test_parts(world), toy_vlm())
    clean = toy_classifier("clean")
    with torch.inference_mode():
        right = clean(inputs.images).argmax(1).numpy() == inputs.labels  # every input
    src = bundle.column("source_id")
    mistakes = (bundle.mask(perturbation="natural") & ~bundle.column("correct").astype(bool)
                & right[src])
    expected = mistakes if name == "head_fault" else (
        mistakes & inputs.attributes[src, ATTRIBUTES.index("wet")]
        & (inputs.domain[src] != "reference")
        & (bundle.column("prediction") == CLASSES.index(ENCODER_FAULT_CLASS)))
    assert np.array_equal(bundle.column("gt_fault") != "", expected)
    assert expected.sum() > 0


def test_a_partial_world_with_other_settings_needs_force(tmp_path, capsys):
    world = tmp_path / "w"
    toy_bundle("clean", world, progress=False, **SMALL)
    assert cli.main(["toy", "build", str(world), "--quiet", "--natural", "80"]) == 2
    assert "other settings; pass --force to rebuild it" in capsys.readouterr().err
    assert json.loads((world / "world.json").read_text())["n_natural"] == 60
