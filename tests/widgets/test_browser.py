"""The explorer in a real JupyterLab, in headless Chromium (Debian's), driven by Playwright.

Screenshots go to ``artifacts/screenshots/``; the click-to-images time goes to
``artifacts/browser_timings.json`` (reported, not asserted).
"""

import json
import re
import time

import numpy as np
import pytest

from helpers.jupyter_browser import (ARTIFACTS, CELLS, CLICK_TIMER, browser_page, cell_path,
                                     chromium_available, diagnosed, jupyterlab,
                                     open_and_run_all, screenshot, warm_clicks, write_notebook)
from playwright.sync_api import expect
from semheat_widgets.engine.bundle import Bundle

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium")]
XSS = "<img src=x onerror=alert(1)>"
TIMEOUT = 240_000


def test_explorer_in_jupyterlab(mini_world, tmp_path):
    bundle = Bundle.load(mini_world / "encoder_fault")
    expected = bundle.cell_query("differential", "ship", "wet")
    assert expected.total > 0
    write_notebook(tmp_path / "explore.ipynb", [
        "import semheat_widgets as sw\n"
        f"ex = sw.Explorer.toy(directory=r'{mini_world}', which='encoder_fault')\nex",
    ])
    timings = {}
    n_cells = len(bundle.classes) * len(bundle.concept_names)
    with (jupyterlab(tmp_path) as (base, token), browser_page() as page,
          diagnosed(page, tmp_path, "explorer_lab")):
        open_and_run_all(page, base, token, "explore.ipynb")
        heatmap = page.locator(".jp-OutputArea-output").locator(".vega-embed").first
        expect(heatmap.locator(CELLS)).to_have_count(n_cells, timeout=TIMEOUT)
        page.locator(".semheat-picker-row").first.wait_for(timeout=TIMEOUT)
        screenshot(page, "explorer_loaded")

        # click the differential cell (ship, wet): the grid shows the engine's answer
        page.evaluate(CLICK_TIMER)
        cell = cell_path(heatmap, "ship", "wet")
        started = time.perf_counter()
        cell.click()
        page.locator(".semheat-tile").first.wait_for(timeout=30_000)
        timings["click_to_images_ms_playwright"] = round((time.perf_counter() - started) * 1000, 1)
        page.wait_for_function("() => window.__semheatShown !== null", timeout=10_000)
        timings["click_to_images_ms"] = round(page.evaluate(
            "() => window.__semheatShown - window.__semheatClicked"), 1)
        tiles = page.locator(".semheat-tile")
        shown = [int(tiles.nth(i).get_attribute("data-index")) for i in range(tiles.count())]
        assert shown == expected.indices[:len(shown)].tolist()
        assert len(shown) == min(expected.total, 24)
        first = tiles.first.inner_text()
        wet = bundle.concept_column("wet")[shown[0]]
        assert f"wet: {wet:.2f}" in first and "→ ship" in first
        defect = bundle.column("misclf_score")[shown[0]]
        assert f"defect {defect:.2f} · " in first
        assert "fault: " + bundle.column("fault")[shown[0]] in first
        screenshot(page, "explorer_cell_clicked")

        # click a tile: the detail view explains that input
        tiles.first.click()
        facts = page.locator(".semheat-facts")
        facts.wait_for(timeout=30_000)
        record_id = bundle.column("id")[shown[0]]
        page.wait_for_function(
            "id => document.querySelector('.semheat-facts') && "
            "document.querySelector('.semheat-facts').innerText.includes('input ' + id)",
            arg=str(record_id), timeout=30_000)
        assert "responsible concepts" in facts.inner_text()
        # beside the input: the concept activation map of its most responsible concept and the
        # class map of its prediction, drawn (three images with content)
        page.wait_for_function(
            "() => [...document.querySelectorAll('img.widget-image')].filter(i => "
            "i.naturalWidth > 0).length >= 3", timeout=30_000)
        expect(page.get_by_text("concept map", exact=True).first).to_be_visible()
        screenshot(page, "explorer_detail")

        # the grid's tiles switch to concept maps, and back
        first_src = page.locator(".semheat-tile img").first.get_attribute("src")
        page.locator(".semheat-grid-overlay input").click()
        page.wait_for_function(
            "s => document.querySelector('.semheat-tile img') && "
            "document.querySelector('.semheat-tile img').src !== s", arg=first_src,
            timeout=30_000)
        screenshot(page, "explorer_tile_maps")
        page.locator(".semheat-grid-overlay input").click()

        # a free-text concept becomes a new heatmap column
        n_before = heatmap.locator(CELLS).count()
        page.fill(".semheat-picker-new", "stripes")
        page.press(".semheat-picker-new", "Enter")
        page.locator(".semheat-picker-row[data-concept='stripes']").wait_for(timeout=60_000)
        # the main heatmap (not the detail view's small one) gains one cell per class
        expect(heatmap.locator(CELLS)).to_have_count(n_before + len(bundle.classes),
                                                     timeout=60_000)

        # a concept named like HTML shows literally and runs nothing
        page.fill(".semheat-picker-new", XSS)
        page.press(".semheat-picker-new", "Enter")
        row = page.locator(".semheat-picker-row").filter(has_text="onerror")
        row.wait_for(timeout=60_000)
        assert row.locator(".semheat-picker-name").inner_text() == XSS
        # the new heatmap column's axis label is that text (Vega may shorten it with "…")
        page.wait_for_function(
            "s => [...document.querySelectorAll('.vega-embed text')].some(t => "
            "t.textContent.startsWith(s))", arg=XSS[:18], timeout=60_000)
        assert page.locator("img[src='x']").count() == 0
        assert page.dialogs == []
        screenshot(page, "explorer_xss_concept")

        # the selected cell's suggested concepts (issue 25): the engine's top phrases for its
        # mistakes, listed beside the heatmap; a click on one adds it as a heatmap column
        found = bundle.discover(bundle.cell_query("incorrect", "ship", None), k=8)
        phrase = next(r["phrase"] for r in found.top(8) if r["phrase"] not in (
            *bundle.concept_names, "stripes"))
        button = page.locator(".widget-button").filter(has_text=re.compile(
            "^" + re.escape(phrase) + "$"))
        button.first.wait_for(timeout=60_000)
        n_before = heatmap.locator(CELLS).count()
        button.first.click()
        page.locator(f".semheat-picker-row[data-concept='{phrase}']").wait_for(timeout=60_000)
        expect(heatmap.locator(CELLS)).to_have_count(n_before + len(bundle.classes),
                                                     timeout=60_000)
        screenshot(page, "explorer_suggestion_added")

        # error slices: a click on one pulls its inputs into the grid
        page.locator(".widget-button").filter(has_text="find slices").click()
        first_slice = bundle.slices()[0]
        entry = page.locator(".widget-button").filter(has_text=f"→ {first_slice.predicted}")
        entry.first.wait_for(timeout=120_000)
        entry.first.click()
        page.wait_for_function(
            "i => document.querySelector('.semheat-tile') && "
            "document.querySelector('.semheat-tile').dataset.index === String(i)",
            arg=int(first_slice.indices[0]), timeout=30_000)
        shown = [int(tiles.nth(i).get_attribute("data-index")) for i in range(tiles.count())]
        assert shown == first_slice.indices[:24].tolist()
        screenshot(page, "explorer_slice_pulled")

        # warm clicks: the median of six, from click to the new cell's first thumbnail
        warm = warm_clicks(page, heatmap, bundle, 6, after=shown[0])
        timings["click_to_images_ms_warm"] = [round(t, 1) for t in warm]
        timings["click_to_images_ms_warm_median"] = round(float(np.median(warm)), 1)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / "browser_timings.json").write_text(json.dumps(timings, indent=1))
    assert np.isfinite(timings["click_to_images_ms"]) and len(warm) == 6


