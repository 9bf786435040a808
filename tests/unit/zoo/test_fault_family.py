"""The fault family: any (concept, class) tie trained and cached, two ground truths, the
consensus localization rule beside the paper's, and the family report — on a miniature family
(one tie, tiny training) so that it runs in seconds."""

import json

import numpy as np
import pytest

from semheat_widgets import cli
from semheat_widgets.engine.localize import FaultLocalizer
from semheat_widgets.errors import SemheatError
from semheat_widgets.zoo.family import Tie, probe_truth, tie_named
from semheat_widgets.zoo.family_build import build_family

MINI = {"n_reference": 300, "n_natural": 200, "n_shift": 90}


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    out = build_family(tmp_path_factory.mktemp("fam") / "f", ties=["wet-ship"], progress=False,
                       cache=cache, **MINI, n_train=600, epochs=1)
    return out, cache


def test_a_tie_is_a_world_where_the_concept_marks_one_class():
    tie = tie_named("wet-ship")
    world = tie.world(7)
    table = world.probability_table()
    from semheat_widgets.data.toy.world import ATTRIBUTES, CLASSES

    j = ATTRIBUTES.index("wet")
    assert table[CLASSES.index("ship"), j] == 1.0
    assert (np.delete(table[:, j], CLASSES.index("ship")) == 0).all()
    shift = tie.shift()
    assert "ship" not in shift.classes and all(shift.scene(i).attributes[j] for i in range(20))
    assert tie_named("long-snout-dog") == Tie("long-snout", "dog", "custom")
    with pytest.raises(SemheatError):
        tie_named("nonsense")


def test_tie_classifiers_are_trained_once_and_cached(family):
    _, cache = family
    files = sorted(p.name for p in cache.iterdir())
    assert files == ["wet-ship-600x1.json", "wet-ship-600x1.safetensors"]
    info = json.loads((cache / "wet-ship-600x1.json").read_text())
    assert info["tie"] == "wet-ship" and info["n_train"] == 600


def test_probe_truth_follows_the_probe():
    class Probe:
        def predict(self, X):
            return np.asarray(X)[:, 0].astype(int)

    features = np.array([[3], [1], [2], [0]])
    labels = np.array([1, 1, 0, 2])
    candidates = np.array([True, True, True, False])
    out = probe_truth(Probe(), features, labels, tied=3, candidates=candidates)
    assert out.tolist() == ["encoder", "head", "undecided", ""]


