"""The documentation site's sources stay in step with the project (the build itself runs in
``.ci/run``, offline, with warnings as errors)."""

import json
import re
from helpers import REPO

DOCS = REPO / "docs"


def test_every_notebook_is_a_tutorial():
    notebooks = {p.name for p in (REPO / "notebooks").glob("*.ipynb")}
    tutorials = {p.name for p in (DOCS / "tutorials").glob("*.ipynb")}
    assert notebooks and notebooks == tutorials
    for link in (DOCS / "tutorials").glob("*.ipynb"):
        assert link.is_symlink() and link.resolve() == (REPO / "notebooks" / link.name)


def test_figure_tables_name_existing_figures():
    """Every key a figures table shows is present in the JSON it reads (the build fails too)."""
    pattern = re.compile(r"```\{figure-table\} (\S+)\n(.*?)```", re.S)
    found = 0
    for page in DOCS.glob("*.md"):
        for path, body in pattern.findall(page.read_text()):
            data = json.loads((REPO / path).read_text())
            for line in body.splitlines():
                if not line.strip() or line.startswith(":"):
                    continue
                value = data
                for part in line.split("|")[0].strip().split("."):
                    assert part in value, f"{page.name}: {path} has no {line.split('|')[0]!r}"
                    value = value[part]
                found += 1
    assert found >= 20


def test_readme_is_a_front_door():
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "OWNER" not in text
    for target in re.findall(r"\]\((docs/[^)#]+)\)", text):
        assert (REPO / target).exists(), target
