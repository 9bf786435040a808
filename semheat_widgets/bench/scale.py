"""Analysis at ImageNet scale without a million forward passes: a synthetic extractor and the
scale benchmark.

    semheat bench --scale 100000 --scale 1000000 --json

:class:`SyntheticExtractor` stands where :func:`~.engine.extract.extract` (or the Ray
extractor) stands in :func:`~.engine.pipeline.analyze` and writes random but well-formed
records: class-structured 512-d features, logits from a linear head on them (about 80 %
accurate), unit VLM embeddings that are a noisy linear image of the features (so the aligner
has something to fit), 64 px thumbnails, and attacked copies whose features are pushed towards
another class. Everything after extraction — aligner, concept scores, localization, monitors,
baselines, records, the bundle on disk — is the real code.

:func:`bench_scale` runs one analysis of ``n`` inputs in a fresh process (``analyze(...,
save_to=...)``), samples its peak memory, and compares the time spent after extraction with one
sequential pass over the extracted arrays (the floor any analysis of them pays). Before the
bundle is removed, :func:`open_figures` opens it as a user would, each time in a fresh process:
``Bundle.load`` (goal <= 1 s at 1M records), ``sw.Explorer(path)`` to its first heatmap chart
spec, imports included (goal <= 5 s), and clicks on heatmap cells until the grid holds the
cell's thumbnails as PNG bytes, first and warm (goal <= 150 ms). These are the Python side: the
browser's drawing is not in them (``benchmarks/click_to_thumbnail.py`` times that).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..engine.bundle.store import array_chunks, read_rows, row_chunks
from ..engine.vectors import unit_rows

DIM, EMBED_DIM, N_CLASSES, THUMB = 512, 512, 10, 64
CONCEPTS = [f"concept {j}" for j in range(18)]


class SyntheticInputs:
    """``n`` inputs that are only labels (what a synthetic extractor needs)."""

    def __init__(self, n: int, n_classes: int = N_CLASSES, seed: int = 0):
        self.labels = np.random.default_rng(seed).integers(0, n_classes, n)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return None, int(self.labels[i])


def _labels_of(dataset) -> np.ndarray:
    """Labels of a :class:`SyntheticInputs`, through ``Subset`` / ``ConcatDataset``."""
    if hasattr(dataset, "indices"):
        return _labels_of(dataset.dataset)[np.asarray(dataset.indices)]
    if hasattr(dataset, "datasets"):
        return np.concatenate([_labels_of(d) for d in dataset.datasets])
    return dataset.labels


class SyntheticVLM:
    """Text embeddings that are fixed random unit vectors per text (a hash seeds each)."""

    name, embed_dim, device = "synthetic-vlm", EMBED_DIM, torch.device("cpu")

    def encode_texts(self, texts) -> torch.Tensor:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "little")
            rows.append(np.random.default_rng(seed).standard_normal(self.embed_dim))
        return torch.as_tensor(unit_rows(np.asarray(rows)), dtype=torch.float32)


class SyntheticClassifier:
    name, num_classes, device = "synthetic-classifier", N_CLASSES, torch.device("cpu")


class SyntheticExtractor:
    """Writes synthetic records into the pipeline's store, chunk by chunk (see the module
    docstring); ``seconds`` adds up the time spent in it."""

    writes_into = True

    def __init__(self, seed: int = 0, chunk: int = 4096):
        rng = np.random.default_rng(seed)
        self.prototypes = 0.15 * rng.standard_normal((N_CLASSES, DIM)).astype(np.float32)
        self.head = self.prototypes.T.copy()  # D x K: nearest prototype (about 80 % right)
        self.lift = (rng.standard_normal((DIM, EMBED_DIM)) / np.sqrt(DIM)).astype(np.float32)
        self.tiles = rng.integers(0, 256, (N_CLASSES, THUMB, THUMB, 3), dtype=np.uint8)
        self.seed, self.chunk, self.seconds, self.calls = seed, chunk, 0.0, 0

    def __call__(self, classifier, vlm, dataset, *, into, offset=0, attack=None, **_):
        started = time.perf_counter()
        labels = _labels_of(dataset)
        self.calls += 1
        rng = np.random.default_rng([self.seed, self.calls])
        for rows in row_chunks(len(labels), self.chunk):
            y = labels[rows]
            z = self.prototypes[y] + 1.2 * rng.standard_normal((len(y), DIM), dtype=np.float32)
            if attack is not None:  # towards the next class
                z += 0.8 * (self.prototypes[(y + 1) % N_CLASSES] - self.prototypes[y])
            into.write("features", offset + rows.start, z)
            into.write("logits", offset + rows.start, z @ self.head)
            emb = z @ self.lift + 0.5 * rng.standard_normal((len(y), EMBED_DIM),
                                                            dtype=np.float32)
            into.write("image_emb", offset + rows.start, unit_rows(emb).astype(np.float32))
            into.write("labels", offset + rows.start, y.astype(np.int64))
            into.write("thumbs", offset + rows.start, self.tiles[y])
        self.seconds += time.perf_counter() - started
        return None


def one_pass(folder: Path, keys=("features", "logits", "image_emb", "thumbs")) -> float:
    """Seconds of one sequential chunked read of the bundle's extracted arrays."""
    started = time.perf_counter()
    for key in keys:
        array = np.load(folder / "arrays" / f"{key}.npy", mmap_mode="r")
        for rows in array_chunks(array):
            read_rows(array, rows)
    return time.perf_counter() - started