def test_family_bundles_carry_both_truths_and_both_rules(family):
    from semheat_widgets.engine import Bundle

    root, _ = family
    info = json.loads((root / "family.json").read_text())
    assert set(info["bundles"]) == {"wet-ship", "head-mix", "head-bias", "head-noise", "head-damp"}
    b = Bundle.load(root / "wet-ship")
    gt, probe = b.column("gt_fault"), b.column("probe_fault")
    assert (gt == "encoder").sum() > 0
    assert set(probe[gt == "encoder"]) <= {"encoder", "head", "undecided"}
    assert set(probe[gt == ""]) == {""}
    wrong = ~b.column("correct")
    assert set(b.column("fault")[wrong]) <= {"encoder", "head"}  # the consensus rule
    assert set(b.column("fault_paper")[wrong]) <= {"encoder", "head", "undecided"}
    # the consensus blames the head only where both readers agree on it
    head = b.column("fault") == "head"
    assert (b.column("oracle_verdict")[head] == "head").all()
    assert (b.column("probe_verdict")[head] == "head").all()
    assert b.manifest["localization"]["rule"] == "consensus"
    assert b.manifest["aligner"]["alpha"] in (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    hb = Bundle.load(root / "head-bias")
    assert set(hb.column("gt_fault")) == {"", "head"}
    assert (hb.column("prediction")[hb.column("gt_fault") == "head"] ==
            b.classes.index("bird")).all()  # the bias pulls its mistakes to one class


def test_family_report_and_its_command(family, capsys):
    root, _ = family
    assert cli.main(["localize", "--family", str(root), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    tie = rep["bundles"]["wet-ship"]
    assert tie["role"] == "development" and tie["n"] > 0
    for key in ("accuracy", "paper_accuracy", "probe_accuracy", "probe_paper_accuracy"):
        assert 0.0 <= tie[key] <= 1.0
    assert tie["responsible_concept_rank"] >= 1
    # a miniature tie may barely take (< 30 known faults): then it is reported apart
    key = "encoder_development" if tie["n"] >= 30 else "encoder_barely_takes"
    assert tie["counted"] == (tie["n"] >= 30)
    assert rep["means"][key]["bundles"] == 1
    # the four head faults (the zoo's mixed head in development; bias shift, noisy weights and a
    # damped row held out), each counted in its role or reported apart when it barely takes
    heads = ("head-mix", "head-bias", "head-noise", "head-damp")
    for name in heads:
        assert rep["bundles"][name]["counted"] == (rep["bundles"][name]["n"] >= 30)
    assert [rep["bundles"][n]["role"] for n in heads] == ["development"] + ["held out"] * 3
    assert sum(m["bundles"] for k, m in rep["means"].items() if k.startswith("head_")) == 4
    assert cli.main(["localize", "--family", str(root)]) == 0
    assert "wet-ship" in capsys.readouterr().out
    assert cli.main(["localize"]) == 2 and "--family" in capsys.readouterr().err


def test_family_monitor_report_and_its_command(family, capsys):
    """Each bundle's misclassification monitors against maximum softmax (issue 24, part 5):
    the figures are the bundle's own `semheat monitor` figures, grouped like the localization
    report."""
    from semheat_widgets.engine.bundle import Bundle
    from semheat_widgets.engine.reports.monitors import monitor_report

    root, _ = family
    assert cli.main(["monitor", "--family", str(root), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert set(rep["bundles"]) == {"wet-ship", "head-mix", "head-bias", "head-noise",
                                   "head-damp"}
    own = monitor_report(Bundle.load(root / "wet-ship"))["misclassification"]
    tie = rep["bundles"]["wet-ship"]
    assert tie["detectors"]["msp"]["auroc"] == own["msp"]["auroc"]
    assert tie["detectors"][tie["monitor"]]["auroc"] == own[own["monitor"]]["auroc"]
    assert tie["monitor_at_least_msp"] == (own[own["monitor"]]["auroc"] >= own["msp"]["auroc"])
    assert sum(m["bundles"] for m in rep["means"].values()) == 5
    assert cli.main(["monitor", "--family", str(root)]) == 0
    assert "wet-ship" in capsys.readouterr().out
    assert cli.main(["monitor", str(root / "wet-ship"), "--family", str(root)]) == 2
    assert "not both" in capsys.readouterr().err


def test_round_two_holds_out_new_ties_and_makes_round_one_development():
    from semheat_widgets.zoo.family import DEVELOPMENT, FAMILY, ROUND_2, role

    new = {t.name for t in ROUND_2}
    assert len(new) == 10 and not new & {t.name for t in FAMILY}
    assert len({t.kind for t in ROUND_2}) >= 4 and len({t.cls for t in ROUND_2}) >= 6
    assert all(role(t.name, 2) == "held out" for t in ROUND_2)
    assert all(role(t.name, 2) == "development" for t in FAMILY)
    assert [role(t.name, 1) for t in FAMILY].count("development") == len(DEVELOPMENT) - 1
    assert tie_named("wet-equine") == Tie("wet", "equine", "background")


def test_a_family_of_one_round_is_not_completed_as_another(family):
    from semheat_widgets.zoo.family_build import build_family

    root, cache = family
    with pytest.raises(SemheatError, match="round") as caught:
        build_family(root, round=2, cache=cache, progress=False)
    assert caught.value.option == "round"


def test_the_consensus_rule_needs_its_probe():
    loc = FaultLocalizer(np.eye(3), np.zeros((3, 2)))
    with pytest.raises(SemheatError, match="fit_probe"):
        loc.localize(np.eye(3), np.zeros((3, 2)), [0, 1, 2], [1, 1, 2])
    with pytest.raises(SemheatError, match="unknown localization rule"):
        FaultLocalizer(np.eye(3), np.zeros((3, 2)), rule="vibes")
