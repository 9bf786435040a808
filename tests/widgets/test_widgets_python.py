"""Widgets at the Python level: traits link as described, the grid shows the engine's answer."""

import io

import numpy as np
import pytest
from PIL import Image

from helpers.tiny import CLASSES
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.widgets import Explorer, MonitorPanel
from semheat_widgets.widgets.cell import Cell
from semheat_widgets.widgets.detail import detail_facts, render_facts

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture()
def bundle(tiny_split, tiny_vlm, colour_dataset):
    cfg = AnalysisConfig(attacks=(Attack("fgsm"),), attack_limit=48, batch_size=48,
                         thumb_size=16)
    return analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                   concepts=ConceptBank(["red", "green", "blue", XSS]), config=cfg,
                   name="tiny", progress=False)


def busiest_row(bundle) -> int:
    """The predicted class with the most natural mistakes (the random model favours one)."""
    wrong = ~bundle.column("correct") & bundle.mask(perturbation="natural")
    return int(np.bincount(bundle.column("prediction")[wrong], minlength=len(CLASSES)).argmax())


def click(chart_widget, row, column):
    """Simulate a click on a cell the way Altair's own tests do."""
    chart_widget._vl_selections = {
        "cell": {"value": {"vlPoint": {"or": [{"row": row, "column": column}]}}, "store": []}}


