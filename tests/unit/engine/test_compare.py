"""Fix and verify: comparing two bundles of the same inputs, the repair helpers, the compare
view and command — on the session's small toy world."""

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from semheat_widgets import cli
from semheat_widgets.data.toy.dataset import ToyDataset
from semheat_widgets.engine import Bundle, load_classifier
from semheat_widgets.errors import SemheatError
from semheat_widgets.workflows.repair import (concept_slice, encoder_features, export_slice,
                                              refit_head)
from semheat_widgets.zoo.build import analyze_like
from semheat_widgets.zoo.faults import clean_train_world


def rendered(world, n):
    data = ToyDataset(world, 0, n)
    return TensorDataset(data.render_all(), torch.from_numpy(data.labels))


@pytest.fixture(scope="module")
def head_pair(mini_world, tmp_path_factory):
    """The head-fault bundle and the same inputs through a refit head."""
    before = Bundle.load(mini_world / "head_fault")
    fixed = refit_head(load_classifier("toy:head_fault"),
                       rendered(clean_train_world().with_overrides(seed=6262), 600))
    after = analyze_like("head_fault", fixed, mini_world, progress=False)
    return before, after.save(tmp_path_factory.mktemp("after") / "after"), fixed


def test_refit_head_keeps_the_encoder_and_mends_the_head(head_pair):
    before, after_path, fixed = head_pair
    faulty = load_classifier("toy:head_fault")
    x = rendered(clean_train_world().with_overrides(seed=77), 64)
    z_old, _ = encoder_features(faulty, x)
    z_new, _ = encoder_features(fixed, x)
    assert np.allclose(z_old, z_new)  # the encoder is untouched
    assert fixed.name == "toy:head_fault+refit-head"
    after = Bundle.load(after_path)
    assert after.n < before.n  # natural inputs only: a comparison needs no attacks
    rows = before.compare(after).rows  # natural eval inputs, numbered alike in both
    assert before.column("correct")[rows].mean() < after.column("correct")[rows].mean()


def test_comparison_of_the_same_inputs(head_pair):
    before, after_path, _ = head_pair
    after = Bundle.load(after_path)
    comparison = before.compare(after)
    r = comparison.to_json()
    fixed, broken = comparison.flips()
    y = comparison.labels
    pb, pa = comparison.predictions("before"), comparison.predictions("after")
    assert r["flipped"] == {"fixed": int(((pb != y) & (pa == y)).sum()),
                            "broken": int(((pb == y) & (pa != y)).sum())}
    assert r["flipped"]["fixed"] > r["flipped"]["broken"]
    assert r["accuracy"]["after"] > r["accuracy"]["before"]
    assert r["known_faults"]["head"]["after"] < r["known_faults"]["head"]["before"]
    assert sum(c["fixed"] for c in r["per_class"].values()) == r["flipped"]["fixed"]
    k = before.classes.index("dog")
    expect = (after.heatmap("differential", split="eval").values[k] -
              before.heatmap("differential", split="eval").values[k])
    got = np.array([np.nan if v is None else v for v in r["differential_delta"]["dog"].values()])
    assert np.allclose(got, expect, atol=1e-4, equal_nan=True)
    # the flipped inputs of a cell: of that class, the strongest in the concept first
    idx = comparison.flipped("equine", "mane")
    z = after.concept_column("mane")[idx]
    assert len(idx) and np.all(np.diff(z) <= 1e-9)


def test_bundles_of_other_inputs_are_refused(mini_world, head_pair):
    before, _, _ = head_pair
    other = Bundle.load(mini_world / "encoder_fault")  # another reference set
    with pytest.raises(SemheatError, match="not the same inputs") as err:
        before.compare(other)
    assert "\n" not in str(err.value)


def test_bundles_of_other_images_are_refused(head_pair, tmp_path):
    # same ids, labels and splits, other pictures: found on the thumbnails compared
    before, after_path, _ = head_pair
    after = Bundle.load(after_path, mmap=False)
    first = int(np.flatnonzero(after.mask(perturbation="natural"))[0])
    after.arrays["thumbs"][first] = 255 - after.arrays["thumbs"][first]
    with pytest.raises(SemheatError, match="images differ"):
        before.compare(after)


def test_compare_command_and_report(head_pair, mini_world, tmp_path, capsys):
    before, after_path, _ = head_pair
    assert cli.main(["compare", str(mini_world / "head_fault"), str(after_path), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert set(r) >= {"accuracy", "flipped", "per_class", "known_faults",
                      "differential_delta", "separating"}
    out = tmp_path / "report.html"
    assert cli.main(["report", str(mini_world / "head_fault"), "--html", str(out),
                     "--compare", str(after_path)]) == 0
    text = out.read_text()
    assert "Did the fix work?" in text and "chart-cmp-delta" in text
    assert cli.main(["compare", str(mini_world / "head_fault"),
                     str(mini_world / "encoder_fault")]) == 2
    assert "not the same inputs" in capsys.readouterr().err


def test_compare_view_shows_the_flipped_inputs_of_a_cell(head_pair):
    from semheat_widgets.widgets import CompareView

    before, after_path, _ = head_pair
    view = CompareView(before, after_path)
    assert "fixed" in view.summary.value
    view.select("equine", "mane")
    assert view.chart.params.picked == {"row": "equine", "column": "mane"}
    expect = view.comparison.flipped("equine", "mane")
    assert view.grid.total == len(expect) > 0
    assert [t["index"] for t in view.grid.tiles] == expect[:24].tolist()
    first = view.grid.tiles[0]["lines"]
    assert "→" in first[0] and ("fixed" in first[1] or "broken" in first[1])
    with pytest.raises(SemheatError):
        view.select("equine", "no such concept")


def test_concept_slice_and_its_export(mini_world, tmp_path):
    b = Bundle.load(mini_world / "encoder_fault")
    idx = concept_slice(b, "truck", "wet")
    z = b.concept_column("wet")
    assert len(idx) and (b.column("label")[idx] == b.classes.index("truck")).all()
    assert (z[idx] > 0).all() and np.all(np.diff(z[idx]) <= 1e-9)
    lack = concept_slice(b, "truck", "wet", shows=False)
    assert not set(idx) & set(lack) and (z[lack] <= 0).all()
    dest = export_slice(b, idx[:5], tmp_path / "slice")
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.png"))
    assert files == sorted(f"truck/{int(b.column('id')[i])}.png" for i in idx[:5])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(SemheatError, match="refusing to replace"):
        export_slice(b, idx[:2], tmp_path / "mine")
    with pytest.raises(SemheatError, match="unknown class"):
        concept_slice(b, "unicorn", "wet")
