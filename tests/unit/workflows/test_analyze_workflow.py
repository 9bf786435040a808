"""`semheat analyze` and `semheat data rival10` on a fake RIVAL10 tree (no downloads)."""

import pickle
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from helpers.fake_rival10 import make_fake_rival10
from semheat_widgets.cli import main
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.errors import SemheatError
from semheat_widgets.workflows.datasets import load_data, reference_indices
from semheat_widgets.workflows.fine_tune import build_resnet18, fine_tune


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return make_fake_rival10(tmp_path_factory.mktemp("rival"), n_per_class=3, malformed=True)


def test_analyze_rival10_with_a_random_clip_writes_one_record_per_image(fake, tmp_path, capsys):
    out = tmp_path / "bundle"
    code = main(["analyze", "--data", f"rival10:{fake.root}", "--vlm", "open_clip:RN50:none",
                 "--classifier", "resnet18", "--train-epochs", "1", "--out", str(out),
                 "--attack-limit", "6", "--batch-size", "16", "--workers", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    b = Bundle.load(out)
    spec = load_data(f"rival10:{fake.root}")
    n_ref = len(reference_indices(spec.train_labels, 0.2))
    nat = b.mask(perturbation="natural")
    assert nat.sum() == n_ref + len(spec.test)  # one natural record per image analysed
    assert len(set(b.column("source_id")[nat])) == nat.sum()
    assert np.array_equal(b.column("label")[nat][n_ref:], spec.test.labels)
    assert set(b.column("split")[nat][n_ref:]) == {"eval"}
    assert b.mask(perturbation="pgd").sum() == 6 and b.mask(perturbation="fgsm").sum() == 6
    assert b.concept_names[:3] == ["long-snout", "wings", "wheels"]
    assert b.manifest["models"]["vlm"] == "open_clip:RN50:none"
    # the attributes of every test image ride along with its record
    test_rows = np.flatnonzero(nat)[n_ref:]
    names = b.concept_names
    for i, row in zip(test_rows[:5], spec.test.attributes[:5]):
        assert sorted(b.column("attributes")[i]) == sorted(names[j] for j in np.flatnonzero(row))
    assert (tmp_path / "bundle.work" / "classifier.safetensors").is_file()


def test_training_resumes_after_an_interruption(fake, tmp_path, monkeypatch):
    import torch.nn.functional as F

    spec = load_data(f"rival10:{fake.root}", size=32)
    batches_per_epoch = len(spec.train) // 16
    real_loss, calls = F.cross_entropy, []

    def loss_until_interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > batches_per_epoch:
            raise KeyboardInterrupt  # Ctrl-C during epoch 2 (epoch 1 is saved)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(F, "cross_entropy", loss_until_interrupted)
    model, origin = build_resnet18(10)
    assert origin in ("imagenet", "scratch")
    with pytest.raises(KeyboardInterrupt):
        fine_tune(model, spec.train, epochs=2, work=tmp_path, batch_size=16,
                         progress=False)
    monkeypatch.setattr(F, "cross_entropy", real_loss)
    model2, _ = build_resnet18(10)
    again = fine_tune(model2, spec.train, epochs=2, work=tmp_path, batch_size=16,
                             progress=False)
    assert again["resumed_from_epoch"] == 1  # epoch 1 was not redone


def test_a_saved_state_of_another_job_is_not_resumed(fake, tmp_path):
    spec = load_data(f"rival10:{fake.root}", size=32)
    model, _ = build_resnet18(10)
    fine_tune(model, spec.train, epochs=1, work=tmp_path, batch_size=16,
                     progress=False, job="job A")
    model2, _ = build_resnet18(10)
    again = fine_tune(model2, spec.train, epochs=1, work=tmp_path, batch_size=16,
                             progress=False, job="job B")
    assert again["resumed_from_epoch"] == 0  # trained afresh, not job A's weights


def test_checkpoints_load_safely(tmp_path):
    from torchvision.models import resnet18

    good = tmp_path / "good.pt"
    torch.save(resnet18(num_classes=10).state_dict(), good)
    model, origin = build_resnet18(10, good)
    assert origin == "checkpoint"

    class Evil:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"state_dict": Evil()}, f)
    with pytest.raises(SemheatError, match="cannot load checkpoint"):
        build_resnet18(10, evil)
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(SemheatError, match="does not fit a 3-class"):
        build_resnet18(3, good)


@pytest.mark.parametrize("argv, message", [
    (["--data", "nonsense", "--vlm", "open_clip:RN50:none"], "--data must look like"),
    (["--data", "rival10:/no/such/dir", "--vlm", "open_clip:RN50:none"], "not a RIVAL10 folder"),
    (["--data", "rival10:{root}", "--vlm", "clip"], "--vlm must be"),
    (["--data", "rival10:{root}", "--vlm", "open_clip:RN50:none", "--classifier", "vgg"],
     "--classifier must be"),
])
def test_analyze_bad_input_is_one_line(fake, tmp_path, argv, message):
    argv = [a.format(root=fake.root) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", "analyze", *argv,
                           "--out", str(tmp_path / "b"), "--quiet"], capture_output=True,
                          text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "b").exists()


