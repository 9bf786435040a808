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
    ({"enc-a": "x"}, "field bundles.enc-a: 'x' is not of type 'object'"),
    ({"enc-a": {"fault": "decoder", "role": "held out"}}, "field bundles.enc-a.fault"),
    ({"enc-a": {"fault": "head", "role": "held out", "seconds": "slow"}},
     "field bundles.enc-a.seconds"),
    ({".hidden": {"fault": "head", "role": "held out"}}, "not a folder inside"),
])
def test_a_damaged_family_json_is_one_line(tmp_path, capsys, bundles, words):
    root = _family(tmp_path, bundles)
    with pytest.raises(SemheatError, match=words):
        read_family(root)
    assert cli.main(["localize", "--family", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and "\n" not in err


def test_the_family_schema_is_plain_json_schema_and_our_checker_agrees_with_jsonschema():
    """``family.json`` is declared as a JSON Schema document; the package's own interpreter of
    it says "fits" exactly where the reference implementation does, on damaged variants."""
    import jsonschema

    from semheat_widgets.engine.bundle.json_schema import validate_json
    from semheat_widgets.zoo.family_file import FAMILY_SCHEMA

    jsonschema.Draft202012Validator.check_schema(FAMILY_SCHEMA)
    good = {"format": FAMILY_FORMAT, "sizes": {"n_natural": 10},
            "bundles": {"wet-ship": {"fault": "encoder", "role": "development",
                                     "concept": "wet", "class": "ship", "seconds": 3.5},
                        "head-bias": {"fault": "head", "role": "held out"}}}
    variants = [good, {**good, "format": "other"}, {**good, "sizes": {"n": -1}},
                {**good, "sizes": {"n": 1.5}}, {k: v for k, v in good.items() if k != "bundles"},
                {**good, "bundles": {"a/b": {"fault": "head", "role": "held out"}}},
                {**good, "bundles": {"x": {"fault": "head", "role": "held out", "seconds": -1}}},
                {**good, "bundles": {"x": {"fault": "head", "role": "dev"}}},
                {**good, "bundles": {"x": {"fault": "head", "role": "held out", "kind": 3}}}]
    for doc in variants:
        ours = True
        try:
            validate_json(doc, FAMILY_SCHEMA, "family.json")
        except SemheatError:
            ours = False
        assert ours == jsonschema.Draft202012Validator(FAMILY_SCHEMA).is_valid(doc), doc
