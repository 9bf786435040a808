"""The fault family folder is the package's own and resumable; a damaged family.json is one
line, and bundle names stay inside the folder (issue 28, findings 3 and 6)."""

import json

import pytest

from semheat_widgets import cli
from semheat_widgets.errors import SemheatError
from semheat_widgets.safe_io import owned_kind
from semheat_widgets.zoo import family_build
from semheat_widgets.zoo.family_build import FAMILY_FORMAT, read_family


def _family(tmp_path, bundles):
    root = tmp_path / "fam"
    (root / "enc-a").mkdir(parents=True)
    (root / "enc-a" / "manifest.json").write_text("{}")
    (root / "family.json").write_text(json.dumps({"format": FAMILY_FORMAT, "bundles": bundles}))
    return root


def test_an_interrupted_family_is_ours_and_its_build_resumes(tmp_path, monkeypatch):
    root = _family(tmp_path, {"enc-a": {"fault": "encoder", "role": "development"}})
    assert owned_kind(root) == "family"

    class Reached(Exception):
        pass

    def stop():
        raise Reached

    monkeypatch.setattr(family_build, "toy_vlm", stop)
    with pytest.raises(Reached):  # past the ownership check: the build goes on
        family_build.build_family(root, progress=False)


@pytest.mark.parametrize("bundles, words", [
    (["enc-a"], "bundles must be a mapping"),
    ({"enc-a": {"role": "development"}}, "fault"),
    ({"enc-a": {"fault": "encoder"}}, "role"),
    ({"../../toy/clean": {"fault": "encoder", "role": "held out"}}, "not a folder inside"),
    ({"enc-a": "x"}, "must be a mapping"),
])
def test_a_damaged_family_json_is_one_line(tmp_path, capsys, bundles, words):
    root = _family(tmp_path, bundles)
    with pytest.raises(SemheatError, match=words):
        read_family(root)
    assert cli.main(["localize", "--family", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err
