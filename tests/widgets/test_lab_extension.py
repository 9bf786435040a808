"""The JupyterLab extension (built from js/lab, shipped in the wheel) in a real JupyterLab, in
headless Chromium: the file browser recognises a bundle, its context menu opens the explorer in
a new notebook beside it (never over an existing file) that runs and answers a click; a plain
folder gets no menu item; the Launcher card opens the toy world; the palette has both
commands."""

import json
import shutil
import subprocess
import sys

import pytest

from helpers.jupyter_browser import (CELLS, MODEL_NOT_FOUND, browser_page, cell_path,
                                     chromium_available, diagnosed, jupyterlab,
                                     open_and_run_all, screenshot)
from playwright.sync_api import expect
from semheat_widgets.engine.bundle import Bundle

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium")]
TIMEOUT = 240_000
MENU_ITEM = ".lm-Menu-item:has-text('Open in semheat explorer')"


def test_the_extension_is_installed_and_enabled():
    done = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"],
                          capture_output=True, text=True, timeout=120)
    line = [ln for ln in (done.stdout + done.stderr).splitlines()
            if "semheat-widgets-lab" in ln and "enabled" in ln]
    assert line and "OK" in line[0], done.stdout + done.stderr


def _explorer_answers_a_click(page, bundle: Bundle, notebook: str, base, token):
    """The explorer in the open notebook renders; a cell with inputs shows their tiles."""
    heatmap = page.locator(".jp-OutputArea-output .vega-embed").first
    try:
        expect(heatmap.locator(CELLS)).to_have_count(
            len(bundle.classes) * len(bundle.concept_names), timeout=TIMEOUT)
    except AssertionError:
        if not page.evaluate(MODEL_NOT_FOUND):
            raise
        # JupyterLab's widget manager missed the widgets' first messages (an upstream race,
        # see jupyter_browser.open_and_run_all): the notebook the extension wrote is run again
        open_and_run_all(page, base, token, notebook)
        heatmap = page.locator(".jp-OutputArea-output .vega-embed").first
        expect(heatmap.locator(CELLS)).to_have_count(
            len(bundle.classes) * len(bundle.concept_names), timeout=TIMEOUT)
    row, concept = next((r, c) for r in bundle.classes for c in bundle.concept_names
                        if bundle.cell_query("differential", r, c).total > 0)
    cell_path(heatmap, row, concept).click()
    page.locator(".semheat-tile").first.wait_for(timeout=60_000)
    expected = bundle.cell_query("differential", row, concept)
    first = int(page.locator(".semheat-tile").first.get_attribute("data-index"))
    assert first == int(expected.indices[0])


def test_context_menu_opens_a_bundle_in_a_new_notebook(mini_world, tmp_path):
    shutil.copytree(mini_world / "encoder_fault", tmp_path / "fault")
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("not a bundle")
    mine = tmp_path / "fault.ipynb"  # the user's own notebook of that name: never replaced
    mine.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4,
                                "nbformat_minor": 5}))
    before = mine.read_bytes()
    bundle = Bundle.load(tmp_path / "fault")
    with (jupyterlab(tmp_path) as (base, token), browser_page() as page,
          diagnosed(page, tmp_path, "lab_extension_menu")):
        page.goto(f"{base}/lab?token={token}", timeout=TIMEOUT)
        marked = page.locator(".jp-DirListing-item[data-semheat-kind='bundle']")
        expect(marked).to_have_count(1, timeout=60_000)
        assert marked.locator(".jp-DirListing-itemText").inner_text() == "fault"
        folder_icon = marked.locator(".jp-DirListing-itemIcon > svg")  # the semheat icon instead
        assert folder_icon.evaluate("e => getComputedStyle(e).visibility") == "hidden"
        plain = page.locator(".jp-DirListing-item").filter(has_text="plain")
        assert plain.get_attribute("data-semheat-kind") is None

        plain.click(button="right")  # a folder that is not a bundle: no menu item
        page.locator(".lm-Menu").first.wait_for(timeout=30_000)
        assert page.locator(MENU_ITEM).count() == 0
        page.keyboard.press("Escape")

        marked.click(button="right")
        page.locator(MENU_ITEM).wait_for(timeout=30_000)
        screenshot(page, "lab_extension_menu")
        page.locator(MENU_ITEM).click()
        page.locator(".jp-NotebookPanel:visible .jp-Cell").first.wait_for(timeout=TIMEOUT)
        _explorer_answers_a_click(page, bundle, "fault-1.ipynb", base, token)
        screenshot(page, "lab_extension_explorer")
    assert mine.read_bytes() == before
    written = json.loads((tmp_path / "fault-1.ipynb").read_text())
    code = [c for c in written["cells"] if c["cell_type"] == "code"]
    assert len(code) == 1 and 'sw.Explorer("fault")' in "".join(code[0]["source"])


