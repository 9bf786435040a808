"""Analysis in bounded memory: arrays built in place, read chunk by chunk, same bundle."""

import json
import mmap

import numpy as np
import pyarrow.compute as pc
import pytest

from helpers.tiny import CLASSES
from semheat_widgets.bench.scale import (CONCEPTS, N_CLASSES, SyntheticClassifier,
                                         SyntheticExtractor, SyntheticInputs, SyntheticVLM,
                                         run_scale)
from semheat_widgets.engine.models.aligner import LinearAligner, fit_best_alpha
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.engine.detect.baselines import Mahalanobis
from semheat_widgets.engine.detect.protocol import Evidence, RowView
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.engine.bundle.store import ArrayStore, array_chunks, read_rows
from semheat_widgets.errors import SemheatError

CONCEPT_BANK = [("red", ["red"]), ("green", ["green"]), ("blue", ["blue"]), ("dark", ["dark"])]


def _run(split, vlm, data, **kw):
    cfg = AnalysisConfig(attacks=(Attack("fgsm", 8 / 255),), attack_limit=24, batch_size=16,
                         thumb_size=16)
    return analyze(split, vlm, data, classes=CLASSES, concepts=ConceptBank(CONCEPT_BANK),
                   config=cfg, name="stream", progress=False, **kw)


def _same_bundles(a: Bundle, b: Bundle):
    skip = {"created"}
    assert {k: v for k, v in a.manifest.items() if k not in skip} == \
        {k: v for k, v in b.manifest.items() if k not in skip}
    assert a.records.column_names == b.records.column_names
    for name in a.records.column_names:
        assert a.records.column(name).equals(b.records.column(name)), name
    assert set(a.arrays) == set(b.arrays)
    for key in a.arrays:
        np.testing.assert_array_equal(np.asarray(a.arrays[key]), np.asarray(b.arrays[key]))
    assert set(a.state) == set(b.state)
    for key in a.state:
        np.testing.assert_array_equal(a.state[key], b.state[key])


def test_built_in_place_equals_built_in_memory(tiny_split, tiny_vlm, colour_dataset, tmp_path):
    in_memory = _run(tiny_split, tiny_vlm, colour_dataset)
    in_memory.save(tmp_path / "memory")
    streamed = _run(tiny_split, tiny_vlm, colour_dataset, save_to=tmp_path / "streamed")
    assert streamed.path == (tmp_path / "streamed").resolve()
    assert isinstance(streamed.arrays["features"], np.memmap)  # opened from disk
    _same_bundles(Bundle.load(tmp_path / "memory"), streamed)
    # nothing but the bundle and its lock were left beside it
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == \
        ["memory", "streamed"]


def test_a_failed_analysis_leaves_the_old_bundle(tiny_split, tiny_vlm, colour_dataset, tmp_path,
                                                 monkeypatch):
    out = _run(tiny_split, tiny_vlm, colour_dataset, save_to=tmp_path / "b").path
    before = json.loads((out / "manifest.json").read_text())
    import semheat_widgets.engine.pipeline.stages as pipeline

    def broken(*a, **k):
        raise RuntimeError("boom in the detectors")

    monkeypatch.setattr(pipeline, "fit_detectors", broken)
    with pytest.raises(RuntimeError, match="boom"):
        _run(tiny_split, tiny_vlm, colour_dataset, save_to=out, overwrite=True)
    assert json.loads((out / "manifest.json").read_text()) == before
    assert Bundle.load(out).n == before["n_records"]
    assert [p.name for p in tmp_path.iterdir() if p.name not in ("b",) and
            not p.name.endswith((".lock", ".lock.json"))] == []  # no half-built folder left
    with pytest.raises(SemheatError, match="exists"):  # and no overwrite without asking
        _run(tiny_split, tiny_vlm, colour_dataset, save_to=out)