def test_download_command_needs_the_licence_and_fails_fast_offline(tmp_path, capsys):
    assert main(["data", "rival10", "--dest", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert "non-commercial" in err and "--accept-license" in err
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends
    started = time.time()
    assert main(["data", "rival10", "--dest", str(tmp_path / "d"), "--accept-license",
                 "--url", f"http://127.0.0.1:{port}/RIVAL10.zip", "--quiet"]) == 2
    assert time.time() - started < 20  # fails at once, not after a long hang
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "network unreachable" in err[0]


def _spy_on(monkeypatch, stop_after_fine_tune_job: bool = False):
    """Record the sizes ``semheat analyze`` decodes images at (and its fine-tune job); with
    ``stop_after_fine_tune_job`` the run stops there, in one line, before any training."""
    from semheat_widgets.workflows import job

    seen = {}
    real_load, real_tune = job.load_data, job.fine_tune

    def load_data_spy(spec, *args, **kwargs):
        seen["spec"] = data = real_load(spec, *args, **kwargs)
        seen["size"] = kwargs.get("size")
        return data

    def fine_tune_spy(*args, **kwargs):
        seen["job"] = kwargs["job"]
        if stop_after_fine_tune_job:
            raise SemheatError("stopped by the test")
        return real_tune(*args, **kwargs)

    monkeypatch.setattr(job, "load_data", load_data_spy)
    monkeypatch.setattr(job, "fine_tune", fine_tune_spy)
    return seen


@pytest.fixture(scope="module")
def random_resnet(tmp_path_factory):
    """A 10-class ResNet-18 checkpoint with random weights: no ImageNet download tried."""
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "resnet18.pt"
    torch.save(resnet18(num_classes=10).state_dict(), path)
    return path


def test_image_size_reaches_the_data_loader_and_the_manifest(fake, random_resnet, tmp_path,
                                                             monkeypatch, capsys):
    seen = _spy_on(monkeypatch)
    out = tmp_path / "bundle"
    code = main(["analyze", "--data", f"rival10:{fake.root}", "--vlm", "toy", "--classifier",
                 f"resnet18:{random_resnet}", "--image-size", "48", "--out", str(out),
                 "--attack-limit", "0", "--batch-size", "16", "--workers", "0", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert seen["size"] == 48
    for split in (seen["spec"].train, seen["spec"].test):
        image, _ = split[0]
        assert tuple(image.shape) == (3, 48, 48)  # the fake images are 40 x 30: resized
    assert Bundle.load(out).manifest["image_size"] == 48


@pytest.mark.parametrize("flag, size, suffix", [
    ([], 224, ""),  # no flag: the defaults, and the job name earlier versions wrote
    (["--image-size", "224"], 224, ""),
    (["--image-size", "48"], 48, " | 48 px"),  # a state trained at 224 is not resumed
])
def test_image_size_is_part_of_the_fine_tune_job(fake, random_resnet, tmp_path, monkeypatch,
                                                 capsys, flag, size, suffix):
    seen = _spy_on(monkeypatch, stop_after_fine_tune_job=True)
    code = main(["analyze", "--data", f"rival10:{fake.root}", "--vlm", "toy", "--classifier",
                 f"resnet18:{random_resnet}", "--train-epochs", "1", *flag,
                 "--out", str(tmp_path / "b"), "--workers", "0", "--quiet"])
    assert code == 2 and "stopped by the test" in capsys.readouterr().err
    assert seen["size"] == size
    assert tuple(seen["spec"].test[0][0].shape) == (3, size, size)
    assert seen["job"].endswith(f"inputs{suffix}")


@pytest.mark.parametrize("value, message", [
    ("0", "must be at least 1, got 0"),
    ("-3", "must be at least 1, got -3"),
    ("abc", "'abc' is not a whole number"),
    ("5000", "--image-size must be at most 4096, got 5000"),
])
def test_a_bad_image_size_is_one_line(fake, tmp_path, value, message):
    proc = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", "analyze", "--data",
                           f"rival10:{fake.root}", "--vlm", "toy", "--image-size", value,
                           "--out", str(tmp_path / "b"), "--quiet"], capture_output=True,
                          text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "--image-size" in lines[0], proc.stderr
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.work").exists()


@pytest.mark.parametrize("value", [0, -3, "abc", 2.5, True, 5000])
def test_run_analysis_refuses_a_bad_image_size_before_any_work(fake, tmp_path, value):
    from semheat_widgets.workflows.job import run_analysis

    with pytest.raises(SemheatError, match="^image_size must be") as caught:  # the option's
        run_analysis(data=f"rival10:{fake.root}", vlm="toy", classifier="resnet18",  # name;
                     out=tmp_path / "b", image_size=value, progress=False)  # the CLI's flag
    assert caught.value.option == "image_size"  # is the command line's business
    assert not (tmp_path / "b").exists() and not (tmp_path / "b.work").exists()


def test_ray_shards_of_one_size_are_not_resumed_at_another(fake):
    from semheat_widgets.engine.extract.on_ray import _data_digest

    at = {size: _data_digest(load_data(f"rival10:{fake.root}", size=size).test)
          for size in (32, 48)}
    assert at[32] != at[48]
    assert at[32] == _data_digest(load_data(f"rival10:{fake.root}", size=32).test)
