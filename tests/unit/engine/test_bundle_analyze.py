"""The analysis pipeline end to end on tiny random models, and the bundle format."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch.utils.data import TensorDataset

from helpers.tiny import CLASSES, colour_images
from semheat_widgets.engine.bundle import files as bundle_files
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze, assign_splits
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.engine.bundle.schema import SCHEMA_VERSION
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.engine.heatmaps import ConfusionSums, heatmap
from semheat_widgets.engine.localize import FaultLocalizer
from semheat_widgets.errors import SchemaVersionError, SemheatError

CONCEPTS = [("red", ["red", "a red thing"]), ("green", ["green"]), ("blue", ["blue"]),
            ("dark", ["dark"]), ("bright", ["bright"])]


def _analyze(split, vlm, dataset, **kw):
    cfg = AnalysisConfig(attacks=(Attack("fgsm", 8 / 255), Attack("pgd", 8 / 255, steps=3)),
                         attack_limit=40, batch_size=32, thumb_size=16)
    return analyze(split, vlm, dataset, classes=CLASSES, concepts=ConceptBank(CONCEPTS),
                   config=cfg, name="tiny", progress=False, **kw)


@pytest.fixture(scope="module")
def built(tiny_split, tiny_vlm, colour_dataset):
    return _analyze(tiny_split, tiny_vlm, colour_dataset,
                    extra_columns={"note": np.array([f"img{i}" for i in range(96)])})


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory):
    path = tmp_path_factory.mktemp("bundles") / "tiny"
    built.save(path)
    return path


def test_records_cover_natural_and_attacked_inputs(built):
    assert built.n == 96 + 2 * 40
    kind = built.column("perturbation")
    assert (kind == "natural").sum() == 96
    assert (kind == "fgsm").sum() == 40 and (kind == "pgd").sum() == 40
    nat = kind == "natural"
    assert np.array_equal(built.column("source_id")[nat], np.arange(96))
    # attacked copies keep the split and extra columns of their source
    src = built.column("source_id")
    assert np.array_equal(built.column("split"), built.column("split")[src])
    assert np.array_equal(built.column("note"), np.array([f"img{i}" for i in src]))
    assert built.manifest["splits"] == {"fit": 48, "calib": 24, "eval": 24}
    assert np.array_equal(built.column("correct"),
                          built.column("label") == built.column("prediction"))
    assert built.arrays["scores"].shape == (176, 5)
    assert built.arrays["thumbs"].shape == (176, 16, 16, 3)


def test_scores_are_cosines_of_aligned_features_and_concepts(built, tiny_vlm):
    a = built.aligner.transform(np.asarray(built.arrays["features"]))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    t = ConceptBank(CONCEPTS).embed(tiny_vlm)
    assert np.allclose(built.scores(), a @ t.T, atol=1e-5)
    fid = built.manifest["aligner"]["fidelity"]
    assert set(fid) == {"fit", "calib", "eval"} and -1 <= fid["eval"]["mean_cosine"] <= 1


def test_bundle_heatmaps_equal_brute_force(built):
    hm = built.heatmap("incorrect", perturbation="natural")
    nat = built.mask(perturbation="natural")
    s = built.standardizer(built.scores()[nat].astype(np.float64))
    y, p = built.column("label")[nat], built.column("prediction")[nat]
    for k in range(len(CLASSES)):
        m = (p == k) & (y != p)
        assert hm.counts[k] == m.sum()
        if m.any():
            assert np.allclose(hm.values[k], s[m].mean(0))
        else:
            assert np.isnan(hm.values[k]).all()
    pgd = built.heatmap("output", perturbation="pgd", standardized=False)
    m = built.mask(perturbation="pgd")
    assert pgd.counts.sum() == m.sum()


def test_localization_columns_follow_the_localizer(built):
    fit = built.mask(perturbation="natural", split="fit")
    stats = ConfusionSums.from_scores(built.scores()[fit], built.column("label")[fit],
                                      built.column("prediction")[fit], len(CLASSES))
    gt = heatmap("ground_truth", stats, CLASSES, built.concept_names, built.standardizer).values
    z = built.standardizer(built.scores())
    cal = built.mask(perturbation="natural", split="calib")
    y = built.column("label")
    loc = FaultLocalizer(built.class_embeddings, gt).fit_probe(z[fit], y[fit], z[cal], y[cal])
    assert loc.probe_strength_ == built.manifest["localization"]["probe_strength"]
    out = loc.localize(np.asarray(built.arrays["aligned"]), z, y, built.column("prediction"))
    assert np.array_equal(built.column("fault"), out.verdict)
    assert np.array_equal(built.column("fault_paper"), out.paper_verdict)
    wrong = ~built.column("correct")
    assert set(built.column("fault")[wrong]) <= {"encoder", "head"}
    assert set(built.column("fault_paper")[wrong]) <= {"encoder", "head", "undecided"}
    assert set(built.column("fault")[~wrong]) == {""}


def test_monitor_columns_and_fitted_state(built):
    from semheat_widgets.engine.tasks import TASKS

    assert built.tasks == list(TASKS.values())
    for task in TASKS.values():
        info = built.monitor_info(task)
        assert info["available"] and info["target_fpr"] == 0.05 and info["monitor"] == "concept"
        score = built.column(task.column("score"))
        assert score.shape == (built.n,)
        mon = built.monitor(task)  # typed: its state, thresholds and own standardisation
        assert mon.name == "concept" and mon.thresholds_.shape == (len(CLASSES),)
        assert np.allclose(mon.score_samples(built.evidence()), score, rtol=1e-5, atol=1e-4)
        thr = mon.thresholds_[built.column("prediction")]
        clear = np.abs(score - thr) > 1e-4  # (a threshold is one of the calib scores)
        assert np.array_equal(built.column(task.column("flag"))[clear], (score > thr)[clear])
        # the paper's monitor is kept beside it, by name, with its own column
        paper = built.detector("heatmap", task)
        assert np.allclose(paper.score_samples(built.evidence()),
                           built.column(task.column("heatmap")), atol=1e-5)
        assert set(info["detectors"]["concept"]["weights"]) == set(
            info["detectors"]["concept"]["signals"])
    assert built.models.vlm == "test:tiny-clip" and built.class_embeddings.shape[0] == 4


def test_round_trip_is_exact(built, saved):
    again = Bundle.load(saved)
    assert again.records.equals(built.records)
    for key, arr in built.arrays.items():
        assert isinstance(again.arrays[key], np.memmap)
        assert np.array_equal(again.arrays[key], arr)
    assert set(again.state) == set(built.state)
    for key, arr in built.state.items():
        assert np.array_equal(again.state[key], arr)
    for key in ("classes", "concepts", "monitor", "aligner", "splits", "name"):
        assert again.manifest[key] == json.loads(json.dumps(built.manifest[key]))
    assert np.array_equal(again.heatmap("differential").values,
                          built.heatmap("differential").values, equal_nan=True)


def test_crash_mid_save_leaves_no_half_written_bundle(built, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = bundle_files._write_npy

    def failing(path, arr):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(path, arr)

    monkeypatch.setattr(bundle_files, "_write_npy", failing)
    target = tmp_path / "b"
    with pytest.raises(OSError, match="disk full"):
        built.save(target)
    # nothing left but the (hidden, empty) writer-lock file
    assert not target.exists() and [p.name for p in tmp_path.iterdir()] in ([], [".b.lock"])

    monkeypatch.setattr(bundle_files, "_write_npy", real)
    built.save(target)
    before = (target / "manifest.json").read_text()
    calls["n"] = 0
    monkeypatch.setattr(bundle_files, "_write_npy", failing)
    with pytest.raises(OSError):
        built.save(target, overwrite=True)
    assert (target / "manifest.json").read_text() == before  # the old bundle is intact
    assert Bundle.load(target).n == built.n
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.lock", "b"]
    with pytest.raises(SemheatError, match="exists"):
        built.save(target)


def test_other_schema_versions_and_broken_bundles_are_refused(saved, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(saved, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaVersionError, match="schema version 99"):
        Bundle.load(other)
    with pytest.raises(SemheatError, match="no manifest.json"):
        Bundle.load(tmp_path)
    manifest["schema_version"] = SCHEMA_VERSION
    (other / "manifest.json").write_text(json.dumps(manifest))
    (other / "arrays" / "scores.npy").unlink()
    with pytest.raises(SemheatError, match="scores.npy: no such bundle file"):
        Bundle.load(other)


def test_bundle_arrays_never_unpickle(saved, tmp_path):
    import shutil

    evil = tmp_path / "evil"
    shutil.copytree(saved, evil)
    np.save(evil / "arrays" / "scores.npy", np.array([object()], dtype=object), allow_pickle=True)
    with pytest.raises(SemheatError, match="scores.npy: cannot read: .*(pickle|Python objects)"):
        Bundle.load(evil)  # an object array would need pickle: refused


def test_query_matches_brute_force(saved):
    b = Bundle.load(saved)
    p, c = b.column("prediction"), b.column("correct")
    nat = b.column("perturbation") == "natural"
    for k in range(len(CLASSES)):
        sel = b.query(prediction=k, correct=False, sort_by="blue")
        expect = np.flatnonzero(nat & (p == k) & ~c)
        assert sel.total == len(expect) and set(sel.indices) == set(expect)
        col = b.concept_column("blue")
        assert np.all(np.diff(col[sel.indices]) <= 1e-12)  # descending by the concept
        assert np.allclose(sel.sort_values, col[sel.indices])
    page = b.query(perturbation=None, sort_by="confidence", descending=False, offset=5, limit=10)
    conf = b.column("confidence")
    assert np.array_equal(page.indices, np.argsort(conf, kind="stable")[5:15])
    cell = b.cell_query("differential", CLASSES[0], "red")
    assert np.array_equal(cell.indices, b.query(prediction=0, correct=False,
                                                sort_by="red").indices)
    rows = b.rows(cell.indices[:2], ["id", "label", "fault"])
    assert [r["id"] for r in rows] == cell.indices[:2].tolist()
    with pytest.raises(SemheatError, match="unknown class"):
        b.cell_query("differential", "zebra")


def test_add_concept_adds_a_column_and_persists(saved, tiny_vlm, tmp_path):
    b = Bundle.load(saved)
    j = b.add_concept("stripes", ["striped", "stripes"], vlm=tiny_vlm)
    assert j == 5 and b.concept_names[-1] == "stripes"
    t = ConceptBank([("stripes", ["striped", "stripes"])]).embed(tiny_vlm)[0]
    expect = np.asarray(b.arrays["aligned"]) @ t
    assert np.allclose(b.scores()[:, 5], expect, atol=1e-5)
    hm = b.heatmap("ground_truth")
    assert hm.values.shape == (len(CLASSES), 6) and hm.columns[-1] == "stripes"
    fit = b.mask(perturbation="natural", split="fit")
    z = (expect - expect[fit].mean()) / expect[fit].std()
    assert np.allclose(b.concept_column("stripes"), z, atol=1e-4)
    with pytest.raises(SemheatError, match="already exists"):
        b.add_concept("stripes", vlm=tiny_vlm)
    with pytest.raises(SemheatError, match="visible characters"):
        b.add_concept("   ", vlm=tiny_vlm)
    assert len(b.concept_names) == 6  # the failed additions lost nothing
    b.save(tmp_path / "more")
    again = Bundle.load(tmp_path / "more")
    assert again.concept_names == b.concept_names
    assert np.allclose(again.heatmap("ground_truth").values, hm.values, equal_nan=True)


def test_assign_splits_proportions_and_errors():
    s = assign_splits(1000, (0.5, 0.25, 0.25), seed=0)
    assert (s == "fit").sum() == 500 and (s == "calib").sum() == 250
    assert np.array_equal(s, assign_splits(1000, (0.5, 0.25, 0.25), seed=0))
    with pytest.raises(SemheatError):
        assign_splits(10, (0.5, 0.5, 0.5), 0)


def test_bad_analysis_input_is_a_clear_error(tiny_split, tiny_vlm):
    images, labels = colour_images(40)
    labels[labels == 2] = 1  # class "blue" has no examples
    data = TensorDataset(images, torch.from_numpy(labels))
    with pytest.raises(SemheatError, match="class 'blue' has no examples"):
        _analyze(tiny_split, tiny_vlm, data)
    with pytest.raises(SemheatError, match="4 outputs but 3 class names"):
        analyze(tiny_split, tiny_vlm, data, classes=CLASSES[:3], concepts=ConceptBank(["x"]),
                progress=False)
    with pytest.raises(SemheatError, match="concept bank is empty"):
        analyze(tiny_split, tiny_vlm, data, classes=CLASSES, concepts=ConceptBank(),
                progress=False)


def test_bundle_validates_its_parts():
    with pytest.raises(SemheatError, match="lack columns"):
        Bundle({"concepts": []}, pa.table({"id": [0]}), {}, {})


def test_reference_mode_fits_on_reference_and_evaluates_the_dataset(tiny_split, tiny_vlm):
    ref_images, ref_labels = colour_images(60, seed=1)
    test_images, test_labels = colour_images(36, seed=2)
    cfg = AnalysisConfig(attacks=(), batch_size=32, thumb_size=16)
    b = analyze(tiny_split, tiny_vlm, TensorDataset(test_images, torch.from_numpy(test_labels)),
                reference=TensorDataset(ref_images, torch.from_numpy(ref_labels)),
                classes=CLASSES, concepts=ConceptBank(CONCEPTS), config=cfg, progress=False,
                extra_columns={"domain": ["ref"] * 60 + ["test"] * 36})
    split, domain = b.column("split"), b.column("domain")
    assert b.n == 96
    assert set(split[domain == "ref"]) == {"fit", "calib"}
    assert (split[domain == "ref"] == "fit").sum() == 40  # 0.5 : 0.25 of the reference
    assert set(split[domain == "test"]) == {"eval"}
    assert np.array_equal(b.column("label"), np.r_[ref_labels, test_labels])
    with pytest.raises(SemheatError, match="extra column 'domain' has 3 values for 96"):
        analyze(tiny_split, tiny_vlm, TensorDataset(test_images, torch.from_numpy(test_labels)),
                reference=TensorDataset(ref_images, torch.from_numpy(ref_labels)),
                classes=CLASSES, concepts=ConceptBank(CONCEPTS), config=cfg, progress=False,
                extra_columns={"domain": ["a", "b", "c"]})


def test_successful_attacks_need_a_correct_source(built):
    from semheat_widgets.engine.tasks import task_named

    src_ok = built.column("correct")[built.column("source_id")]
    attacked = built.column("perturbation") != "natural"
    wrong = ~built.column("correct")
    assert np.array_equal(built.column("source_correct"), src_ok)
    defect = built.column("defect")
    assert (attacked & wrong & src_ok).any() and (attacked & wrong & ~src_ok).any()
    assert set(defect[attacked & wrong & src_ok]) <= {"adversarial"}
    assert set(defect[attacked & wrong & ~src_ok]) <= {"misclassified"}
    for split in ("calib", "eval"):
        _, positive = task_named("adversarial").masks(built, split)
        assert not (positive & ~src_ok).any()
        assert np.array_equal(positive, attacked & wrong & src_ok & built.mask(split=split))


def test_runtime_monitor_survives_added_concepts(saved, tiny_vlm, tiny_split, tmp_path):
    from semheat_widgets.engine.detect.heatmap_monitor import runtime_monitor

    b = Bundle.load(saved)
    images = colour_images(8, seed=3)[0]
    before = runtime_monitor(b, tiny_split)(images)[1]
    b.add_concept("stripes", vlm=tiny_vlm)
    after = runtime_monitor(b, tiny_split)(images)[1]
    assert torch.allclose(before, after)
    b.save(tmp_path / "more")
    again = runtime_monitor(Bundle.load(tmp_path / "more"), tiny_split)(images)[1]
    assert torch.allclose(before, again, atol=1e-5)


@pytest.mark.parametrize("damage, message", [
    ("state", "state.safetensors: cannot read"),
    ("manifest-keys", "manifest.json: field .*'concepts' is a required property"),
    ("array-name", "manifest.json: field arrays.*does not match")])
def test_damaged_bundles_are_one_line_errors(saved, tmp_path, damage, message):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(saved, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    if damage == "state":
        (broken / "state.safetensors").write_bytes(b"not a safetensors file")
    elif damage == "manifest-keys":
        del manifest["concepts"]
    else:
        manifest["arrays"]["../../etc/x"] = manifest["arrays"].pop("scores")
    (broken / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SemheatError, match=message) as err:
        Bundle.load(broken)
    assert "\n" not in str(err.value)