def test_user_folder_with_other_files_is_refused(tiny_split, tiny_vlm, colour_dataset, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(SemheatError):
        _run(tiny_split, tiny_vlm, colour_dataset, save_to=mine, overwrite=True)
    assert (mine / "thesis.tex").read_text() == "precious"


def test_store_allocates_on_first_write_and_checks_rows(tmp_path):
    store = ArrayStore(10, tmp_path / "arrays")
    store.write("x", 0, np.ones((4, 3), np.float32))
    store.write("x", 4, 2 * np.ones((6, 3), np.float32))
    assert isinstance(store["x"], np.memmap)
    np.testing.assert_array_equal(np.load(tmp_path / "arrays" / "x.npy")[:, 0],
                                  [1, 1, 1, 1, 2, 2, 2, 2, 2, 2])
    with pytest.raises(SemheatError, match="outside"):
        store.write("x", 8, np.ones((3, 3), np.float32))
    with pytest.raises(SemheatError, match="does not fit"):
        store.write("x", 0, np.ones((1, 4), np.float32))
    with pytest.raises(SemheatError, match="no array"):
        store["y"]


def test_chunks_hold_a_bounded_number_of_bytes():
    wide = np.zeros((1000, 64, 64, 3), np.uint8)  # 12 KiB a row
    chunks = list(array_chunks(wide, budget=100_000))
    assert all(c.stop - c.start <= 8 for c in chunks)
    assert chunks[0].start == 0 and chunks[-1].stop == 1000
    assert sum(c.stop - c.start for c in chunks) == 1000


def test_reading_a_chunk_releases_the_mapped_pages(tmp_path):
    path = tmp_path / "big.npy"
    np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(4096, 1024))[:] = 1.0
    array = np.load(path, mmap_mode="r")
    if not hasattr(mmap, "MADV_DONTNEED"):
        pytest.skip("no madvise on this platform")
    out = read_rows(array, slice(0, 4096))
    assert out.sum() == 4096 * 1024 and not isinstance(out, np.memmap)
    with open("/proc/self/smaps") as f:  # the map's resident size is back to (almost) zero
        text = f.read()
    block = text[text.index(str(path)):]
    rss_kb = int(block.split("Rss:")[1].split("kB")[0])
    assert rss_kb < 16 * 1024 // 4  # well under the 16 MiB it held while being read


def test_chunked_fits_equal_whole_array_fits(tmp_path):
    rng = np.random.default_rng(0)
    Z = rng.standard_normal((3000, 20)).astype(np.float32)
    E = (Z @ rng.standard_normal((20, 8)) + 0.1 * rng.standard_normal((3000, 8))).astype(
        np.float32)
    np.save(tmp_path / "z.npy", Z)
    Zm = np.load(tmp_path / "z.npy", mmap_mode="r")
    rows = np.arange(0, 3000, 2)
    whole = LinearAligner(alpha=0.1).fit(Z[rows], E[rows])
    chunked = LinearAligner(alpha=0.1, chunk_size=97).fit(Zm, E, rows)
    np.testing.assert_allclose(chunked.W_, whole.W_, rtol=1e-4, atol=1e-5)
    best, r2 = fit_best_alpha(Zm, E, rows, np.arange(1, 3000, 2))
    assert set(r2) and best.alpha == max(r2, key=r2.get)
    assert best.fidelity(Zm, E, np.arange(1, 3000, 2))["r2"] == pytest.approx(r2[best.alpha])

    labels = np.arange(3000) % 3
    logits = np.eye(3)[labels].astype(np.float32)
    in_memory = Mahalanobis().fit(Evidence(logits, Z, labels=labels))
    mapped = Mahalanobis().fit(Evidence(logits, Zm, labels=labels))
    # the whitened scoring gives pytorch-ood's own numbers
    import torch
    np.testing.assert_allclose(in_memory.score_samples(Evidence(logits, Z)),
                               in_memory.detector_.predict_features(torch.as_tensor(Z)).numpy(),
                               rtol=1e-3, atol=1e-7)
    view = Evidence(logits, Zm, labels=labels).take(rows)
    assert isinstance(view.features, RowView)
    np.testing.assert_allclose(mapped.score_samples(Evidence(logits, Zm)),
                               in_memory.score_samples(Evidence(logits, Z)), rtol=1e-4)
    np.testing.assert_allclose(Mahalanobis().fit(view).score_samples(view),
                               Mahalanobis().fit(Evidence(logits[rows], Z[rows],
                                                          labels=labels[rows])).score_samples(
                                   Evidence(logits[rows], Z[rows])), rtol=1e-4)