def test_launcher_card_and_palette(mini_world, tmp_path):
    bundle = Bundle.load(mini_world / "encoder_fault")
    with (jupyterlab(tmp_path, env={"SEMHEAT_TOY_DIR": str(mini_world)}) as (base, token),
          browser_page() as page, diagnosed(page, tmp_path, "lab_extension_launcher")):
        page.goto(f"{base}/lab?token={token}", timeout=TIMEOUT)
        card = page.locator(".jp-LauncherCard").filter(has_text="semheat quickstart")
        card.wait_for(timeout=60_000)  # the app has started (the Launcher is its first tab)
        screenshot(page, "lab_extension_launcher")
        page.locator("#jp-main-dock-panel").click()
        page.keyboard.press("Control+Shift+c")  # the command palette
        search = page.locator(".lm-CommandPalette-input")
        search.wait_for(timeout=30_000)
        search.fill("semheat")
        items = page.locator(".lm-CommandPalette-item")
        expect(items.filter(has_text="toy-world quickstart")).to_have_count(1)
        expect(items.filter(has_text="open bundle…")).to_have_count(1)
        screenshot(page, "lab_extension_palette")
        page.keyboard.press("Escape")
        card.click()
        page.locator(".jp-NotebookPanel:visible .jp-Cell").first.wait_for(timeout=TIMEOUT)
        _explorer_answers_a_click(page, bundle, "semheat-quickstart.ipynb", base, token)
    assert (tmp_path / "semheat-quickstart.ipynb").is_file()


def test_notebook7_file_tree_opens_a_bundle(mini_world, tmp_path):
    """The same extension in Notebook 7 (served beside JupyterLab): the file tree marks the
    bundle, and its menu item opens the explorer notebook in a new browser tab, run once."""
    shutil.copytree(mini_world / "encoder_fault", tmp_path / "fault")
    bundle = Bundle.load(tmp_path / "fault")
    with (jupyterlab(tmp_path) as (base, token), browser_page() as page,
          diagnosed(page, tmp_path, "notebook7_tree")):
        page.goto(f"{base}/tree?token={token}", timeout=TIMEOUT)
        marked = page.locator(".jp-DirListing-item[data-semheat-kind='bundle']")
        expect(marked).to_have_count(1, timeout=60_000)
        marked.click(button="right")
        page.locator(MENU_ITEM).wait_for(timeout=30_000)
        screenshot(page, "notebook7_tree_menu")
        with page.context.expect_page(timeout=60_000) as opened:
            page.locator(MENU_ITEM).click()
        tab = opened.value
        with diagnosed(tab, tmp_path, "notebook7_notebook"):
            tab.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=TIMEOUT)
            _explorer_answers_a_click(tab, bundle, "fault.ipynb", base, token)
            screenshot(tab, "notebook7_explorer")
    written = json.loads((tmp_path / "fault.ipynb").read_text())
    assert 'sw.Explorer("fault")' in "".join(
        "".join(c["source"]) for c in written["cells"] if c["cell_type"] == "code")
