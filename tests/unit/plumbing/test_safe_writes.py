"""Nothing lost: overwrites replace only what this package wrote, one writer per output, saves
are old-or-new across crashes and SIGKILL, resume state survives damage, and command-line
arguments are checked before any work."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.tiny import CLASSES
from semheat_widgets import cli
from semheat_widgets.engine.bundle import files as bundle_files
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.errors import SemheatError
from semheat_widgets.safe_io import owned_kind, writer_lock


@pytest.fixture(scope="module")
def small(tiny_split, tiny_vlm, colour_dataset):
    cfg = AnalysisConfig(attacks=(Attack("fgsm", 8 / 255),), attack_limit=16, batch_size=48,
                         thumb_size=8)
    return analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                   concepts=ConceptBank(["red", "green", "blue"]), config=cfg, name="small",
                   progress=False)


def _user_folder(path: Path) -> Path:
    """A folder of the user's: precious files that must survive."""
    path.mkdir(parents=True)
    (path / "thesis.tex").write_text("years of work")
    (path / "data").mkdir()
    (path / "data" / "img.png").write_bytes(b"\x89PNG")
    return path


def _intact(path: Path) -> bool:
    return ((path / "thesis.tex").read_text() == "years of work"
            and (path / "data" / "img.png").read_bytes() == b"\x89PNG")


def _one_line_error(capsys, argv, words: str) -> str:
    status = cli.main(argv)
    err = capsys.readouterr().err
    assert status == 2, err
    assert err.count("\n") == 1 and words in err, err
    return err


# -- 1. --force and every other overwrite replace only what is ours --------------------------
def test_analyze_force_never_deletes_a_user_folder(tmp_path, capsys):
    user = _user_folder(tmp_path / "mine")
    _one_line_error(capsys, ["analyze", "--data", f"folder:{user}", "--vlm", "toy",
                             "--out", str(user), "--force", "--quiet"], "refusing to replace")
    assert _intact(user)
    # ... nor its work folder, when OUT.work is the user's
    work = _user_folder(tmp_path / "b.work")
    _one_line_error(capsys, ["analyze", "--data", f"folder:{user}", "--vlm", "toy",
                             "--out", str(tmp_path / "b"), "--force", "--quiet"],
                    "refusing to replace")
    assert _intact(work) and _intact(user)


def test_bundle_save_replaces_only_bundles(small, tmp_path):
    user = _user_folder(tmp_path / "mine")
    with pytest.raises(SemheatError, match="refusing to replace"):
        small.save(user, overwrite=True)
    assert _intact(user)
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep")
    with pytest.raises(SemheatError, match="refusing to replace"):
        small.save(a_file, overwrite=True)
    assert a_file.read_text() == "keep"
    (tmp_path / "empty").mkdir()
    small.save(tmp_path / "empty")  # an empty folder is fine
    assert owned_kind(tmp_path / "empty") == "bundle"
    small.save(tmp_path / "empty", overwrite=True)  # and so is our own bundle


def test_toy_build_force_never_deletes_a_user_folder(tmp_path, capsys):
    user = _user_folder(tmp_path / "mine")
    _one_line_error(capsys, ["toy", "build", str(user), "--force", "--quiet"],
                    "refusing to replace")
    assert _intact(user)


def test_report_replaces_only_reports(small, tmp_path, capsys):
    b = small.save(tmp_path / "b")
    page = tmp_path / "index.html"
    page.write_text("<html>my homepage</html>")
    _one_line_error(capsys, ["report", str(b), "--html", str(page)], "refusing to replace")
    assert page.read_text() == "<html>my homepage</html>"
    _one_line_error(capsys, ["report", str(b), "--html", str(tmp_path)], "is a directory")
    ours = tmp_path / "report.html"
    assert cli.main(["report", str(b), "--html", str(ours)]) == 0
    assert owned_kind(ours) == "report"
    assert cli.main(["report", str(b), "--html", str(ours)]) == 0  # ours: replaced
    capsys.readouterr()