def test_synthetic_extractor_gives_a_real_analysis(tmp_path):
    """The benchmark's records go through the whole pipeline: well-formed and sensible."""
    result = run_scale(6000, tmp_path / "scale", attack_share=0.05)
    assert result["records"] == 6000 + 2 * 300
    assert 0.6 < result["accuracy"] < 0.95  # a classifier that makes mistakes to analyse
    b = Bundle.load(tmp_path / "scale")
    assert b.concept_names == CONCEPTS and len(b.classes) == N_CLASSES
    assert b.manifest["aligner"]["fidelity"]["eval"]["r2"] > 0.5  # embeddings follow features
    assert b.arrays["thumbs"].shape == (6600, 64, 64, 3)
    assert b.monitor_info("adversarial")["available"]
    fit = pc.equal(b.records.column("split"), "fit").to_numpy(zero_copy_only=False)
    assert (fit & b.mask(perturbation="natural")).sum() == pytest.approx(0.5 * 6000, abs=20)


def test_synthetic_pieces_are_deterministic():
    vlm = SyntheticVLM()
    a, b = vlm.encode_texts(["a cat", "a dog"]), vlm.encode_texts(["a cat"])
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert np.allclose(np.linalg.norm(a.numpy(), axis=1), 1)
    assert SyntheticClassifier.num_classes == N_CLASSES
    assert len(SyntheticInputs(50)) == 50 and SyntheticExtractor.writes_into


def test_monitor_fit_rows_are_capped_keeping_the_rare_defects():
    from semheat_widgets.engine.detect.fit import cap_rows

    rng = np.random.default_rng(0)
    flagged = np.zeros(100_000, bool)
    flagged[rng.choice(100_000, 300, replace=False)] = True  # rare defects
    rows = np.arange(0, 100_000, 2)
    picked = cap_rows(rows, flagged, 1000, rng)
    assert len(picked) == 1000 and np.all(np.diff(picked) > 0) and np.isin(picked, rows).all()
    assert flagged[picked].sum() == flagged[rows].sum()  # every defect kept (fewer than half)
    common = np.arange(100_000) % 4 != 0  # defects common: half the limit each
    assert common[cap_rows(rows, common, 1000, rng)].sum() == 500
    assert len(cap_rows(rows, np.ones(100_000, bool), 1000, rng)) == 1000  # no correct ones
    assert cap_rows(rows[:10], flagged, 1000, rng).tolist() == rows[:10].tolist()  # all fit


def test_at_scale_the_aligner_reads_a_sample_of_each_split(tiny_split, tiny_vlm, colour_dataset,
                                                           monkeypatch):
    """Past ALIGNER_ROWS records a split is sampled for the aligner's fit (seeded: the same
    bundle twice), while its fidelity is still measured on every record of the split."""
    import semheat_widgets.engine.pipeline.stages as stages

    whole = _run(tiny_split, tiny_vlm, colour_dataset)
    monkeypatch.setattr(stages, "ALIGNER_ROWS", 20)
    sampled = _run(tiny_split, tiny_vlm, colour_dataset)
    again = _run(tiny_split, tiny_vlm, colour_dataset)
    n_fit = int((sampled.column("split") == "fit").sum() - sampled.mask(perturbation="fgsm")[
        sampled.column("split") == "fit"].sum())
    assert n_fit > 20  # so the sample is smaller than the split
    assert sampled.manifest["aligner"]["fidelity"]["fit"]["n"] == n_fit
    assert not np.array_equal(sampled.state["aligner.W"], whole.state["aligner.W"])
    assert np.array_equal(sampled.state["aligner.W"], again.state["aligner.W"])

