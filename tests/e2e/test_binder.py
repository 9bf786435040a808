"""Install as a Binder user does, then run every notebook in that environment.

A fresh virtual environment gets exactly what ``binder/requirements.txt`` installs (torch and
torchvision pinned as in the README, because the CPU wheel index it names is unreachable here),
``binder/postBuild`` runs with its own ``HOME``, and each notebook executes in a real kernel of
that environment. Nothing from the development environment is visible, so a notebook that
imports a package the project does not depend on fails here, as it would on Binder.

Peak memory of each notebook (its whole process tree) and of ``postBuild`` are written to
``artifacts/binder_run.json`` — reported, not asserted (the CUDA build of torch used here maps
more memory than the CPU build Binder installs).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from semheat_widgets.bench.suite import measure_process
from helpers import REPO

ARTIFACTS = REPO / "artifacts"
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.slow


def readme_torch_pins() -> list[str]:
    """The torch / torchvision pins of the README's set-up commands (kept in one place)."""
    text = (REPO / "README.md").read_text()
    pins = re.search(r"pip install (torch==\S+) (torchvision==\S+)", text)
    assert pins, "the README no longer pins torch and torchvision"
    return [pins.group(1), pins.group(2)]


def binder_requirements() -> list[str]:
    """``binder/requirements.txt`` without its index line and unpinned torch lines."""
    out = []
    for line in (REPO / "binder" / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("--extra-index-url") or line in ("torch", "torchvision"):
            continue
        out.append(line)
    return out


@pytest.fixture(scope="module")
def binder_env(tmp_path_factory):
    if sys.platform != "linux":
        pytest.skip("the Binder image is Linux")
    root = tmp_path_factory.mktemp("binder")
    venv = root / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
           "--disable-pip-version-check"]
    subprocess.run([*pip, *readme_torch_pins()], check=True)
    subprocess.run([*pip, *[a for r in binder_requirements() for a in r.split()]], check=True,
                   cwd=REPO)
    home = root / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "SEMHEAT_TOY_DIR", "JUPYTER_PATH")}
    env.update(HOME=str(home), PATH=f"{venv / 'bin'}:{env.get('PATH', '')}",
               VIRTUAL_ENV=str(venv), TQDM_DISABLE="1",
               RIVAL10_DIR=str(root / "no-rival10"))  # offline: the case study's fallback
    build = measure_process(["bash", str(REPO / "binder" / "postBuild")], env=env, cwd=REPO)
    assert build["returncode"] == 0, build["output_tail"]
    return venv, env, {"postBuild": build}


def test_the_binder_environment_is_isolated(binder_env):
    venv, env, _ = binder_env
    where = subprocess.run(["python", "-c", "import semheat_widgets, sys; "
                            "print(semheat_widgets.__file__, sys.prefix)"], env=env,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in where and str(REPO) in where  # `-e .` of this checkout, in the venv


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_as_installed_on_binder(binder_env, path, tmp_path):
    venv, env, figures = binder_env
    run = measure_process([str(venv / "bin" / "jupyter"), "nbconvert", "--to", "notebook",
                           "--execute", "--ExecutePreprocessor.timeout=1200",
                           "--output-dir", str(tmp_path), str(path)], env=env, cwd=tmp_path)
    executed = tmp_path / path.name
    assert run["returncode"] == 0 and executed.exists(), run["output_tail"]
    cells = json.loads(executed.read_text())["cells"]
    errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors, errors[0].get("evalue")
    figures[path.stem] = run
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "binder_run.json").write_text(json.dumps(
        {k: {f: v for f, v in r.items() if f != "output_tail"} for k, r in figures.items()},
        indent=1))