# -- 2. one writer per output ----------------------------------------------------------------
HOLDER = textwrap.dedent("""
    import sys, time
    from semheat_widgets.safe_io import writer_lock
    with writer_lock(sys.argv[1], command="holder-test"):
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def test_second_writer_refuses_at_once_naming_the_first(small, tmp_path):
    target = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(target), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        started = time.time()
        with pytest.raises(SemheatError, match=rf"another run \(pid {holder.pid} .*holder-test"):
            small.save(target)
        assert time.time() - started < 5  # at once, not after waiting
        assert not target.exists()
    finally:
        holder.kill()
        holder.wait()
    small.save(target)  # the lock died with its holder
    assert Bundle.load(target).n == small.n


def test_two_real_runs_on_one_output(tmp_path):
    """Two `semheat toy build` processes on one folder: the second refuses with one line and the
    first's world is complete."""
    out = tmp_path / "world"
    argv = [sys.executable, "-m", "semheat_widgets.cli", "toy", "build", str(out), "--reference",
            "40", "--natural", "40", "--shift", "10", "--attack-limit", "0", "--quiet"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    info = tmp_path / ".world.lock.json"
    deadline = time.time() + 120
    while not info.exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert info.exists(), "the first run never took the lock"
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0] and "toy build" in lines[0]
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    world = json.loads((out / "world.json").read_text())
    for name in world["bundles"]:
        assert Bundle.load(out / name).n > 0


def test_threads_of_one_process_do_not_share_a_lock(tmp_path):
    import threading

    errors = []
    with writer_lock(tmp_path / "x"):
        def other():
            try:
                with writer_lock(tmp_path / "x"):
                    pass
            except SemheatError as exc:
                errors.append(str(exc))
        t = threading.Thread(target=other)
        t.start()
        t.join()
        with writer_lock(tmp_path / "x"):  # re-entrant in the same thread
            pass
    assert len(errors) == 1 and "another run" in errors[0]


# -- 3. old or new, never neither ------------------------------------------------------------
def test_crash_between_the_renames_is_recovered(small, tmp_path, monkeypatch):
    target = tmp_path / "b"
    small.save(target)
    before = (target / "manifest.json").read_text()

    def crash():
        raise KeyboardInterrupt("power cut")

    monkeypatch.setitem(bundle_files._SAVE_HOOK, "between", crash)
    with pytest.raises(KeyboardInterrupt):
        small.save(target, overwrite=True)
    monkeypatch.delitem(bundle_files._SAVE_HOOK, "between")
    assert not target.exists()  # the moment of the crash: only the hidden old copy is left
    assert any(p.name.startswith(".b.old-") for p in tmp_path.iterdir())
    again = Bundle.load(target)  # the next reader restores it
    assert again.n == small.n and (target / "manifest.json").read_text() == before
    small.save(target, overwrite=True)  # and the next writer cleans up
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.lock", "b"]


KILLER = textwrap.dedent("""
    import sys
    from semheat_widgets.engine.bundle import Bundle
    b = Bundle.load(sys.argv[1], mmap=False)
    print("ready", flush=True)
    while True:
        b.save(sys.argv[1], overwrite=True)
""")


def test_a_finished_temporary_bundle_left_by_a_kill_is_cleaned_up(small, tmp_path):
    """A kill after the temporary folder lost its marker, before it was renamed into place."""
    target = tmp_path / "b"
    small.save(target)
    whole = small.save(tmp_path / "elsewhere" / "x")
    whole.rename(tmp_path / ".b.tmp-0123abcd")  # what such a kill leaves: a whole bundle, unmarked
    shutil.rmtree(tmp_path / "elsewhere")
    user = tmp_path / ".b.tmp-feedbeef"
    user.mkdir()
    (user / "notes.txt").write_text("mine")  # not ours: stays
    small.save(target, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.lock", ".b.tmp-feedbeef", "b"]


def test_sigkill_during_saves_leaves_a_loadable_bundle(small, tmp_path):
    target = tmp_path / "b"
    small.save(target)
    rng = np.random.default_rng(0)
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", KILLER, str(target)],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(float(rng.uniform(0.05, 0.6)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        b = Bundle.load(target)  # old or new: either way a whole bundle
        assert b.n == small.n
        assert np.array_equal(np.asarray(b.arrays["scores"]), small.arrays["scores"])
    small.save(target, overwrite=True)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("b", ".b.lock")]
    assert leftovers == []


# -- 4. resume state -------------------------------------------------------------------------
@pytest.mark.parametrize("damage", ["truncated", "zeros", "empty", "foreign"])
def test_damaged_resume_state_restarts_with_a_warning(tmp_path, damage):
    import torch
    from safetensors.torch import save_file
    from torch.utils.data import TensorDataset

    from helpers.tiny import colour_images, make_resnet
    from semheat_widgets.workflows.fine_tune import TRAIN_STATE, fine_tune

    images, labels = colour_images(32)
    data = TensorDataset(images, torch.from_numpy(labels))
    fine_tune(make_resnet(), data, epochs=1, work=tmp_path, batch_size=16,
              progress=False, job="j")
    state = tmp_path / TRAIN_STATE
    if damage == "truncated":
        state.write_bytes(state.read_bytes()[:200])
    elif damage == "zeros":
        state.write_bytes(b"\x00" * 10)
    elif damage == "empty":
        state.write_bytes(b"")
    else:  # a safetensors file that is not ours
        save_file({"w": torch.zeros(2)}, str(state), metadata={"job": "j", "epochs_done": "1"})
    with pytest.warns(UserWarning, match="training starts again from epoch 1"):
        out = fine_tune(make_resnet(), data, epochs=2, work=tmp_path, batch_size=16,
                        progress=False, job="j")
    assert out["resumed_from_epoch"] == 0
    again = fine_tune(make_resnet(), data, epochs=2, work=tmp_path, batch_size=16,
                      progress=False, job="j")
    assert again["resumed_from_epoch"] == 2  # the rewritten state is whole again


# -- command-line arguments ------------------------------------------------------------------
@pytest.mark.parametrize("argv, words", [
    (["analyze", "--data", "folder:x", "--vlm", "toy", "--out", "o", "--batch-size", "0"],
     "--batch-size: must be at least 1"),
    (["analyze", "--data", "folder:x", "--vlm", "toy", "--out", "o", "--workers", "-1"],
     "--workers: must be at least 0"),
    (["analyze", "--data", "folder:x", "--vlm", "toy", "--out", "o", "--attack-limit", "-5"],
     "--attack-limit: must be at least 0"),
    (["analyze", "--data", "folder:x", "--vlm", "toy", "--out", "o", "--batch-size", "many"],
     "not a whole number"),
    (["bench", "--records", "0"], "--records: must be at least 1"),
    (["toy", "build", "w", "--natural", "-3"], "--natural: must be at least 1"),
    (["data", "rival10", "--dest", "d", "--timeout", "0"], "must be a positive number"),
    (["toy", "build", "w", "--device", "quantum"], "unknown device"),
    (["info"], "required"),
])
def test_bad_arguments_are_one_line(tmp_path, argv, words):
    done = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", *argv],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], done.stderr
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["toy", "build", str(tmp_path / "w"), "--device", "cuda"],
                    "no CUDA GPU")
    assert not (tmp_path / "w").exists()


