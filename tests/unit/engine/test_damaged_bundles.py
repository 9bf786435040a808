"""Strict readers: every damaged bundle or toy world gives exactly one ``SemheatError`` line
naming the file (and the field), within seconds — never a traceback, a hang or a silently wrong
heatmap. The damage is made programmatically from one valid bundle; a property-based test
mutates manifest fields at random on top of the hand-written cases."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from safetensors.numpy import load_file, save_file

from helpers.guards import no_hang
from semheat_widgets import cli
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.errors import SemheatError
from helpers.json_walk import json_paths

SECONDS = 20  # a generous bound for one load on a loaded CI machine; a hang fails, not waits


@pytest.fixture(scope="module")
def good(small_bundle):
    return small_bundle


# -- the damage ------------------------------------------------------------------------------
def _manifest(path, change):
    m = json.loads((path / "manifest.json").read_text())
    change(m)
    (path / "manifest.json").write_text(json.dumps(m))


def _set(*keys, value):
    def change(m):
        target = m
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return change


def _delete(*keys):
    def change(m):
        target = m
        for k in keys[:-1]:
            target = target[k]
        del target[keys[-1]]
    return change


def _records(path, change):
    table = pq.read_table(path / "records.parquet")
    pq.write_table(change(table), path / "records.parquet")


def _replace_column(name, values):
    def change(table):
        i = table.column_names.index(name)
        return table.set_column(i, name, values)
    return change


def _array(name, change):
    def damage(path):
        f = path / "arrays" / f"{name}.npy"
        arr = np.load(f)
        np.save(f, change(arr.copy()))
    return damage


def _nan_first(arr):
    arr.reshape(-1)[0] = np.nan
    return arr


def _inf_last(arr):
    arr.reshape(-1)[-1] = np.inf
    return arr


def _state(change):
    def damage(path):
        f = path / "state.safetensors"
        state = dict(load_file(str(f)))
        change(state)
        save_file(state, str(f))
    return damage


def _fifo(relative):
    def damage(path):
        target = path / relative
        target.unlink()
        os.mkfifo(target)
    return damage


def _write(relative, data: bytes):
    def damage(path):
        (path / relative).write_bytes(data)
    return damage


def _truncate(relative, keep=0.5):
    def damage(path):
        f = path / relative
        data = f.read_bytes()
        f.write_bytes(data[:int(len(data) * keep)])
    return damage


def _remove(relative):
    return lambda path: (path / relative).unlink()


DEEP = ("[" * 200_000 + "]" * 200_000).encode()

# (id, damage, words the one-line message must contain)
DAMAGE = [
    # manifest.json: JSON itself
    ("manifest-not-json", _write("manifest.json", b"{not json"), "manifest.json"),
    ("manifest-not-utf8", _write("manifest.json", b"\xff\xfe{\x00}"), "not UTF-8"),
    ("manifest-null", _write("manifest.json", b"null"), "JSON object"),
    ("manifest-list", _write("manifest.json", b"[1, 2]"), "JSON object"),
    ("manifest-deep", _write("manifest.json", DEEP), "manifest.json"),
    ("manifest-nan", lambda p: (p / "manifest.json").write_text(
        (p / "manifest.json").read_text().replace('"n_records"', '"accuracy": NaN, "n_records"',
                                                   1)), "non-finite"),
    ("manifest-empty", _write("manifest.json", b""), "manifest.json"),
    ("manifest-fifo", _fifo("manifest.json"), "not a regular file"),
    ("manifest-dir", lambda p: ((p / "manifest.json").unlink(), (p / "manifest.json").mkdir()),
     "not a regular file"),
    # manifest.json: fields
    ("format", lambda p: _manifest(p, _set("format", value="other")), "format"),
    ("version-99", lambda p: _manifest(p, _set("schema_version", value=99)), "schema version"),
    ("version-str", lambda p: _manifest(p, _set("schema_version", value="1")), "schema version"),
    ("classes-str", lambda p: _manifest(p, _set("classes", value="red")), "classes"),
    ("classes-int", lambda p: _manifest(p, _set("classes", 1, value=5)), "classes[1]"),
    ("classes-empty-name", lambda p: _manifest(p, _set("classes", 0, value="")), "classes[0]"),
    ("classes-empty", lambda p: _manifest(p, _set("classes", value=[])), "classes"),
    ("classes-dup", lambda p: _manifest(p, _set("classes", 1, value="red")), "appears twice"),
    ("classes-fewer", lambda p: _manifest(p, lambda m: m["classes"].pop()), "label"),
    ("concepts-missing", lambda p: _manifest(p, _delete("concepts")), "concepts"),
    ("concept-name-empty", lambda p: _manifest(p, _set("concepts", 0, "name", value="")),
     "concepts[0].name"),
    ("concept-name-null", lambda p: _manifest(p, _set("concepts", 0, "name", value=None)),
     "concepts[0].name"),
    ("concepts-dup", lambda p: _manifest(p, _set("concepts", 1, "name", value="red")),
     "appears twice"),
    ("concept-prompts", lambda p: _manifest(p, _set("concepts", 0, "prompts", value="red")),
     "concepts[0].prompts"),
    ("concepts-fewer", lambda p: _manifest(p, lambda m: m["concepts"].pop()), "concepts"),
    ("n-records-negative", lambda p: _manifest(p, _set("n_records", value=-1)), "n_records"),
    ("n-records-str", lambda p: _manifest(p, _set("n_records", value="12")), "n_records"),
    ("n-records-wrong", lambda p: _manifest(p, _set("n_records", value=7)), "n_records"),
    ("arrays-traversal", lambda p: _manifest(
        p, lambda m: m["arrays"].__setitem__("../../x", m["arrays"]["scores"])), "arrays"),
    ("arrays-dtype-object", lambda p: _manifest(p, _set("arrays", "scores", "dtype",
                                                        value="object")), "arrays.scores.dtype"),
    ("arrays-dtype-differs", lambda p: _manifest(p, _set("arrays", "scores", "dtype",
                                                         value="float64")), "dtype"),
    ("arrays-shape-differs", lambda p: _manifest(p, _set("arrays", "scores", "shape",
                                                         value=[5, 5])), "shape"),
    ("arrays-shape-negative", lambda p: _manifest(p, _set("arrays", "scores", "shape", 0,
                                                          value=-3)), "arrays.scores.shape[0]"),
    ("arrays-no-scores", lambda p: _manifest(p, _delete("arrays", "scores")), "arrays.scores"),
    ("arrays-not-object", lambda p: _manifest(p, _set("arrays", value=[])), "arrays"),
    ("monitor-similarity", lambda p: _manifest(
        p, _set("monitor", "misclassification", "similarity", value="manhattan")),
     "monitor.misclassification.similarity"),
    ("accuracy-out-of-range", lambda p: _manifest(p, _set("accuracy", value=2.5)), "accuracy"),
    ("class-prompts-bad", lambda p: _manifest(p, _set("class_prompts", value={"red": "x"})),
     "class_prompts.red"),
    # records.parquet
    ("records-missing", _remove("records.parquet"), "records.parquet"),
    ("records-garbage", _write("records.parquet", b"PAR1 garbage PAR1"), "records.parquet"),
    ("records-truncated", _truncate("records.parquet"), "records.parquet"),
    ("records-fifo", _fifo("records.parquet"), "not a regular file"),
    ("label-missing", lambda p: _records(p, lambda t: t.drop_columns(["label"])), "label"),
    ("label-out-of-range", lambda p: _records(p, _replace_column(
        "label", pa.array(np.full(pq.read_table(p / "records.parquet").num_rows, 9, np.int16)))),
     "class index"),
    ("label-null", lambda p: _records(p, _replace_column(
        "label", pa.array([None] * pq.read_table(p / "records.parquet").num_rows,
                          type=pa.int16()))), "null"),
    ("label-str", lambda p: _records(p, _replace_column(
        "label", pa.array(["red"] * pq.read_table(p / "records.parquet").num_rows))),
     "column label"),
    ("correct-contradicts", lambda p: _records(p, lambda t: t.set_column(
        t.column_names.index("correct"), "correct",
        pa.array(~np.asarray(t.column("correct").to_numpy(zero_copy_only=False))))),
     "contradicts"),
    ("split-unknown", lambda p: _records(p, _replace_column(
        "split", pa.array(["train"] * pq.read_table(p / "records.parquet").num_rows))),
     "unknown split"),
    ("msp-nan", lambda p: _records(p, _replace_column(
        "msp", pa.array(np.full(pq.read_table(p / "records.parquet").num_rows, np.nan,
                                np.float32)))), "msp"),
    ("score-column-inf", lambda p: _records(p, _replace_column(
        "misclf_score", pa.array(np.full(pq.read_table(p / "records.parquet").num_rows, np.inf,
                                         np.float32)))), "misclf_score"),
    ("records-fewer", lambda p: _records(p, lambda t: t.slice(0, 10)), "n_records"),
    # arrays/*.npy
    ("scores-missing", _remove("arrays/scores.npy"), "scores.npy"),
    ("scores-truncated", _truncate("arrays/scores.npy", 0.6), "scores.npy"),
    ("scores-garbage", _write("arrays/scores.npy", b"\x93NUMPY garbage"), "scores.npy"),
    ("scores-reshaped", _array("scores", lambda a: a[:, :2].copy()), "scores.npy"),
    ("scores-float64", _array("scores", lambda a: a.astype(np.float64)), "dtype"),
    ("scores-pickled", lambda p: np.save(p / "arrays" / "scores.npy",
                                         np.array([object()], dtype=object), allow_pickle=True),
     "scores.npy"),
    ("scores-fifo", _fifo("arrays/scores.npy"), "not a regular file"),
    ("features-rows", _array("features", lambda a: a[:-3].copy()), "features.npy"),
    ("thumbs-float", _array("thumbs", lambda a: a.astype(np.float32)), "thumbs.npy"),
    ("aligned-fifo", _fifo("arrays/aligned.npy"), "not a regular file"),
    # state.safetensors
    ("state-missing", _remove("state.safetensors"), "state.safetensors"),
    ("state-garbage", _write("state.safetensors", b"not a safetensors file"),
     "state.safetensors"),
    ("state-truncated", _truncate("state.safetensors"), "state.safetensors"),
    ("state-fifo", _fifo("state.safetensors"), "not a regular file"),
    ("state-no-std", _state(lambda s: s.pop("standardizer.std")), "standardizer.std"),
    ("state-zero-std", _state(lambda s: s.__setitem__(
        "standardizer.std", np.zeros_like(s["standardizer.std"]))), "zero spread"),
    ("state-nan", _state(lambda s: s.__setitem__("aligner.W", s["aligner.W"] * np.nan)),
     "aligner.W"),
    ("state-concepts-shape", _state(lambda s: s.__setitem__(
        "concept_embeddings", s["concept_embeddings"][:2].copy())), "concept_embeddings"),
    ("state-monitor-rows", _state(lambda s: s.__setitem__(
        "detector.misclassification.heatmap.correct_rows",
        s["detector.misclassification.heatmap.correct_rows"][:2].copy())), "correct_rows"),
    ("state-map-aligner-half", _state(lambda s: s.pop("map_aligner.fit_aligned")),
     "map_aligner.fit_aligned"),
    ("state-map-aligner-shape", _state(lambda s: s.__setitem__(
        "map_aligner.b", s["map_aligner.b"][:3].copy())), "map_aligner.b"),
    ("state-map-aligner-vector", _state(lambda s: s.__setitem__(
        "map_aligner.W", s["map_aligner.W"][0].copy())), "map_aligner.W must be a matrix"),
    # the folder itself
    ("bundle-is-file", lambda p: (shutil.rmtree(p), p.write_text("x")), "not a bundle"),
    ("bundle-missing", lambda p: shutil.rmtree(p), "no such bundle"),
    ("bundle-no-manifest", _remove("manifest.json"), "no manifest.json"),
]


def _damaged(good, tmp_path, damage):
    path = tmp_path / "bundle"
    shutil.copytree(good, path)
    damage(path)
    return path


@pytest.mark.parametrize("damage, words", [d[1:] for d in DAMAGE], ids=[d[0] for d in DAMAGE])
def test_damaged_bundle_is_one_line_error(good, tmp_path, capsys, damage, words):
    path = _damaged(good, tmp_path, damage)
    with no_hang(SECONDS):
        with pytest.raises(SemheatError) as err:
            Bundle.load(path)
    message = str(err.value)
    assert "\n" not in message and len(message) < 400
    assert words.lower() in message.lower(), message
    # the command line says the same in one line on stderr, exit status 2
    with no_hang(SECONDS):
        status = cli.main(["info", str(path), "--json"])
    out, errors = capsys.readouterr()
    assert status == 2 and out == ""
    assert errors.count("\n") == 1 and errors.startswith("semheat: error: ")


# values inside the arrays: loading reads only their headers (O(1)); the full scan is
# `semheat verify`, and a heatmap over damaged scores says so instead of drawing NaN
VALUE_DAMAGE = [
    ("scores-nan", _array("scores", _nan_first), "scores.npy: NaN"),
    ("scores-inf", _array("scores", _inf_last), "scores.npy: NaN or inf"),
    ("logits-nan", _array("logits", _nan_first), "logits.npy: NaN or inf"),
    ("features-inf", _array("features", _inf_last), "features.npy: NaN or inf"),
]


@pytest.mark.parametrize("damage, words", [d[1:] for d in VALUE_DAMAGE],
                         ids=[d[0] for d in VALUE_DAMAGE])
def test_damaged_values_are_found_by_verify_not_by_load(good, tmp_path, capsys, damage, words):
    path = _damaged(good, tmp_path, damage)
    b = Bundle.load(path)  # headers only: the damage is not read
    assert isinstance(b.arrays["features"], np.memmap)
    with pytest.raises(SemheatError) as err:
        b.verify()
    assert words in str(err.value) and "\n" not in str(err.value)
    assert cli.main(["verify", str(path), "--json"]) == 2
    out, errors = capsys.readouterr()
    assert out == "" and errors.count("\n") == 1 and words in errors
    if "scores" in words:
        with pytest.raises(SemheatError, match="semheat verify"):
            b.heatmap("ground_truth", perturbation=None)  # every record, the damaged one too


def test_verify_passes_the_undamaged_bundle(good, capsys):
    assert cli.main(["verify", str(good), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and set(report["arrays"]) >= {"scores", "logits", "features"}
    assert report["bytes_checked"] == sum(
        (good / "arrays" / f"{k}.npy").stat().st_size for k in report["arrays"]) - sum(
        _header_bytes(good / "arrays" / f"{k}.npy") for k in report["arrays"])


def _header_bytes(path) -> int:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        read(f)
        return f.tell()


def test_the_undamaged_bundle_loads(good):
    b = Bundle.load(good)
    assert b.n > 0 and np.isfinite(b.heatmap("differential").values[~np.isnan(
        b.heatmap("differential").values)]).all()


def test_a_fifo_cannot_hang_the_cli(good, tmp_path):
    """The real command in its own process: a FIFO in arrays/ used to hang `semheat info`."""
    path = _damaged(good, tmp_path, _fifo("arrays/scores.npy"))
    done = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", "info", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not a regular file" in done.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_file_is_one_line(good, tmp_path):
    path = _damaged(good, tmp_path, lambda p: os.chmod(p / "state.safetensors", 0))
    with pytest.raises(SemheatError, match="permission denied"):
        Bundle.load(path)


# -- wrong questions to a good bundle --------------------------------------------------------
def test_unknown_perturbations_and_splits_are_errors_not_empty_heatmaps(good):
    b = Bundle.load(good)
    with pytest.raises(SemheatError, match="unknown perturbation 'pgd'"):
        b.heatmap("differential", perturbation="pgd")  # this bundle has no PGD inputs
    with pytest.raises(SemheatError, match="unknown split 'train'"):
        b.heatmap("differential", split="train")
    assert b.heatmap("output", perturbation="fgsm").counts.sum() == 16  # the attacked inputs


def test_bad_concept_vectors_are_refused(good):
    b = Bundle.load(good)
    m = b.arrays["aligned"].shape[1]
    for vector in (np.full(m, np.nan), np.zeros(m)):
        with pytest.raises(SemheatError, match="zero or holds NaN"):
            b.add_concept("bad", vector=vector)
    assert "bad" not in b.concept_names


# -- toy worlds ------------------------------------------------------------------------------
WORLD_DAMAGE = [
    ("not-json", b"{", "world.json"),
    ("null", b"null", "not a toy world"),
    ("list", b"[]", "not a toy world"),
    ("traversal", json.dumps({"format": "semheat-toy-world", "bundles": ["../x"],
                              "primary": "../x"}).encode(), "bundles[0]"),
    ("primary", json.dumps({"format": "semheat-toy-world", "bundles": ["good"],
                            "primary": "clean"}).encode(), "primary"),
    ("no-bundles", json.dumps({"format": "semheat-toy-world", "primary": "good"}).encode(),
     "bundles"),
    ("bundles-not-list", json.dumps({"format": "semheat-toy-world", "bundles": "good",
                                     "primary": "good"}).encode(), "bundles"),
    ("not-utf8", b"\xff\xff", "not UTF-8"),
]


@pytest.mark.parametrize("data, words", [d[1:] for d in WORLD_DAMAGE],
                         ids=[d[0] for d in WORLD_DAMAGE])
def test_damaged_world_is_one_line_error(good, tmp_path, capsys, data, words):
    world = tmp_path / "world"
    world.mkdir()
    shutil.copytree(good, world / "good")
    (world / "world.json").write_bytes(data)
    for command in ("info", "localize", "monitor"):
        with no_hang(SECONDS):
            status = cli.main([command, str(world), "--json"])
        out, errors = capsys.readouterr()
        assert status == 2 and errors.count("\n") == 1, errors
        assert words.lower() in errors.lower(), errors


def test_world_json_fifo_does_not_hang(good, tmp_path, capsys):
    world = tmp_path / "world"
    world.mkdir()
    os.mkfifo(world / "world.json")
    with no_hang(SECONDS):
        status = cli.main(["info", str(world)])
    assert status == 2 and "not a regular file" in capsys.readouterr().err


def test_world_with_other_primary_is_monitored(good, tmp_path, capsys):
    """A world without a ``clean`` bundle reports its own primary bundle."""
    world = tmp_path / "world"
    world.mkdir()
    shutil.copytree(good, world / "good")
    (world / "world.json").write_text(json.dumps(
        {"format": "semheat-toy-world", "bundles": ["good"], "primary": "good"}))
    assert cli.main(["monitor", str(world), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["primary"] == "good" and "misclassification" in result


# -- property-based: random values in random manifest fields ----------------------------------
def test_random_manifest_mutations_never_escape(good, tmp_path):
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    manifest = json.loads((good / "manifest.json").read_text())
    path = tmp_path / "b"
    shutil.copytree(good, path)

    fields = [p for p in json_paths(manifest, items=3) if p]
    values = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6)
                          | st.floats(allow_nan=False) | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                          max_leaves=6)

    @hypothesis.settings(max_examples=150, deadline=None, database=None,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(field=st.sampled_from(fields), value=values)
    def check(field, value):
        m = json.loads(json.dumps(manifest))
        target = m
        for k in field[:-1]:
            target = target[k]
        target[field[-1]] = value
        (path / "manifest.json").write_text(json.dumps(m))
        try:
            Bundle.load(path)
        except SemheatError as exc:
            assert "\n" not in str(exc)

    check()