def run_scale(n: int, out: Path, attack_share: float = 0.05) -> dict:
    """One synthetic analysis of ``n`` inputs saved to ``out`` (in this process)."""
    from ..engine.extract.attacks import Attack
    from ..engine.concepts.bank import ConceptBank
    from ..engine.pipeline import AnalysisConfig, analyze

    extractor = SyntheticExtractor()
    config = AnalysisConfig(attack_limit=int(n * attack_share),
                            attacks=(Attack("fgsm"), Attack("pgd")))
    started = time.perf_counter()
    bundle = analyze(SyntheticClassifier(), SyntheticVLM(), SyntheticInputs(n),
                     classes=[f"class {k}" for k in range(N_CLASSES)],
                     concepts=ConceptBank(CONCEPTS), config=config, name=f"scale-{n}",
                     progress=False, extractor=extractor, save_to=out, overwrite=True)
    total = time.perf_counter() - started
    floor_all = one_pass(out)
    floor_read = one_pass(out, ("features", "logits", "image_emb"))
    return {"inputs": n, "records": bundle.n, "total_s": total,
            "extraction_s": extractor.seconds, "analysis_s": total - extractor.seconds,
            "one_pass_s": floor_all, "one_pass_read_s": floor_read,
            "analysis_over_pass": (total - extractor.seconds) / floor_all,
            "analysis_over_read_pass": (total - extractor.seconds) / floor_read,
            "accuracy": bundle.manifest["accuracy"],
            "bundle_gb": sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e9}


LOAD_PROBE = """
import json, sys, time
t0 = time.perf_counter()
from semheat_widgets.engine.bundle import Bundle
t1 = time.perf_counter()
b = Bundle.load(sys.argv[1])
t2 = time.perf_counter()
print("RESULT " + json.dumps({"load_import_s": t1 - t0, "load_s": t2 - t1, "records": b.n}))
"""

EXPLORER_PROBE = """
import json, statistics, sys, time
path, clicks = sys.argv[1], int(sys.argv[2])
t0 = time.perf_counter()
import semheat_widgets as sw
sw.Explorer  # the widget modules (Altair, ipywidgets, anywidget)
t1 = time.perf_counter()
ex = sw.Explorer(path)
assert ex.heatmap.chart.spec["data"]["values"]  # the differential heatmap is drawn
t2 = time.perf_counter()
b, grid = ex.bundle, ex.grid
K, C = len(b.classes), len(b.concept_names)
cells = [(b.classes[i % K], b.concept_names[(5 * i + 3) % C]) for i in range(clicks + 1)]
shown = []  # when the grid's thumbnails are set (their message goes out then)
grid.observe(lambda _change: shown.append(time.perf_counter()), names=["_images"])
times, whole = [], []
for row, concept in cells:
    shown.clear()
    t = time.perf_counter()
    ex.select(row, concept)
    whole.append(time.perf_counter() - t)
    times.append(shown[0] - t)
    assert len(grid._images) == len(grid.tiles) == min(grid.total, grid.page_size)
    assert grid.total == 0 or grid._images[0].startswith(b"\\x89PNG")
ms = lambda x: 1000 * x  # noqa: E731
print("RESULT " + json.dumps({"explorer_s": t2 - t0, "explorer_import_s": t1 - t0,
                              "explorer_build_s": t2 - t1, "click_first_ms": ms(times[0]),
                              "click_warm_ms": ms(statistics.median(times[1:])),
                              "click_all_first_ms": ms(whole[0]),
                              "click_all_warm_ms": ms(statistics.median(whole[1:])),
                              "clicks": len(times)}))
"""


