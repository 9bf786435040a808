"""The IPython extension: %load_ext semheat_widgets, %semheat PATH, %semheat alone."""

import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

from helpers.tiny import CLASSES
from semheat_widgets.widgets import magics
from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.engine.pipeline import AnalysisConfig, analyze
from semheat_widgets.widgets import Explorer


@pytest.fixture(scope="module")
def bundle_path(tiny_split, tiny_vlm, colour_dataset, tmp_path_factory):
    cfg = AnalysisConfig(attacks=(Attack("fgsm"),), attack_limit=24, batch_size=48,
                         thumb_size=16)
    b = analyze(tiny_split, tiny_vlm, colour_dataset, classes=CLASSES,
                concepts=ConceptBank(["red", "green"]), config=cfg, name="tiny magic",
                progress=False)
    return b.save(tmp_path_factory.mktemp("magic") / "my bundle")


@pytest.fixture()
def shell(monkeypatch):
    ip = InteractiveShell.instance()
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **_: shown.append(obj))
    ip.run_line_magic("load_ext", "semheat_widgets")
    yield ip, shown


def test_load_ext_registers_the_magic_and_it_shows_the_explorer(shell, bundle_path):
    ip, shown = shell
    assert "semheat" in ip.magics_manager.magics["line"]
    before = set(ip.user_ns)
    ip.run_line_magic("semheat", f'"{bundle_path}"')  # a path with a space, quoted
    assert len(shown) == 1 and isinstance(shown[0], Explorer)
    assert shown[0].bundle.path == bundle_path and shown[0].bundle.name == "tiny magic"
    assert shown[0].heatmap.kind == "differential"
    assert set(ip.user_ns) == before  # writes no variable
    ip.run_line_magic("semheat", f"--kind ground_truth '{bundle_path}'")
    assert shown[1].heatmap.kind == "ground_truth"


def test_bad_input_is_a_one_line_usage_error(shell, tmp_path):
    ip, shown = shell
    with pytest.raises(UsageError, match="^[^\n]+$"):
        magics.explorer_for(str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="unknown heatmap kind"):
        magics.explorer_for("--kind nope x")
    with pytest.raises(UsageError, match="usage"):
        magics.explorer_for("a b")
    with pytest.raises(UsageError, match="usage"):
        magics.explorer_for('"unclosed')
    assert shown == []


def test_no_path_opens_the_toy_world(shell, monkeypatch, bundle_path):
    ip, shown = shell
    asked = []

    def fake_toy_bundle(which):  # the toy build itself is covered by test_toy_world_build
        asked.append(which)
        return bundle_path

    monkeypatch.setattr("semheat_widgets.zoo.toy_dir.toy_bundle", fake_toy_bundle)
    ip.run_line_magic("semheat", "")
    ip.run_line_magic("semheat", "--toy head_fault")
    assert asked == ["encoder_fault", "head_fault"]
    assert [type(x) for x in shown] == [Explorer, Explorer]
