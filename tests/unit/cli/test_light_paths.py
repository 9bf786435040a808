"""Light paths stay light: commands and calls that only read a bundle import neither torch,
torchvision nor open_clip (nor jsonschema, whose format checkers take seconds to import), nor
scikit-learn, SciPy or pandas (AUROC and ROC curves are NumPy), and loading a bundle reads the
arrays' headers, not their values.

Each check runs in a fresh interpreter, so what an earlier test imported cannot hide a
regression; the property is ``sys.modules``, not a time."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from semheat_widgets.engine.bundle.json_schema import validate_json
from semheat_widgets.engine.bundle.schema import MANIFEST_SCHEMA
from semheat_widgets.errors import SemheatError
from helpers.json_walk import json_paths


HEAVY = ("torch", "torchvision", "open_clip", "jsonschema")
# what fitting a monitor, a probe or a slice finder needs; reading a bundle's figures does not
SCIENTIFIC = ("sklearn", "scipy", "pandas")


@pytest.fixture(scope="module")
def bundle(small_bundle):
    return small_bundle


def _imports_of(code: str, cwd, modules=HEAVY) -> tuple[int, list[str]]:
    """Run ``code`` in a fresh interpreter; its exit status and which of ``modules`` it
    loaded."""
    probe = (f"{code}\nimport sys, json\nprint('HEAVY=' + json.dumps([m for m in "
             f"{tuple(modules)!r} if m in sys.modules]), file=sys.stderr)\nsys.exit(_rc)\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=300, cwd=cwd)
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("HEAVY=")]
    assert lines, done.stderr[-2000:]
    return done.returncode, json.loads(lines[-1][len("HEAVY="):])


def _cli(*argv) -> str:
    return f"from semheat_widgets import cli\n_rc = cli.main({list(map(str, argv))!r})"


@pytest.mark.parametrize("command", [
    ("info", "{b}", "--json"), ("localize", "{b}", "--json"), ("monitor", "{b}", "--json"),
    ("monitor", "{b}", "--explain", "3", "--json"), ("compare", "{b}", "{b}", "--json"),
    ("verify", "{b}", "--json")], ids=lambda c: "-".join(a for a in c if "{" not in a))
def test_light_commands_import_nothing_heavy(bundle, tmp_path, command):
    rc, heavy = _imports_of(_cli(*[a.format(b=bundle) for a in command]), tmp_path,
                            HEAVY + SCIENTIFIC)
    assert rc == 0
    assert heavy == []


def test_reading_a_bundle_never_aborts_at_exit(tmp_path):
    """Arrow's pooled parquet readers could outlive the read and abort the interpreter at exit
    (SIGABRT, "terminate called without an active exception"): 20 of 240 `semheat info` runs
    here, two at a time beside a busy process, before the records were read on the calling
    thread; 0 of 240 after. These 40 runs caught the old reader in the first try, beside a busy
    process (a stress check: without load it may miss the old behaviour, never flag the fix)."""
    from semheat_widgets.bench.suite import synthetic_bundle

    saved = synthetic_bundle(5000).save(tmp_path / "b")  # the bench's bundle, where it was seen
    argv = [sys.executable, "-m", "semheat_widgets.cli", "info", str(saved), "--json"]
    failures = []
    for _ in range(20):
        runs = [subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for p in runs:
            _, err = p.communicate(timeout=120)
            if p.returncode != 0:
                failures.append((p.returncode, err.strip()[-200:]))
    assert failures == []


@pytest.mark.parametrize("code", [
    "from semheat_widgets.engine.bundle import Bundle\nb = Bundle.load({b!r})\n"
    "b.heatmaps(); b.cell_query('differential', b.classes[0], b.concept_names[0]); _rc = 0",
    "import semheat_widgets as sw\nb = sw.Bundle.load({b!r}); b.monitor('misclassification')\n"
    "_rc = 0",
    "import semheat_widgets.engine as e\nb = e.Bundle.load({b!r}); e.monitor_report(b)\n"
    "e.localization_report(b); _rc = 0",
], ids=["Bundle.load", "sw.Bundle", "engine-namespace"])
def test_reading_a_bundle_imports_nothing_heavy(bundle, tmp_path, code):
    rc, heavy = _imports_of(code.format(b=str(bundle)), tmp_path, HEAVY + SCIENTIFIC)
    assert rc == 0 and heavy == []


@pytest.mark.slow
def test_report_without_maps_imports_no_model_code(bundle, tmp_path):
    rc, heavy = _imports_of(_cli("report", bundle, "--html", tmp_path / "r.html", "--no-maps",
                                 "--no-slices"), tmp_path)
    assert rc == 0 and (tmp_path / "r.html").stat().st_size > 0
    # Altair (the charts) validates its specs with jsonschema; no model code is loaded
    assert set(heavy) <= {"jsonschema"}


def test_public_names_still_resolve():
    import semheat_widgets.engine as engine

    for name in engine.__all__:
        assert getattr(engine, name) is not None, name
    from semheat_widgets.engine import RuntimeMonitor
    from semheat_widgets.engine.detect import RuntimeMonitor as via_package
    from semheat_widgets.engine.detect.heatmap_monitor import RuntimeMonitor as again

    assert RuntimeMonitor is again is via_package and RuntimeMonitor.__name__ == "RuntimeMonitor"
    with pytest.raises(AttributeError):
        engine.no_such_name  # noqa: B018


# -- the one schema, checked without jsonschema: same verdicts as jsonschema ---------------------
def _mutations(manifest: dict, rng: random.Random, n: int):
    values = [None, True, False, 0, -1, 2.5, 1e9, "", "x", "../x", [], [""], {}, {"a": 1},
              [1, 2], ["a", "a"], float(3)]

    fields = [p for p in json_paths(manifest) if p]
    for _ in range(n):
        m = json.loads(json.dumps(manifest))
        where = rng.choice(fields)
        parent = m
        for part in where[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[where[-1]]
        elif action < 0.25 and isinstance(parent, dict):
            parent[rng.choice(["../../x", "ok_name", "bad name"])] = rng.choice(values)
        else:
            parent[where[-1]] = rng.choice(values)
        yield m


def test_the_schema_check_agrees_with_jsonschema(bundle):
    jsonschema = pytest.importorskip("jsonschema")

    manifest = json.loads((bundle / "manifest.json").read_text())
    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    rng = random.Random(29)
    disagree, failures = [], 0
    for m in [manifest, *_mutations(manifest, rng, 600)]:
        expected = sorted(validator.iter_errors(m), key=lambda e: list(e.absolute_path).__str__())
        try:
            validate_json(m, MANIFEST_SCHEMA, "manifest.json")
            ours = None
        except SemheatError as exc:
            ours = str(exc)
            failures += 1
        if (ours is None) != (not expected):
            disagree.append((ours, [e.message for e in expected]))
    assert disagree == []
    assert failures > 100  # the mutations did break the schema, often


def test_an_unknown_schema_keyword_is_refused():
    with pytest.raises(SemheatError, match="unsupported keyword"):
        validate_json({"a": 1}, {"type": "object", "dependentRequired": {"a": ["b"]}}, "x.json")


def test_load_reads_array_headers_not_values(bundle, tmp_path):
    """Every array's data after its header is overwritten with NaN: loading does not notice
    (it reads the headers), the arrays are memory maps of the files, and the full scan does."""
    import shutil

    from semheat_widgets.engine.bundle import Bundle

    copy = tmp_path / "b"
    shutil.copytree(bundle, copy)
    for f in (copy / "arrays").glob("*.npy"):
        arr = np.load(f, mmap_mode="r+")
        if arr.dtype.kind == "f":
            arr[...] = np.nan
            arr.flush()
        del arr
    b = Bundle.load(copy)
    assert all(isinstance(a, np.memmap) for a in b.arrays.values())
    assert b.n == Bundle.load(bundle).n
    with pytest.raises(SemheatError, match="NaN or inf"):
        b.verify()


# -- the explorer: opened and clicked without model code, its JavaScript bundled once ------------
def test_opening_and_clicking_the_explorer_imports_no_model_code(bundle, tmp_path):
    """``sw.Explorer(path)``, and a click on a cell up to the grid's thumbnails, load neither
    torch (activation maps load it when drawn) nor pandas (``pa.array`` of an ndarray would),
    only Altair's jsonschema. (After the thumbnails, the suggestions panel may open the bundle's
    VLM: not checked here.)"""
    heavy = tuple(m for m in HEAVY + SCIENTIFIC if m != "jsonschema")
    code = (f"import os, sys\nos.environ['SEMHEAT_JS_CACHE'] = {str(tmp_path / 'js')!r}\n"
            f"heavy = {heavy!r}\nloaded = lambda: [m for m in heavy if m in sys.modules]\n"
            f"import semheat_widgets as sw\nex = sw.Explorer({str(bundle)!r})\n"
            "assert ex.heatmap.chart.spec['data']['values']\nassert loaded() == [], loaded()\n"
            "seen, pictures = [], ex.grid._pictures\n"
            "def watched(*args):\n    out = pictures(*args)\n    seen.append(loaded())\n"
            "    return out\n"
            "ex.grid._pictures = watched\nb = ex.bundle\n"
            "row = next(r for r in b.classes if b.cell_query('differential', r).total)\n"
            "ex.select(row, b.concept_names[0])\n"
            "assert len(ex.grid._images) == min(ex.grid.total, ex.grid.page_size) > 0\n"
            "assert seen == [[]], seen\n_rc = 0")
    rc, _ = _imports_of(code, tmp_path, ())
    assert rc == 0


def test_a_built_toy_world_opens_without_the_builder(mini_world, tmp_path):
    """``sw.Explorer.toy`` (and ``sw.toy_bundle``) on a world that is already built — every
    open but the first, and Binder's — find the bundle without importing the toy world's
    builder, so no torch or open_clip; the builder is imported only to build."""
    heavy = tuple(m for m in HEAVY + SCIENTIFIC if m != "jsonschema")
    code = (f"import os, sys\nos.environ['SEMHEAT_JS_CACHE'] = {str(tmp_path / 'js')!r}\n"
            f"import semheat_widgets as sw\n"
            f"ex = sw.Explorer.toy('head_fault', {str(mini_world)!r})\n"
            f"assert sw.toy_bundle('clean', {str(mini_world)!r}).name == 'clean'\n"
            "assert ex.bundle.manifest['toy_world']['classifier'] == 'head_fault'\n"
            "assert 'semheat_widgets.zoo.build' not in sys.modules\n_rc = 0")
    rc, loaded = _imports_of(code, tmp_path, heavy)
    assert rc == 0 and loaded == []


def test_the_offline_vega_bundle_is_built_once_and_read_back(tmp_path):
    """The first kernel bundles Altair's chart JavaScript with vl-convert and caches it; the
    next reads the cache (vl-convert's bundler is not called) and serves the same module."""
    import os

    probe = ("import hashlib, sys\nimport altair as alt, vl_convert\n"
             "if sys.argv[1] == 'cached':\n"
             "    def refuse(*a, **k):\n        raise AssertionError('bundled again')\n"
             "    vl_convert.javascript_bundle = refuse\n"
             "from semheat_widgets.widgets.base import enable_offline\nenable_offline()\n"
             "assert alt.JupyterChart._is_offline\n"
             "print(hashlib.sha256(alt.JupyterChart._esm.encode()).hexdigest())\n")
    env = dict(os.environ, SEMHEAT_JS_CACHE=str(tmp_path / "js"))
    digests = []
    for mode in ("first", "cached"):
        done = subprocess.run([sys.executable, "-c", probe, mode], capture_output=True,
                              text=True, timeout=300, cwd=tmp_path, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(done.stdout.split()[-1])
    assert digests[0] == digests[1]
    assert len(list((tmp_path / "js").glob("*.js"))) == 1


def test_category_codes_from_arrow_match_numpy_unique():
    """``Bundle.codes`` reads Arrow's dictionary encoding; it gives what ``np.unique`` gives on
    the strings (sorted categories, each record's index), also for dictionary columns with
    repeated or unused dictionary values and for several chunks."""
    import pyarrow as pa

    from semheat_widgets.engine.bundle.queries import _arrow_codes

    rng = np.random.default_rng(0)
    words = np.array(["natural", "pgd", "fgsm", "", "é", "Z"], dtype=object)
    plain = pa.chunked_array([pa.array(list(words[rng.integers(0, 6, 50)])),
                              pa.array(list(words[rng.integers(0, 3, 7)]))])
    dictionary = pa.chunked_array([pa.DictionaryArray.from_arrays(
        pa.array(rng.integers(0, 3, 40), pa.int32()), pa.array(["b", "a", "b", "unused"]))])
    for col in (plain, dictionary, plain.cast(pa.large_string())):
        codes, cats = _arrow_codes(col)
        want_cats, want_codes = np.unique(np.array(col.to_pylist()).astype(str),
                                          return_inverse=True)
        assert cats == want_cats.tolist() and codes.dtype == np.int32
        assert np.array_equal(codes, want_codes)
    assert _arrow_codes(pa.chunked_array([pa.array(["a", None])])) is None  # NumPy path
    assert _arrow_codes(pa.chunked_array([pa.array([1, 2])])) is None


def test_encoded_thumbnails_are_kept_and_the_same(bundle):
    """A bundle keeps its last PNG encodings (a click on a neighbouring cell shows many of the
    same inputs): the same bytes as a fresh encoding, the oldest dropped past the cache size."""
    from semheat_widgets.engine.bundle import Bundle
    from semheat_widgets.engine.bundle.images import PngCache, png_bytes

    b = Bundle.load(bundle)
    first = b.thumbnail_png(2)
    assert first == png_bytes(b.thumbnail(2)) and b.thumbnail_png(2) is first  # kept
    small = PngCache(size=3)
    for i in (0, 1, 2, 0, 3):  # 0 used again, so 1 is the oldest when 3 arrives
        small.get(b, i)
    assert list(small._items) == [2, 0, 3]
    assert small.get(b, 1) == png_bytes(b.thumbnail(1))


def test_a_page_of_thumbnails_is_read_ahead_with_the_same_bytes_and_errors(bundle):
    """``thumbnail_pngs`` (the grid's page: rows asked of the disk together) gives what
    ``thumbnail_png`` gives one at a time, and refuses a bad index the same way."""
    from semheat_widgets.engine.bundle import Bundle
    from semheat_widgets.engine.bundle.store import prefetch

    b = Bundle.load(bundle)
    idx = np.array([b.n - 1, 0, 3, 3])
    assert b.thumbnail_pngs(idx) == [b.thumbnail_png(int(i)) for i in idx]
    assert b.thumbnail_pngs([]) == []
    for bad in (b.n, -1, True, 1.5):
        with pytest.raises(SemheatError) as one:
            b.thumbnail_png(bad)
        with pytest.raises(SemheatError) as page:
            b.thumbnail_pngs([0, bad])
        assert str(page.value) == str(one.value)
    before = np.array(b.arrays["thumbs"])
    prefetch(b.arrays["thumbs"], [0, b.n - 1])
    prefetch(b.arrays["thumbs"][::2], [1])  # a strided view: nothing to advise
    prefetch(np.zeros((3, 4)), [1])  # in memory: nothing to do
    assert np.array_equal(np.asarray(b.arrays["thumbs"]), before)
