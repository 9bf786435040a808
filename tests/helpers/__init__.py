"""What the tests share besides fixtures (those live in ``tests/conftest.py``): small models
and data (:mod:`.tiny`), a fake RIVAL10 tree (:mod:`.fake_rival10`), a real JupyterLab or
marimo in headless Chromium (:mod:`.jupyter_browser`), hang guards (:mod:`.guards`).

``tests/`` is on ``sys.path`` (pytest's ``pythonpath``), so a test imports ``helpers.tiny``
wherever it lives."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the repository root