def test_click_selects_a_cell_and_the_grid_shows_the_query_result(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    row = CLASSES[busiest_row(bundle)]
    click(ex.heatmap.chart, row, "blue")
    assert ex.heatmap.cell == Cell("differential", "natural", row, "blue")
    assert ex.heatmap.chart.params.picked == {"row": row, "column": "blue"}  # outlined
    expect = bundle.cell_query("differential", row, "blue")
    assert ex.grid.total == expect.total > 0
    shown = [t["index"] for t in ex.grid.tiles]
    assert shown == expect.indices[:ex.grid.page_size].tolist()
    tile = ex.grid.tiles[0]
    assert tile["label"] != tile["prediction"] and tile["concept"] == "blue"
    assert tile["score"] == pytest.approx(bundle.concept_column("blue")[shown[0]])
    assert tile["defect"] == pytest.approx(bundle.column("misclf_score")[shown[0]])
    assert tile["fault"] in ("encoder", "head", "undecided")
    png = Image.open(io.BytesIO(ex.grid._images[0]))
    assert png.size == (16, 16)
    assert np.array_equal(np.asarray(png), bundle.thumbnail(shown[0]))


def test_sorting_and_paging_follow_the_engine(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    k = busiest_row(bundle)
    click(ex.heatmap.chart, CLASSES[k], "red")
    ex.grid.page_size = 3
    ex.grid.sort_by = "confidence"
    expect = bundle.query(prediction=k, correct=False, sort_by="confidence", descending=False)
    assert expect.total > 6
    assert [t["index"] for t in ex.grid.tiles] == expect.indices[:3].tolist()
    ex.grid.page = 1
    assert [t["index"] for t in ex.grid.tiles] == expect.indices[3:6].tolist()


def test_the_selection_sticks_across_redraws_while_its_cell_exists(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    ex.select(CLASSES[1], "green")
    ex.heatmap.kind = "ground_truth"  # the same cell of another heatmap: kept, grid follows
    assert ex.heatmap.cell.row == CLASSES[1] and ex.heatmap.cell.kind == "ground_truth"
    natural = bundle.mask(perturbation="natural")
    assert ex.grid.total == int((bundle.column("label")[natural] == 1).sum())
    assert ex.heatmap.chart.params.picked == {"row": CLASSES[1], "column": "green"}
    ex.picker.hidden = ["green"]  # the cell's concept hidden: it cannot exist, so it clears
    assert ex.heatmap.cell is None and ex.grid.tiles == [] and ex.grid.total == 0
    assert ex.heatmap.chart.params.picked is None
    click(ex.heatmap.chart, CLASSES[1], "red")  # the observer survives the redraw
    assert ex.grid.total == int((bundle.column("label")[natural] == 1).sum())


def test_empty_cell_shows_an_empty_state(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    counts = bundle.heatmap("incorrect").counts
    if (counts > 0).all():
        pytest.skip("every class has misclassified inputs in this random model")
    row = CLASSES[int(np.flatnonzero(counts == 0)[0])]
    ex.select(row, "red")
    assert ex.grid.total == 0 and ex.grid.tiles == []
    assert "No inputs" in ex.grid._empty_message


def test_heatmap_data_has_values_counts_and_empty_cells(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    spec = ex.heatmap.chart.spec
    values = spec["data"]["values"]
    assert len(values) == len(CLASSES) * 4
    hm = bundle.heatmap("differential")
    for cell in values:
        i, j = CLASSES.index(cell["row"]), bundle.concept_names.index(cell["column"])
        v = hm.values[i, j]
        assert (cell["value"] is None) == bool(np.isnan(v))
        assert cell["n"] == hm.counts[i]
    assert any(c["column"] == XSS for c in values)  # a plain string, drawn as text by Vega


def test_widgets_take_a_bundle_or_its_path_and_typed_options(bundle, tiny_vlm, tmp_path):
    import traitlets

    from semheat_widgets.widgets import DetailView, HeatmapView, ImageGrid

    path = bundle.save(tmp_path / "b")
    for cls in (HeatmapView, ImageGrid, DetailView, MonitorPanel):
        assert cls(path).bundle.n == bundle.n
    hv = HeatmapView(path, kind="correct")
    with pytest.raises(traitlets.TraitError):
        hv.kind = "no such kind"
    with pytest.raises(traitlets.TraitError):
        hv.perturbation = "pgd"  # this bundle holds no PGD inputs
    assert Explorer(path, vlm=tiny_vlm).bundle.path == path


def test_a_new_concept_becomes_a_heatmap_column(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    assert ex.picker.add("stripes")
    assert bundle.concept_names[-1] == "stripes"
    cols = {c["column"] for c in ex.heatmap.chart.spec["data"]["values"]}
    assert "stripes" in cols
    assert not ex.picker.add("stripes") and "already" in ex.picker.message
    assert not ex.picker.add("   ")
    assert bundle.concept_names.count("stripes") == 1
    ex.picker._request = {"name": "spots", "nonce": 1}  # what the browser sends
    assert ex.picker.concepts[-1] == "spots" and bundle.concept_names[-1] == "spots"


def test_hide_and_reorder_concepts(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    ex.picker.hidden = ["red"]
    ex.picker.concepts = ["blue", "green", "red", XSS]
    assert ex.heatmap.columns == ["blue", "green", XSS]
    cells = ex.heatmap.chart.spec["data"]["values"]
    order = sorted({(c["col_order"], c["column"]) for c in cells})
    assert [name for _, name in order] == ["blue", "green", XSS]  # the order travels as data


def test_tile_click_opens_the_detail_view_with_escaped_text(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    tops = bundle.column("top_concepts")
    wrong = next(i for i in np.flatnonzero(~bundle.column("correct")) if XSS in list(tops[i]))
    ex.grid.selected = int(wrong)  # what a click on its tile does
    assert ex.detail.index == wrong and ex.detail.layout.display is None
    facts = detail_facts(bundle, int(wrong))
    assert facts["label"] == CLASSES[bundle.column("label")[wrong]]
    assert facts["fault"] == bundle.column("fault")[wrong]
    rows = {c["row"] for c in ex.detail.chart.spec["data"]["values"]}
    assert "this input" in rows and any(r.startswith("correct ") for r in rows)
    assert ex.detail.facts == facts
    shown = ex.detail.facts_html.value  # the HTML the widget sends to the browser
    assert shown == render_facts(facts) and "responsible concepts" in shown
    assert facts["monitor"] == "concept" and "what raised the score most" in shown
    assert XSS not in shown and "&lt;img src=x onerror=alert(1)&gt;" in shown


def test_monitor_panel_counts_and_checks(bundle):
    from semheat_widgets.engine.metrics import detection_summary
    from semheat_widgets.engine.tasks import task_named

    panel = MonitorPanel(bundle)
    member, positive = task_named("misclassification").masks(bundle, "eval")
    score = bundle.column("misclf_score")
    assert np.allclose(score, bundle.monitor("misclassification").score_samples(
        bundle.evidence()), atol=1e-5)  # one defect score: the panel's is the monitor's
    for thr in (panel.slider.min, panel.slider.value, panel.slider.max):
        assert panel.counts_at(thr) == detection_summary(score[member], positive[member], thr)
    i = int(np.flatnonzero(bundle.mask(perturbation="natural"))[5])
    assert panel.monitor_box.options == ("concept", "heatmap")  # the bundle's own first
    out = panel.check_index(i)
    assert out["monitor"] == "concept"
    assert out["defect_score"] == pytest.approx(score[i], abs=1e-5)
    assert out["flagged"] == (out["defect_score"] > panel.slider.value)
    assert len(out["reasons"]) == 3 and "what raised the score most" in panel.result.value
    assert "predicted" in panel.result.value
    roc = panel.chart.spec
    assert roc["layer"][1]["data"]["values"]

    panel.monitor_box.value = "heatmap"  # the paper's monitor: its own scores and threshold
    paper = bundle.column("misclf_heatmap")
    assert panel.counts_at(panel.slider.value) == detection_summary(
        paper[member], positive[member], panel.slider.value)
    assert panel.slider.value == pytest.approx(float(np.median(
        bundle.detector("heatmap", "misclassification").thresholds_)))
    out = panel.check_index(i)
    assert out["monitor"] == "heatmap" and out["defect_score"] == pytest.approx(paper[i],
                                                                                abs=1e-5)
    assert out["sim_incorrect"] - out["sim_correct"] == pytest.approx(out["defect_score"])


@pytest.mark.parametrize("key, column", [("fault", "fault"), ("label", "label"),
                                         ("flag", "misclf_flag"), ("defect", "misclf_score"),
                                         ("id", "id")])
def test_grid_sorts_by_every_tile_field(bundle, tiny_vlm, key, column):
    from semheat_widgets.widgets.grid import ASCENDING

    ex = Explorer(bundle, vlm=tiny_vlm)
    k = busiest_row(bundle)
    ex.select(CLASSES[k], "red")
    ex.grid.page_size = 100
    ex.grid.sort_by = key
    expect = bundle.query(prediction=k, correct=False, sort_by=column,
                          descending=key not in ASCENDING)
    shown = [t["index"] for t in ex.grid.tiles]
    assert len(shown) > 1 and shown == expect.indices[:100].tolist()
    values = bundle.column(column)[shown]
    ordered = sorted(values) if key in ASCENDING else sorted(values, reverse=True)
    assert list(values) == ordered


def test_attacked_inputs_sort_by_the_score_their_tiles_show(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    ex.heatmap.perturbation = "fgsm"
    fgsm = bundle.mask(perturbation="fgsm")
    k = int(np.bincount(bundle.column("prediction")[fgsm], minlength=len(CLASSES)).argmax())
    ex.select(CLASSES[k], "red")
    ex.grid.page_size = 100
    ex.grid.sort_by = "defect"
    shown = [t["defect"] for t in ex.grid.tiles]
    assert len(shown) > 1 and all(t["perturbation"] == "fgsm" for t in ex.grid.tiles)
    assert shown == sorted(shown, reverse=True)


def test_keyboard_moves_the_cursor_and_enter_opens_the_cell(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    keys = ex.heatmap.key_strip
    keys._request = {"move": [0, 0], "nonce": 1}  # the first key puts the cursor on a cell
    assert ex.heatmap.cursor == (0, 0) and ex.heatmap.cell is None
    assert keys._label.startswith(f"{CLASSES[0]} · red: ")
    keys._request = {"move": [1, 0], "nonce": 2}
    keys._request = {"move": [0, 1], "nonce": 3}
    assert ex.heatmap.cursor == (1, 1)
    assert ex.heatmap.chart.params.picked == {"row": CLASSES[1], "column": "green"}  # outlined
    keys._request = {"move": [-5, 9], "nonce": 4}  # stays inside the heatmap
    assert ex.heatmap.cursor == (0, 3)
    keys._request = {"open": True, "nonce": 5}  # Enter: the grid shows the cell's inputs
    assert ex.heatmap.cell.row == CLASSES[0] and ex.heatmap.cell.column == XSS
    assert "(open)" in keys._label
    keys._request = {"clear": True, "nonce": 6}
    assert ex.heatmap.cell is None and ex.grid.tiles == []


def test_a_cleared_selection_says_why(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    ex.select(CLASSES[1], "green")
    ex.picker.hidden = ["green"]
    assert ex.heatmap.cell is None and "green" in ex.heatmap.status.value
    assert "no longer shown" in ex.heatmap.status.value


def test_tooltips_say_what_a_cell_means(bundle, tiny_vlm):
    ex = Explorer(bundle, vlm=tiny_vlm)
    cells = ex.heatmap.chart.spec["data"]["values"]
    filled = next(c for c in cells if c["value"] is not None)
    assert filled["meaning"].startswith(f"mistakes predicted {filled['row']} show "
                                        f"{filled['column']}")
    assert f"({filled['n_other']} mistakes, {filled['n']} correct)" in filled["meaning"]
    counts = bundle.heatmap("differential").counts_other
    for c in cells:  # a class never predicted wrongly says so in its row
        assert c["row_label"].endswith("no mistakes") == (counts[CLASSES.index(c["row"])] == 0)


def test_suggested_concepts_follow_the_cell_and_a_click_adds_a_column(bundle, tiny_vlm):
    from semheat_widgets.engine.concepts.discover import Vocabulary
    from semheat_widgets.engine.concepts.slices import Slice

    voc = Vocabulary.from_phrases(["a red square", "green", "water", "a dog", XSS])
    ex = Explorer(bundle, vlm=tiny_vlm, vocabulary=voc)
    row = CLASSES[busiest_row(bundle)]
    click(ex.heatmap.chart, row, "blue")
    panel = ex.discovery
    expect = bundle.discover(bundle.cell_query("incorrect", row), voc, vlm=tiny_vlm,
                             k=panel.k).top()
    assert [r["phrase"] for r in panel.rows] == [r["phrase"] for r in expect]
    assert len(panel.suggestions.children) == len(expect) > 0
    first = panel.suggestions.children[0]
    assert first.children[0].description == expect[0]["phrase"]  # text, not HTML
    assert f"{expect[0]['effect_image']:+.2f}" in first.children[1].value
    first.children[0].click()
    assert expect[0]["phrase"] in ex.heatmap.columns
    # a slice's entry pulls its inputs into the grid
    idx = np.flatnonzero(~bundle.column("correct") & bundle.mask(perturbation="natural"))[:5]
    panel.found = [Slice(idx, row, {}, 0.0, 5, {}, "water", 1.0, 0.5, 0.01, True)]
    panel.pull(0)
    assert sorted(t["index"] for t in ex.grid.tiles) == sorted(idx.tolist())
    assert ex.grid.total == 5
