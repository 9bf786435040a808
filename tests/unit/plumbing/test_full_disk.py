"""A full disk says so in one line, naming the device (issue 28, finding 2): arrays written
through memory maps are reserved first (posix_fallocate), so running out of space is never a
SIGBUS, and no temporary is left behind."""

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.errors import SemheatError
from helpers import REPO


def _small_bundle():
    n = 64
    rng = np.random.default_rng(0)
    cols = {"id": np.arange(n), "split": ["fit"] * n,
            "perturbation": ["natural"] * n, "source_id": np.arange(n),
            "label": rng.integers(0, 2, n), "prediction": rng.integers(0, 2, n)}
    cols["correct"] = cols["label"] == cols["prediction"]
    return Bundle.create(name="disk", classes=["a", "b"], concepts=[],
                         columns=cols, arrays={"features": rng.normal(size=(n, 2048)).astype(
                             np.float32)}, state={"x": np.zeros(3, np.float32)})


@pytest.fixture()
def full_fs(tmp_path):
    """A 2 MB tmpfs (root only; skipped elsewhere, where the patched test below runs)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                                            str(mnt)], capture_output=True).returncode != 0:
        pytest.skip("needs root to mount a small tmpfs")
    yield mnt
    if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(mnt)], check=True)  # busy: detach it lazily


def _fill(mnt: Path, keep_kib: int) -> None:
    free = shutil.disk_usage(mnt).free
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - keep_kib * 1024))


@pytest.mark.parametrize("keep_kib", [0, 200])
def test_saving_onto_a_full_disk_raises_one_line_and_leaves_nothing(full_fs, keep_kib):
    _fill(full_fs, keep_kib)
    with pytest.raises(SemheatError) as info:
        _small_bundle().save(full_fs / "b")  # 512 KiB of features: does not fit
    line = str(info.value)
    assert "\n" not in line and "no space left on tmpfs" in line and str(full_fs) in line
    assert sorted(set(os.listdir(full_fs)) - {"filler", ".b.lock"}) == []


@pytest.mark.slow
def test_a_full_disk_never_kills_the_process_without_a_word(full_fs):
    _fill(full_fs, 40)  # the old code died here of SIGBUS writing through a memory map
    here = [str(Path(__file__).parent), str(REPO / "tests")]  # this module and its helpers
    script = (f"import sys\nsys.path[:0] = {here!r}\n"
              f"from test_full_disk import _small_bundle\n"
              f"from semheat_widgets.errors import SemheatError\n"
              f"try:\n    _small_bundle().save({str(full_fs / 'b')!r})\n"
              f"except SemheatError as e:\n    print(e)\n    sys.exit(2)\n")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600)
    assert run.returncode == 2, (run.returncode, run.stderr[-500:])  # not -7 (SIGBUS)
    line = run.stdout.strip()
    assert "\n" not in line and "no space left on tmpfs" in line and str(full_fs) in line
    left = sorted(set(os.listdir(full_fs)) - {"filler", ".b.lock"})
    assert left == []  # no temporary folder, no lock description


def test_a_refused_reservation_removes_the_temporary(tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(SemheatError, match="no space left on .* this file needs about 524"):
        _small_bundle().save(tmp_path / "b")
    assert sorted(os.listdir(tmp_path)) == [".b.lock"]


def test_the_cli_turns_any_full_disk_error_into_one_line(monkeypatch, capsys, tmp_path):
    from semheat_widgets import cli

    def boom(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x"))

    parser = cli.build_parser()
    args = parser.parse_args(["info", str(tmp_path)])
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(args, "func", boom, raising=False)
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    assert cli.main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("semheat: error: no space left on") and "\n" not in err