def test_explorer_in_notebook_7(mini_world, tmp_path):
    bundle = Bundle.load(mini_world / "head_fault")
    hm = bundle.heatmap("differential")
    row = hm.rows[int(np.nanargmax(hm.counts_other))]  # the class with most mistakes
    expected = bundle.cell_query("differential", row, "horns")
    write_notebook(tmp_path / "n7.ipynb", [
        "import semheat_widgets as sw\n"
        f"sw.Explorer.toy(directory=r'{mini_world}', which='head_fault')",
    ])
    with (jupyterlab(tmp_path) as (base, token), browser_page() as page,
          diagnosed(page, tmp_path, "explorer_notebook7")):
        open_and_run_all(page, base, token, "n7.ipynb", ui="notebook")
        heatmap = page.locator(".vega-embed").first
        expect(heatmap.locator(CELLS)).to_have_count(
            len(bundle.classes) * len(bundle.concept_names), timeout=TIMEOUT)
        cell_path(heatmap, row, "horns").click()
        page.locator(".semheat-tile").first.wait_for(timeout=30_000)
        tiles = page.locator(".semheat-tile")
        shown = [int(tiles.nth(i).get_attribute("data-index")) for i in range(tiles.count())]
        assert shown == expected.indices[:len(shown)].tolist() and shown
        screenshot(page, "notebook7_explorer")


# The WCAG contrast ratio of an element's text colour against the background it is drawn on
# (the first ancestor with an opaque background; SVG text: its fill).
CONTRAST = """el => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255;
    return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  const style = getComputedStyle(el);
  const fg = rgb(el instanceof SVGElement ? style.fill : style.color);
  let node = el, bg = null;
  while (node && node.nodeType === 1) {
    const c = rgb(getComputedStyle(node).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) { bg = c; break; }
    node = node.parentElement;
  }
  bg = bg || [255, 255, 255];
  const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
  return (a + 0.05) / (b + 0.05);
}"""
PANELS = {  # every panel's text, by a selector for one of its text elements
    "concept picker": ".semheat-picker-name",
    "grid header": ".semheat-grid-title",
    "grid tile": ".semheat-tile-labels",
    "detail view": ".semheat-facts",
    "keyboard strip": ".semheat-keys-text",
    "heatmap labels": ".semheat-chart svg g.role-axis-label text",
    "heatmap title": ".semheat-chart svg g.role-title-text text",
}


