"""The ``semheat`` command: JSON contracts and one-line errors."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from helpers.tiny import CLASSES
from semheat_widgets.cli import main
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.concepts.bank import ConceptBank


@pytest.fixture(scope="module")
def bundle_path(tiny_split, tiny_vlm, colour_dataset, tmp_path_factory):
    cfg = AnalysisConfig(attacks=(Attack("fgsm"), Attack("pgd", steps=2)), attack_limit=48,
                         batch_size=48, thumb_size=16)
    b = analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                concepts=ConceptBank(["red", "green", "blue"]), config=cfg, name="tiny",
                progress=False)
    path = tmp_path_factory.mktemp("cli") / "tiny"
    b.save(path)
    return path


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_monitor_json_contract(bundle_path, capsys):
    out = _json(capsys, ["monitor", str(bundle_path), "--json"])
    for task in ("misclassification", "adversarial"):
        t = out[task]
        assert set(t) >= {"n_positive", "n_negative", "target_fpr"}
        assert t.get("available", True) and t["n_positive"] > 0  # this bundle has both
        for det in ("concept", "heatmap", "msp", "energy", "mahalanobis"):
            assert 0.0 <= t[det]["auroc"] <= 1.0
            assert 0.0 <= t[det]["accuracy"] <= 1.0

    def keys(obj):
        if isinstance(obj, dict):
            for k, v in obj.items():
                yield k
                yield from keys(v)
        elif isinstance(obj, list):
            for v in obj:
                yield from keys(v)

    import re
    assert all(re.fullmatch(r"[a-z0-9_]+", k) for k in keys(out))  # snake_case keys


def test_localize_json_counts_match_the_records(bundle_path, capsys):
    from semheat_widgets.engine.bundle import Bundle

    out = _json(capsys, ["localize", str(bundle_path), "--json"])
    b = Bundle.load(bundle_path)
    nat = b.mask(perturbation="natural")
    wrong = nat & ~b.column("correct")
    assert out["n_misclassified"] == int(wrong.sum())
    fault = b.column("fault")[wrong]
    assert out["counts"] == {v: int((fault == v).sum()) for v in ("encoder", "head", "undecided")}
    assert "ground_truth" not in out  # not a toy bundle: no known answers


def test_info_and_text_output(bundle_path, capsys):
    info = _json(capsys, ["info", str(bundle_path), "--json"])
    assert info["n_records"] == 96 + 2 * 48 and info["concepts"] == ["red", "green", "blue"]
    assert main(["monitor", str(bundle_path)]) == 0
    assert "heatmap" in capsys.readouterr().out


def test_bench_json_quick(capsys):
    out = _json(capsys, ["bench", "--json", "--quick", "--records", "20000"])
    overheads = {f"{m}_overhead_b{b}" for m in ("monitor", "concept_monitor") for b in (1, 64)}
    for key in {"heatmaps", "add_concept", "extraction", "cell_query_ms", "concept_map_ms",
                *overheads}:
        assert isinstance(out[key], float) and out[key] > 0
    light = {"info_s", "info_vs_import_numpy_pyarrow", "load_s"}
    for key in light | {"verify_s", "import_numpy_pyarrow_s"}:
        assert isinstance(out[key], float) and out[key] > 0
    toy = {f"{c}{k}" for c in ("localize", "monitor") for k in ("_s", "_vs_import_numpy_pyarrow")
           if f"{c}_s" in out}  # when the toy world is built
    for key in toy:
        assert isinstance(out[key], float) and out[key] > 0
    discover = {"discover", "discover_seconds"}
    for key in discover:
        assert isinstance(out[key], float) and out[key] > 0
    assert set(out["goals_met"]) == {"heatmaps", "add_concept", "extraction", "concept_map_ms",
                                     *overheads, *light, *toy, *discover}


def test_monitor_explains_one_record(bundle_path, capsys):
    from semheat_widgets.engine.bundle import Bundle

    b = Bundle.load(bundle_path)
    thr = b.monitor("adversarial").thresholds_[b.column("prediction")]
    far = np.abs(b.column("adv_score") - thr) > 1e-3  # the flag does not hang on rounding
    i = int(np.flatnonzero(b.mask(perturbation="fgsm") & far)[0])
    out = _json(capsys, ["monitor", str(bundle_path), "--explain", str(i), "--json",
                         "--reasons", "4"])
    assert out["task"] == "adversarial" and out["monitor"] == "concept"
    assert out["defect_score"] == pytest.approx(float(b.column("adv_score")[i]), abs=2e-4)
    assert out["flagged"] == bool(b.column("adv_flag")[i])
    values = [v for _, v in out["reasons"]]
    assert len(values) == 4 and values == sorted(values, reverse=True)
    paper = _json(capsys, ["monitor", str(bundle_path), "--explain", str(i), "--json",
                           "--with", "heatmap"])
    assert paper["defect_score"] == pytest.approx(float(b.column("adv_heatmap")[i]), abs=2e-4)
    assert paper["sim_incorrect"] - paper["sim_correct"] == pytest.approx(
        paper["defect_score"], abs=2e-4)
    assert main(["monitor", str(bundle_path), "--explain", str(i)]) == 0
    text = capsys.readouterr().out
    assert f"record {i}" in text and "largest contributions" in text


@pytest.mark.parametrize("argv", [
    ["localize", "/no/such/bundle", "--json"],
    ["monitor", "{tmp}", "--json"],
    ["info", "{tmp}"],
    ["monitor", "{tmp}", "--explain", "-1"],
])
def test_bad_input_exits_non_zero_with_one_line(argv, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", *argv],
                          capture_output=True, text=True)
    assert proc.returncode != 0
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"semheat( \w+)?: error:", lines[0])  # argparse: +cmd


def test_toy_build_refuses_a_non_empty_foreign_directory(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["toy", "build", str(tmp_path), "--quiet"]) == 2
    assert "refusing to replace" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
    assert np.array_equal(sorted(p.name for p in tmp_path.iterdir()), ["precious.txt"])


def test_version_matches_the_installed_distribution(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"semheat {version('semheat_widgets')}"