def test_url_without_a_scheme_is_one_line(tmp_path, capsys):
    _one_line_error(capsys, ["data", "rival10", "--dest", str(tmp_path / "d"),
                             "--accept-license", "--url", "example.com/RIVAL10.zip", "--quiet"],
                    "scheme")


def test_attack_limit_zero_means_no_attacks(tiny_split, tiny_vlm, colour_dataset):
    cfg = AnalysisConfig(attack_limit=0, batch_size=48, thumb_size=8)
    b = analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                concepts=ConceptBank(["red", "green"]), config=cfg, progress=False)
    assert set(b.column("perturbation")) == {"natural"} and b.n == len(colour_dataset)
    assert b.manifest["monitor"]["adversarial"]["available"] is False


def test_json_piped_into_head_has_no_traceback(small, tmp_path):
    b = small.save(tmp_path / "b")
    done = subprocess.run(f"{sys.executable} -m semheat_widgets.cli info {b} --json | head -1",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "{"
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_output_into_a_closed_pipe_is_quiet(small, tmp_path):
    """The reader gone before the first byte (the race `| head -1` only sometimes loses): no
    traceback, no 'Exception ignored' at exit, exit status 141 as a shell reports SIGPIPE."""
    import os

    b = small.save(tmp_path / "b")
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", "info", str(b),
                               "--json"], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr, done.stderr


def test_json_output_is_strict(small, tmp_path, capsys):
    """NaN figures (e.g. an AUROC with no positives) come out as null, never as NaN."""
    b = small.save(tmp_path / "b")
    for command in ("info", "localize", "monitor"):
        assert cli.main([command, str(b), "--json"]) == 0
        text = capsys.readouterr().out
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{command} printed {c}"))
    assert cli.json_safe({"a": float("nan"), "b": [np.float32("inf"), 1]}) == {"a": None,
                                                                             "b": [None, 1]}
