"""The explorer in marimo (``marimo run``, headless Chromium): a cell ending in
``sw.Explorer(path)`` shows the picker, heatmap and grid; a cell click pulls up the engine's
inputs; a marimo dropdown switches the heatmap; a typed concept becomes a column; names stay
text. The click-to-thumbnail time (in-page timer, first and warm) goes to
``artifacts/browser_timings_marimo.json`` (reported, not asserted)."""

import json
import statistics

import pytest

from helpers.jupyter_browser import (ARTIFACTS, CELLS, browser_page, chromium_available,
                                     click_and_time, marimo_app, screenshot, warm_clicks)
from playwright.sync_api import expect
from semheat_widgets.engine.bundle import Bundle

pytest.importorskip("marimo")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium")]
TIMEOUT = 240_000
XSS = "<img src=x onerror=alert(1)>"
APP = '''import marimo

app = marimo.App(width="full")


@app.cell
def _():
    import semheat_widgets as sw

    ex = sw.Explorer(r"{path}")
    ex
    return (ex,)


if __name__ == "__main__":
    app.run()
'''


def test_explorer_in_marimo(mini_world, tmp_path):
    bundle = Bundle.load(mini_world / "encoder_fault")
    app = tmp_path / "explore.py"
    app.write_text(APP.format(path=mini_world / "encoder_fault"))
    n_cells = len(bundle.classes) * len(bundle.concept_names)
    with marimo_app(app) as url, browser_page() as page:
        page.goto(url)
        heatmap = page.locator(".vega-embed").first
        expect(heatmap.locator(CELLS)).to_have_count(n_cells, timeout=TIMEOUT)
        page.get_by_text("the input detail view and the concept suggestions need").wait_for()

        # a click pulls up the engine's inputs for that cell, in its order, with their scores
        expected = bundle.cell_query("differential", "ship", "wet")
        assert expected.total > 0
        first_ms = click_and_time(page, heatmap, "ship", "wet", int(expected.indices[0]))
        tiles = page.locator(".semheat-tile")
        shown = [int(tiles.nth(i).get_attribute("data-index")) for i in range(tiles.count())]
        assert shown == expected.indices[:len(shown)].tolist()
        assert len(shown) == min(expected.total, 24)
        wet = bundle.concept_column("wet")[shown[0]]
        assert f"wet: {wet:.2f}" in tiles.first.inner_text()
        expect(page.get_by_text("ship · wet (open)").first).to_be_visible(timeout=30_000)
        screenshot(page, "marimo_explorer")

        # warm clicks on other cells with mistakes behind them
        warm = warm_clicks(page, heatmap, bundle, 6, after=int(expected.indices[0]))

        # a marimo dropdown switches the heatmap's kind; the selection follows it
        page.locator("select").first.select_option(label="ground truth (by true label)")
        heatmap.locator("text", has_text="ground truth (by true label) · ").first.wait_for(
            timeout=60_000)  # the chart's title (in a shadow root: a locator, not a query)

        # a typed concept becomes a heatmap column; an HTML-looking one stays text
        page.fill(".semheat-picker-new", XSS)
        page.press(".semheat-picker-new", "Enter")
        row = page.locator(".semheat-picker-row").filter(has_text="onerror")
        row.wait_for(timeout=60_000)
        assert row.locator(".semheat-picker-name").inner_text() == XSS
        expect(heatmap.locator(CELLS)).to_have_count(n_cells + len(bundle.classes),
                                                     timeout=60_000)
        assert page.locator("img[src='x']").count() == 0
        assert page.dialogs == []
    timings = {"click_to_images_ms_first": round(first_ms, 1),
               "click_to_images_ms_warm": [round(t, 1) for t in warm],
               "click_to_images_ms_warm_median": round(statistics.median(warm), 1)}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS.parent / "browser_timings_marimo.json").write_text(json.dumps(timings, indent=1))
    assert len(warm) >= 5