def _probe(code: str, *args) -> dict:
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, timeout=600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"opening the bundle failed: {(proc.stdout + proc.stderr)[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def open_figures(path, repeats: int = 3, clicks: int = 5) -> dict:
    """How long a user waits to open the bundle at ``path``, each figure the median of
    ``repeats`` fresh processes (see the module docstring): ``load_s``, ``explorer_s``,
    ``click_first_ms`` and ``click_warm_ms`` (the median of ``clicks`` clicks on other cells
    after the first) until the grid's thumbnails are set, and ``click_all_*_ms`` until every
    view has followed the click (concept suggestions included). The page cache is as the
    caller left it (warm after a build)."""
    loads = [_probe(LOAD_PROBE, path) for _ in range(repeats)]
    opens = [_probe(EXPLORER_PROBE, path, clicks) for _ in range(repeats)]
    out = {k: float(np.median([r[k] for r in loads])) for k in ("load_s", "load_import_s")}
    out.update({k: float(np.median([r[k] for r in opens]))
                for k in ("explorer_s", "explorer_import_s", "explorer_build_s",
                          "click_first_ms", "click_warm_ms", "click_all_first_ms",
                          "click_all_warm_ms")})
    return out


def bench_scale(n: int, work: Path) -> dict:
    """:func:`run_scale` in a fresh process, its peak memory sampled (see ``measure_process``);
    the bundle is removed afterwards."""
    import shutil

    from .suite import measure_process

    out = Path(work) / f"scale-{n}"
    code = ("import json, sys; from pathlib import Path; "
            "from semheat_widgets.bench.scale import run_scale; "
            f"print('RESULT ' + json.dumps(run_scale({int(n)}, Path(sys.argv[1]))))")
    try:
        proc = measure_process([sys.executable, "-c", code, str(out)], timeout=4 * 3600)
        lines = [ln for ln in proc["output_tail"].splitlines() if ln.startswith("RESULT ")]
        if proc["returncode"] != 0 or not lines:
            raise RuntimeError(f"the scale run of {n} inputs failed: {proc['output_tail']}")
        result = json.loads(lines[-1][len("RESULT "):])
        result.update(open_figures(out))  # before the bundle goes
    finally:
        shutil.rmtree(out, ignore_errors=True)
    result.update(peak_rss_mb=proc["peak_rss_mb"], peak_pss_mb=proc["peak_pss_mb"],
                  wall_s=proc["seconds"])
    return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}


SCALE_GOALS = {"peak_rss_gb": 4.0, "peak_ratio": 2.0, "analysis_over_pass": 10.0,
               "load_s": 1.0, "explorer_s": 5.0, "click_first_ms": 150.0,
               "click_warm_ms": 150.0}


def scale_benchmarks(sizes, progress: bool = True, work=None) -> dict:
    """:func:`bench_scale` for each size (smallest first); the goals are checked on the
    largest: peak RSS (GB), its ratio to the smallest size's, time over one pass, and the
    time to load it, open an explorer on it and click a cell (:func:`open_figures`)."""
    import tempfile

    sizes = sorted(set(int(n) for n in sizes))
    runs = []
    with tempfile.TemporaryDirectory(prefix="semheat-scale-", dir=work) as tmp:
        for n in sizes:
            if progress:
                print(f"analysing {n} synthetic inputs ...", flush=True)
            runs.append(bench_scale(n, Path(tmp)))
    largest, smallest = runs[-1], runs[0]
    figures = {"peak_rss_gb": largest["peak_rss_mb"] / 1024,
               "peak_ratio": largest["peak_rss_mb"] / max(smallest["peak_rss_mb"], 1),
               "analysis_over_pass": largest["analysis_over_pass"],
               **{k: largest[k] for k in ("load_s", "explorer_s", "click_first_ms",
                                          "click_warm_ms")}}
    return {"runs": runs, **{k: round(v, 3) for k, v in figures.items()},
            "goals_met": {k: figures[k] <= v for k, v in SCALE_GOALS.items()
                          if len(runs) > 1 or k != "peak_ratio"}}
