"""Extraction on Ray Data (a local Ray with num_cpus=2 started here): same records, fault
tolerance, resuming, and the error without the extra."""

import builtins

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from semheat_widgets.data.toy.dataset import ToyDataset
from semheat_widgets.data.toy.world import CLASSES, ToyWorld
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.extract import extract
from semheat_widgets.errors import SemheatError
from semheat_widgets.zoo.build import toy_concepts
from semheat_widgets.zoo.models import toy_classifier, toy_vlm

ray = pytest.importorskip("ray")
from semheat_widgets.engine.extract.on_ray import CRASH_ONCE_ENV, RayExtractor  # noqa: E402

CRASH_AT = 150


@pytest.fixture(scope="module")
def local_ray(tmp_path_factory):
    marker = tmp_path_factory.mktemp("ray") / "crashed"
    marker.write_text("disarmed")  # the crash hook fires only while this file is absent
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {CRASH_ONCE_ENV: f"{marker}:{CRASH_AT}"}})
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def toy():
    d = ToyDataset(ToyWorld(seed=21), 0, 400)
    data = TensorDataset(d.render_all(), torch.from_numpy(d.labels))
    return toy_classifier("clean", "cpu"), toy_vlm("cpu"), data


def _same(a, b):
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.logits.argmax(1), b.logits.argmax(1))
    assert np.allclose(a.features, b.features, atol=1e-4)
    assert np.allclose(a.image_emb, b.image_emb, atol=1e-4)
    assert np.array_equal(a.thumbs, b.thumbs)


def test_ray_and_local_paths_give_the_same_records(local_ray, toy, tmp_path):
    split, vlm, data = toy
    local = extract(split, vlm, data, batch_size=64, progress=False)
    on_ray = RayExtractor(shard_size=128, work_dir=tmp_path)(split, vlm, data, batch_size=64,
                                                              progress=False)
    _same(local, on_ray)


def test_the_bundle_is_the_same_bundle(local_ray, toy, tmp_path):
    split, vlm, data = toy
    cfg = AnalysisConfig(attacks=(Attack("pgd", steps=2),), attack_limit=64, batch_size=64)
    kwargs = dict(classes=CLASSES, concepts=toy_concepts(), config=cfg, progress=False)
    local = analyze(split, vlm, data, **kwargs)
    on_ray = analyze(split, vlm, data, extractor=RayExtractor(shard_size=128, work_dir=tmp_path),
                     **kwargs)
    assert local.records.column_names == on_ray.records.column_names
    for col in ("id", "split", "perturbation", "source_id", "label", "prediction", "correct"):
        assert np.array_equal(local.column(col), on_ray.column(col)), col
    assert np.allclose(local.arrays["features"], on_ray.arrays["features"], atol=1e-4)
    assert np.allclose(local.scores(), on_ray.scores(), atol=1e-4)


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(local_ray, toy, tmp_path):
    split, vlm, data = toy
    local_ray.unlink()  # arm the hook: the worker that meets input 150 dies (once)
    rx = RayExtractor(shard_size=128, work_dir=tmp_path)
    try:
        out = rx(split, vlm, data, batch_size=50, progress=False)
    finally:
        if not local_ray.exists():  # disarm it for the other tests whatever happened
            local_ray.write_text("disarmed")
    assert local_ray.read_text() == "crashed once"  # it really died
    _same(extract(split, vlm, data, batch_size=50, progress=False), out)
    assert rx.last_run["computed_ids"] == len(data)


def test_an_interrupted_run_resumes_without_redoing_finished_shards(local_ray, toy, tmp_path,
                                                                    monkeypatch):
    split, vlm, data = toy
    real = RayExtractor._write_shard
    written = []

    def interrupt_after_two(shard_dir, k, parts):
        real(shard_dir, k, parts)
        written.append(k)
        if len(written) == 2:
            raise KeyboardInterrupt  # the user presses Ctrl-C

    monkeypatch.setattr(RayExtractor, "_write_shard", staticmethod(interrupt_after_two))
    rx = RayExtractor(shard_size=100, work_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        rx(split, vlm, data, batch_size=50, progress=False)
    monkeypatch.setattr(RayExtractor, "_write_shard", staticmethod(real))
    out = rx(split, vlm, data, batch_size=50, progress=False)
    assert rx.last_run["resumed_shards"] == 2
    assert rx.last_run["computed_ids"] == len(data) - 200
    _same(extract(split, vlm, data, batch_size=50, progress=False), out)


def test_without_the_extra_a_one_line_error_says_how_to_install(monkeypatch):
    from semheat_widgets.engine.extract import on_ray as extract_ray

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(SemheatError, match=r"pip install 'semheat_widgets\[ray\]'") as err:
        extract_ray.require_ray()
    assert "\n" not in str(err.value)


def test_semheat_analyze_with_the_ray_engine_reads_files_on_ray(local_ray, tmp_path):
    from helpers.fake_rival10 import make_fake_rival10
    from semheat_widgets.engine.bundle import Bundle
    from semheat_widgets.workflows.datasets import load_data, reference_indices
    from semheat_widgets.workflows.job import run_analysis

    fake = make_fake_rival10(tmp_path / "rival", n_per_class=2, malformed=False)
    out = tmp_path / "bundle"
    run_analysis(data=f"rival10:{fake.root}", vlm="open_clip:RN50:none",
                 classifier="resnet18", out=out, attack_limit=4, batch_size=8,
                 engine="ray", progress=False)
    b = Bundle.load(out)
    spec = load_data(f"rival10:{fake.root}")
    n = len(reference_indices(spec.train_labels, 0.2)) + len(spec.test)
    nat = b.mask(perturbation="natural")
    assert nat.sum() == n and len(set(b.column("source_id")[nat])) == n
    assert np.array_equal(b.column("label")[nat][-len(spec.test):], spec.test.labels)
    assert list((tmp_path / "bundle.work" / "ray").glob("*/shard-*.parquet"))


def test_shards_never_mix_different_data_or_weights(local_ray, toy, tmp_path):
    split, vlm, data = toy
    other = TensorDataset(torch.flip(data.tensors[0], dims=[3]), data.tensors[1])
    rx = RayExtractor(shard_size=128, work_dir=tmp_path)
    a = rx(split, vlm, data, batch_size=64, progress=False)
    b = rx(split, vlm, other, batch_size=64, progress=False)  # same length, other images
    assert rx.last_run["resumed_shards"] == 0
    _same(extract(split, vlm, other, batch_size=64, progress=False), b)
    assert not np.allclose(a.features, b.features)
