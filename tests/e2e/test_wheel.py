"""The wheel built from a clean checkout carries the widgets' JavaScript, and it renders."""

import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from helpers import REPO
from helpers.jupyter_browser import (browser_page, chromium_available, diagnosed, jupyterlab,
                                     open_and_run_all, screenshot, write_notebook)



@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """A wheel built from the committed tree (``git archive HEAD``), not the working copy."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    tmp = tmp_path_factory.mktemp("wheel")
    archive = tmp / "src.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", "-o", str(archive),
                    "HEAD"], check=True)
    src = tmp / "src"
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(tmp / "dist"), str(src)], check=True)
    (whl,) = (tmp / "dist").glob("semheat_widgets-*.whl")
    return whl


def test_wheel_contains_the_js_and_the_bundled_models(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for f in ("semheat_widgets/widgets/js/image_grid.js",
              "semheat_widgets/widgets/js/concept_picker.js",
              "semheat_widgets/widgets/js/widgets.css",
              "semheat_widgets/zoo/tiny_clip/tiny_clip.safetensors",
              "semheat_widgets/zoo/tiny_clip/open_clip_config.json",
              "semheat_widgets/zoo/classifiers/clean.safetensors"):
        assert f in names, f
    assert not any(n.startswith(("tests/", "notebooks/")) for n in names)


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium")
def test_installed_wheel_renders_in_jupyterlab(wheel, tmp_path, tiny_split, tiny_vlm,
                                              colour_dataset):
    from helpers.tiny import CLASSES
    from semheat_widgets.engine import AnalysisConfig, ConceptBank, analyze

    bundle = analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                     concepts=ConceptBank(["red", "green"]), progress=False,
                     config=AnalysisConfig(attack_limit=0, thumb_size=16)).save(tmp_path / "b")
    # A fresh venv holding only the wheel; its dependencies (torch & co., gigabytes) are
    # borrowed from this environment through a .pth line placed after the venv's own packages.
    # Paths added by a .pth line get no .pth processing, so this environment's editable
    # install of semheat_widgets stays invisible.
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; "
                                "print(sysconfig.get_paths()['purelib'])"], check=True,
                               capture_output=True, text=True).stdout.strip())
    here = next(p for p in sys.path if p.endswith("site-packages") and sys.prefix in p)
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], check=True)
    (site / "zz_borrowed_dependencies.pth").write_text(here + "\n")
    where = subprocess.run([python, "-c", "import semheat_widgets, sys; "
                            "print(semheat_widgets.__file__)"], check=True, capture_output=True,
                           text=True, cwd=tmp_path).stdout.strip()
    assert where.startswith(str(venv)), where  # the wheel, not the source checkout
    write_notebook(tmp_path / "grid.ipynb", [
        "import io, numpy as np\n"
        "from PIL import Image\n"
        "from semheat_widgets.engine.bundle import png_bytes\n"
        "from semheat_widgets.widgets.grid import ImageGrid\n"
        "from semheat_widgets.widgets.base import JS\n"
        "print('assets from', JS)\n"
        f"g = ImageGrid(r'{bundle}')\n"
        "g._tiles = [{'index': i, 'id': i, 'label': 'cat', 'prediction': 'dog', 'correct': False,"
        " 'concept': 'ears', 'score': 0.5, 'defect': 0.1, 'flagged': True, 'fault': 'head'}"
        " for i in range(3)]\n"
        "g._images = [png_bytes(np.full((16, 16, 3), 60 * i, np.uint8)) for i in range(3)]\n"
        "g._total = 3\n"
        "g",
    ])
    # The borrowed packages' data files (JupyterLab's widget extensions) live in this prefix.
    env = {"JUPYTER_PATH": str(Path(sys.prefix) / "share" / "jupyter")}
    with (jupyterlab(tmp_path, python=python, env=env) as (base, token),
          browser_page() as page, diagnosed(page, tmp_path, "wheel_grid")):
        open_and_run_all(page, base, token, "grid.ipynb")
        page.locator(".semheat-tile").nth(2).wait_for(timeout=240_000)
        assert page.locator(".semheat-tile").count() == 3
        assert "cat → dog" in page.locator(".semheat-tile").first.inner_text()
        out = page.locator(".jp-OutputArea-output").first.inner_text()
        assert str(venv) in out  # the JS came from the installed wheel
        screenshot(page, "wheel_grid")
