"""`semheat report`: one standalone HTML file that opens offline and renders its charts."""

import re

import pytest

from helpers.tiny import CLASSES
from helpers.jupyter_browser import browser_page, chromium_available, screenshot
from semheat_widgets.cli import main
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.html_report import render_report, telling_cells

EVIL = "</script><img src=x onerror=alert(1)>"
# Characters that Vega's expression parser rejects inside a string literal (U+2028/9), quotes
# and a backslash: names like these used to make the whole heatmap vanish.
ODD = "wet\u2028paint \u2029'\"\\"


@pytest.fixture(scope="module")
def evil_bundle(tiny_split, tiny_vlm, colour_dataset):
    cfg = AnalysisConfig(attacks=(Attack("fgsm"),), attack_limit=48, batch_size=48,
                         thumb_size=16)
    return analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                   concepts=ConceptBank(["red", "green", EVIL, ODD]), config=cfg, name="tiny",
                   progress=False)


def test_report_is_self_contained_and_escapes_names(evil_bundle):
    text = render_report(evil_bundle, cells=2, per_cell=3)
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script[^>]+src=", text)  # every script is inline
    assert not re.search(r"<link[^>]+href=", text)
    assert EVIL not in text  # never raw: escaped in HTML, \u003c-escaped inside scripts
    assert "&lt;/script&gt;" in text or "\\u003c/script\\u003e" in text
    assert text.count("vegaEmbed('#chart-") == 3  # heatmap + two ROC charts
    for row, concept, _ in telling_cells(evil_bundle, 2, min_n=1):
        assert f"predicted {row}" in text


def test_odd_names_compile_into_a_chart(evil_bundle):
    """The real Vega compiler (vl-convert) draws a heatmap whose rows and columns carry names
    that break Vega expressions; every name comes out as text."""
    import vl_convert as vlc

    from semheat_widgets.charts import heatmap_chart
    from semheat_widgets.engine.heatmaps import Heatmap

    hm = evil_bundle.heatmap("differential")
    odd = Heatmap(hm.kind, hm.values, hm.counts, [ODD, EVIL, "x", "y"], hm.columns,
                  hm.standardized, hm.counts_other)
    svg = vlc.vegalite_to_svg(heatmap_chart(odd, list(reversed(odd.columns))).to_dict())
    assert svg.count("<path") >= 16 and "paint" in svg


def test_report_of_a_toy_world_covers_every_bundle(mini_world, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(mini_world), "--html", str(out)]) == 0
    text = out.read_text()
    for name in ("clean", "encoder_fault", "head_fault"):
        assert f"<h1>{name}</h1>" in text
    assert "Known encoder faults" in text and "Known head faults" in text
    assert len(re.findall(r"src='data:image/png;base64,", text)) > 10
    # the encoder fault's error slices: the cars and trucks on water called ship, named by
    # water, with their inputs (issue 25)
    section = text.split("<h1>encoder_fault</h1>")[1].split("<h2>Error slices</h2>")[1].split(
        "<h2>Fault localization</h2>")[0]
    first = section.split("<div class='cell'>")[1]
    assert "predicted ship" in first and re.search(r"“(water|wet|on water|in the water)”", first)
    assert first.count("src='data:image/png;base64,") >= 4 and "→ ship" in first
    assert main(["report", str(tmp_path / "missing"), "--html", str(out)]) == 2


def test_a_report_without_slices_or_maps_says_nothing_of_them(evil_bundle):
    text = render_report(evil_bundle, cells=1, per_cell=2, maps=False, slices=False)
    assert "Error slices" not in text and "where the classifier sees" not in text
    # a bundle whose VLM has no vocabulary: the section says why, in one line
    text = render_report(evil_bundle, cells=1, per_cell=2, maps=False)
    assert "<h2>Error slices</h2>" in text and "no error slices: " in text


@pytest.mark.browser
@pytest.mark.skipif(not chromium_available(), reason="needs Debian's chromium")
def test_report_renders_offline_in_a_browser(evil_bundle, tmp_path):
    out = tmp_path / "report.html"
    out.write_text(render_report(evil_bundle, cells=2, per_cell=3))
    blocked = []

    def no_network(route):
        if route.request.url.startswith("file:"):
            return route.continue_()
        blocked.append(route.request.url)
        return route.abort()

    with browser_page(1100, 2400) as page:
        page.route("**/*", no_network)
        page.goto(out.as_uri())
        page.wait_for_selector("#chart-b0-heatmap svg", timeout=30_000)
        cells = page.locator("#chart-b0-heatmap g.mark-rect path[aria-label*='concept: ']")
        assert cells.count() == len(CLASSES) * 4  # every cell drawn, odd names included
        page.wait_for_selector("#chart-b0-roc-misclassification svg", timeout=30_000)
        labels = page.eval_on_selector_all("#chart-b0-heatmap text",
                                           "els => els.map(e => e.textContent)")
        assert any(t.startswith("</script><img") for t in labels)  # drawn as text
        assert page.locator("img[src='x']").count() == 0 and page.dialogs == []
        assert page.locator(".thumb img").count() >= 1
        screenshot(page, "html_report")
    assert blocked == []  # the report asked for nothing from the network