def test_dark_theme_keyboard_only_and_readable(mini_world, tmp_path):
    """JupyterLab's dark theme: every panel's text keeps AA contrast (4.5:1); the explorer is
    then driven with the keyboard alone: move to a cell, open it, open a tile."""
    bundle = Bundle.load(mini_world / "encoder_fault")
    write_notebook(tmp_path / "dark.ipynb", [
        "import semheat_widgets as sw\n"
        f"ex = sw.Explorer.toy(directory=r'{mini_world}', which='encoder_fault')\nex",
    ])
    n_cells = len(bundle.classes) * len(bundle.concept_names)
    with (jupyterlab(tmp_path, theme="JupyterLab Dark") as (base, token),
          browser_page() as page, diagnosed(page, tmp_path, "explorer_dark")):
        open_and_run_all(page, base, token, "dark.ipynb")
        page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'",
                               timeout=60_000)
        heatmap = page.locator(".jp-OutputArea-output").locator(".vega-embed").first
        expect(heatmap.locator(CELLS)).to_have_count(n_cells, timeout=TIMEOUT)

        # keyboard only: focus the heatmap's strip, walk to (ship, wet), open it
        strip = page.locator(".semheat-keys-strip")
        strip.focus()
        page.keyboard.press("ArrowDown")  # the first key puts the cursor on the first cell
        ship, wet = bundle.classes.index("ship"), bundle.concept_names.index("wet")
        for _ in range(ship):
            page.keyboard.press("ArrowDown")
        for _ in range(wet):
            page.keyboard.press("ArrowRight")
        expect(page.locator(".semheat-keys-text")).to_contain_text("ship · wet", timeout=30_000)
        page.keyboard.press("Enter")
        page.locator(".semheat-tile").first.wait_for(timeout=30_000)
        expect(page.locator(".semheat-keys-text")).to_contain_text("(open)", timeout=30_000)
        expected = bundle.cell_query("differential", "ship", "wet")
        first = int(page.locator(".semheat-tile").first.get_attribute("data-index"))
        assert first == int(expected.indices[0])
        # tiles are buttons: focus the first with Tab from the strip's panel, open it with Enter
        page.locator(".semheat-tile").first.focus()
        page.keyboard.press("Enter")
        page.locator(".semheat-facts").wait_for(timeout=30_000)
        assert page.locator(".semheat-tile[aria-label]").count() > 0
        assert page.locator(".semheat-picker input[aria-label]").count() >= 3

        ratios = {}
        for name, selector in PANELS.items():
            element = page.locator(selector).first
            element.wait_for(timeout=30_000)
            ratios[name] = round(element.evaluate(CONTRAST), 2)
        screenshot(page, "explorer_dark")
    low = {k: v for k, v in ratios.items() if v < 4.5}
    assert not low, f"text below WCAG AA contrast in the dark theme: {low} (all: {ratios})"


def test_monitor_panel_switches_monitor_and_explains_a_check(mini_world, tmp_path):
    """The panel in JupyterLab: check an input (the concept monitor says what raised its
    score), switch to the paper's monitor (its two similarities instead)."""
    bundle = Bundle.load(mini_world / "clean")
    flagged = np.flatnonzero(bundle.mask(perturbation="pgd") & bundle.column("adv_flag"))
    i = int(flagged[0])
    write_notebook(tmp_path / "panel.ipynb", [
        "import semheat_widgets as sw\n"
        f"panel = sw.MonitorPanel(sw.Bundle.load(r'{mini_world / 'clean'}'), "
        f"task='adversarial')\npanel.index_box.value = {i}\npanel",
    ])
    with (jupyterlab(tmp_path) as (base, token), browser_page() as page,
          diagnosed(page, tmp_path, "monitor_panel")):
        open_and_run_all(page, base, token, "panel.ipynb")
        out = page.locator(".jp-OutputArea-output")
        out.locator(".vega-embed").first.wait_for(timeout=TIMEOUT)
        out.get_by_role("button", name="check input").click()
        result = out.get_by_text("what raised the score most")
        expect(result).to_be_visible(timeout=60_000)
        expect(out.get_by_text("FLAGGED as a likely defect")).to_be_visible()
        screenshot(page, "monitor_panel_concept")
        out.get_by_role("button", name="heatmap", exact=True).click()
        out.get_by_role("button", name="check input").click()
        expect(out.get_by_text("similarity to incorrect")).to_be_visible(timeout=60_000)
        expect(out.get_by_text("what raised the score most")).to_have_count(0)
        screenshot(page, "monitor_panel_heatmap")
