"""Performance figures, each a ratio of two timings measured side by side in the same run.

    semheat bench --json

- ``heatmaps``: every heatmap kind for N cached records x 18 concepts, against one bare NumPy
  matmul ``N x 512 @ 512 x 18`` (goal <= 3).
- ``add_concept``: a new free-text concept column for N records (scores, standardiser, its
  heatmap column), against one pass over the cached aligned embeddings (goal <= 2).
- ``monitor_overhead_b1`` / ``_b64``: the runtime monitor's extra work per input against the
  ResNet-18 forward pass it rides on, CPU (goal <= 0.05); ``concept_monitor_overhead_b1`` /
  ``_b64`` the same for the stacked concept-space monitor, the default (goal <= 0.05).
- ``extraction``: throughput of :func:`extract` against bare classifier + VLM forward passes on
  the same batches (goal >= 0.8).
- ``discover``: concept discovery (:meth:`Bundle.discover`) for the mistakes of one predicted
  class of the N records against 10,000 cached phrase embeddings, against the one matmul it
  cannot avoid, the selection's aligned embeddings times the phrase matrix (goal <= 2), and
  ``discover_seconds`` absolute (goal <= 1 s).
- ``cell_query_ms``: one heatmap-cell query on the N-record bundle (milliseconds).
- ``concept_map_ms``: one concept activation map on click, toy classifier, CPU (goal <= 50),
  and its ratio to the bare forward pass it contains.
- with ``--first-run``: ``first_explorer_s`` (a new user's ``Explorer.toy()`` on an empty
  toy-world folder, imports included; goal <= 60 s on 2 cores), ``toy_build_s`` (the full
  ``semheat toy build``; goal <= 120 s) and their peak memory (RSS and PSS of the process tree;
  goal: the build <= 2 GB). Absolute figures, not ratios: they are what a user waits for.
- with ``--ray``: ``ray_overhead_steady`` — Ray extraction time per image against the local
  path on the same images, start-up cancelled (goal <= 1.3); also end to end.

- ``info_s`` / ``info_vs_import_numpy_pyarrow``: ``semheat info --json`` on a saved bundle of
  toy size, a whole fresh process, against ``python -c "import numpy, pyarrow"`` run in turn
  with it (goal <= 0.5 s and <= 3); ``localize_s`` / ``monitor_s`` and
  ``localize_vs_import_numpy_pyarrow`` / ``monitor_vs_import_numpy_pyarrow``: ``semheat
  localize`` / ``monitor --json`` on the toy world when it is built (``$SEMHEAT_TOY_DIR`` or
  the user cache), each against the same import run in turn with it (goal <= 1.5 s and <= 3
  each: neither imports scikit-learn, SciPy nor pandas); ``load_s``: ``Bundle.load`` of the
  N-record bundle saved to disk (headers only; goal <= 1 s at 1M records), with the same
  process's ``verify_s`` (the full scan loading skips) beside it.

Timings are medians over repeats; nothing here asserts, the numbers are reported.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

GOALS = {"heatmaps": ("<=", 3.0), "add_concept": ("<=", 2.0),
         "first_explorer_s": ("<=", 60.0), "toy_build_s": ("<=", 120.0),
         "concept_map_ms": ("<=", 50.0),
         "toy_build_peak_pss_mb": ("<=", 2048.0),
         "monitor_overhead_b1": ("<=", 0.05), "monitor_overhead_b64": ("<=", 0.05),
         "concept_monitor_overhead_b1": ("<=", 0.05),
         "concept_monitor_overhead_b64": ("<=", 0.05),
         "extraction": (">=", 0.8), "discover": ("<=", 2.0), "discover_seconds": ("<=", 1.0),
         "ray_overhead_steady": ("<=", 1.3),
         "info_s": ("<=", 0.5), "info_vs_import_numpy_pyarrow": ("<=", 3.0),
         "localize_s": ("<=", 1.5), "monitor_s": ("<=", 1.5), "load_s": ("<=", 1.0),
         "localize_vs_import_numpy_pyarrow": ("<=", 3.0),
         "monitor_vs_import_numpy_pyarrow": ("<=", 3.0)}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def synthetic_bundle(n: int, n_concepts: int = 18, dim: int = 512, n_classes: int = 10,
                     seed: int = 0):
    """An in-memory bundle of ``n`` records with random scores and aligned embeddings."""
    from ..engine.bundle import Bundle
    from ..engine.vectors import SCORE_CHUNK

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, n).astype(np.int16)
    preds = np.where(rng.random(n) < 0.8, labels, rng.integers(0, n_classes, n)).astype(np.int16)
    aligned = rng.standard_normal((n, dim), dtype=np.float32)
    aligned /= np.linalg.norm(aligned, axis=1, keepdims=True)
    concepts = rng.standard_normal((n_concepts, dim), dtype=np.float32)
    concepts /= np.linalg.norm(concepts, axis=1, keepdims=True)
    scores = np.empty((n, n_concepts), np.float32)
    for s in range(0, n, SCORE_CHUNK):
        scores[s:s + SCORE_CHUNK] = aligned[s:s + SCORE_CHUNK] @ concepts.T
    split = np.array(["fit", "calib", "eval"])[rng.integers(0, 3, n)]
    columns = {"id": np.arange(n), "split": pa.array(split).dictionary_encode(),
               "perturbation": pa.array(np.full(n, "natural")).dictionary_encode(),
               "source_id": np.arange(n), "label": labels, "prediction": preds,
               "correct": labels == preds}
    state = {"standardizer.mean": scores[:100000].mean(0),
             "standardizer.std": scores[:100000].std(0), "concept_embeddings": concepts}
    return Bundle.create(name="synthetic", classes=[f"c{k}" for k in range(n_classes)],
                         concepts=[{"name": f"k{j}", "prompts": [f"k{j}"]}
                                   for j in range(n_concepts)],
                         columns=columns, arrays={"aligned": aligned, "scores": scores},
                         state=state)


def bench_heatmaps(bundle, repeats: int) -> dict:
    aligned = bundle.arrays["aligned"]
    concepts = bundle.state["concept_embeddings"]
    matmul = _median_time(lambda: aligned @ concepts.T, repeats)
    heat = _median_time(lambda: bundle.heatmaps(perturbation=None), repeats)
    return {"heatmaps": heat / matmul, "heatmaps_seconds": heat, "matmul_seconds": matmul}


def bench_add_concept(bundle, repeats: int) -> dict:
    aligned = bundle.arrays["aligned"]
    rng = np.random.default_rng(1)
    vec = rng.standard_normal(aligned.shape[1]).astype(np.float32)
    vec /= np.linalg.norm(vec)
    one_pass = _median_time(lambda: aligned @ vec, repeats)
    counter = iter(range(10**6))

    def add():
        name = f"free text {next(counter)}"
        bundle.add_concept(name, vector=vec)
        bundle.concept_column(name)
        bundle._extra.pop()  # keep the bundle as it was for the next repeat

    added = _median_time(add, repeats)
    return {"add_concept": added / one_pass, "add_concept_seconds": added,
            "one_pass_seconds": one_pass}


def bench_discover(bundle, repeats: int, n_phrases: int = 10_000) -> dict:
    from ..engine.concepts.discover import PhraseEmbeddings, Vocabulary

    aligned = bundle.arrays["aligned"]
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((n_phrases, aligned.shape[1]), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    names = tuple(f"phrase {j}" for j in range(n_phrases))
    phrases = PhraseEmbeddings(Vocabulary(names, tuple((n,) for n in names)), vectors)
    sel = bundle.query(prediction=3, correct=False, perturbation=None).indices
    matmul = _median_time(lambda: np.asarray(aligned[sel]) @ vectors.T, repeats)
    found = _median_time(lambda: bundle.discover(sel, phrases, perturbation=None), repeats)
    return {"discover": found / matmul, "discover_seconds": found,
            "discover_matmul_seconds": matmul, "discover_selection": int(len(sel)),
            "discover_phrases": n_phrases}


def bench_cell_query(bundle, repeats: int) -> dict:
    k = bundle.classes[3]
    concept = bundle.concept_names[5]
    t = _median_time(lambda: bundle.cell_query("differential", k, concept, perturbation=None,
                                               limit=48), repeats)
    return {"cell_query_ms": t * 1000}


def bench_monitor(repeats: int) -> dict:
    from torchvision.models import resnet18

    from ..engine.models.aligner import LinearAligner
    from ..engine.models.classifier import ModelSplit
    from ..engine.detect.concept_monitor import ConceptMonitor
    from ..engine.detect.heatmap_monitor import HeatmapMonitor, RuntimeMonitor
    from ..engine.detect.protocol import Evidence

    torch.manual_seed(0)
    split = ModelSplit(resnet18(num_classes=10).eval())
    rng = np.random.default_rng(0)
    aligner = LinearAligner().fit(rng.normal(size=(600, 512)), rng.normal(size=(600, 512)))
    concepts = rng.normal(size=(18, 512)).astype(np.float32)
    logits = np.eye(10)[rng.integers(0, 10, 200)]
    mon = HeatmapMonitor("cosine", np.zeros(18), np.ones(18)).fit(
        Evidence(logits, concept_scores=rng.normal(size=(200, 18))), np.arange(200) % 4 == 0)
    runtime = RuntimeMonitor(split, aligner, concepts, mon)
    # the concept-space monitor, fit on random features and defects (its cost does not depend
    # on what it learnt: nine signals of fixed size, then a dot product)
    z_fit, y_fit = rng.normal(size=(600, 512)), np.arange(600) % 10
    fit_logits = np.eye(10)[np.where(np.arange(600) % 5 == 0, (y_fit + 1) % 10, y_fit)] * 5
    ev = Evidence(fit_logits, z_fit, labels=y_fit)
    concept = ConceptMonitor(aligner.W_, aligner.b_, concepts, rng.normal(size=(10, 512)),
                             np.zeros(18), np.ones(18)).fit(
        ev, fit_logits.argmax(1) != y_fit, reference=ev)
    runtimes = {"monitor": runtime,
                "concept_monitor": RuntimeMonitor(split, aligner, concepts, concept)}
    out = {}
    for batch in (1, 64):
        x = torch.rand(batch, 3, 224, 224)
        with torch.inference_mode():
            z, logits = split.features_and_logits(x)  # warm-up
            forward = _median_time(lambda: split.features_and_logits(x), repeats)
            inner = max(1, int(0.05 / max(forward, 1e-6)) if batch == 1 else 20)
            for name, rt in runtimes.items():
                check = _median_time(lambda: [rt.check(z, logits) for _ in range(inner)],
                                     repeats) / inner
                out[f"{name}_overhead_b{batch}"] = check / forward
        out[f"forward_b{batch}_seconds"] = forward
    return out


def bench_extraction(n: int, repeats: int) -> dict:
    from torch.utils.data import TensorDataset

    from ..engine.extract import extract
    from ..zoo.models import toy_classifier, toy_vlm

    split, vlm = toy_classifier("clean", "cpu"), toy_vlm("cpu")
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=gen)
    labels = torch.zeros(n, dtype=torch.long)
    batch = 256

    def bare():
        with torch.inference_mode():
            for s in range(0, n, batch):
                split.features_and_logits(images[s:s + batch])
                vlm.encode_images(images[s:s + batch], batch_size=batch)

    data = TensorDataset(images, labels)
    bare()  # warm-up
    t_bare = _median_time(bare, repeats)
    t_ext = _median_time(lambda: extract(split, vlm, data, batch_size=batch, progress=False),
                         repeats)
    return {"extraction": t_bare / t_ext, "extraction_images_per_second": n / t_ext,
            "bare_images_per_second": n / t_bare}


def bench_ray_extraction(n: int, repeats: int = 1) -> dict:
    """The Ray path against the local path on the same toy images, on this one machine.

    Ray pays a fixed start-up (actor processes, model copies) per run; the steady-state ratio
    cancels it by timing ``n`` and ``n / 4`` images on both paths.
    """
    import shutil
    import tempfile

    from torch.utils.data import TensorDataset

    from ..engine.extract import extract
    from ..engine.extract.on_ray import RayExtractor
    from ..zoo.models import toy_classifier, toy_vlm

    split, vlm = toy_classifier("clean", "cpu"), toy_vlm("cpu")
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=gen)
    labels = torch.zeros(n, dtype=torch.long)
    work = Path(tempfile.mkdtemp(prefix="semheat-ray-bench-"))
    rx = RayExtractor(work_dir=work, shard_size=1024)
    init = _median_time(rx._init, 1)

    def ray_run(m):
        shutil.rmtree(work, ignore_errors=True)
        rx(split, vlm, TensorDataset(images[:m], labels[:m]), batch_size=256, progress=False)

    def local_run(m):
        extract(split, vlm, TensorDataset(images[:m], labels[:m]), batch_size=256,
                progress=False)

    quarter = max(1, n // 4)
    t = {(path, m): _median_time(lambda: run(m), repeats)
         for path, run in (("local", local_run), ("ray", ray_run)) for m in (quarter, n)}
    shutil.rmtree(work, ignore_errors=True)
    steady = (t["ray", n] - t["ray", quarter]) / max(t["local", n] - t["local", quarter], 1e-9)
    return {"ray_overhead_steady": steady, "ray_overhead_end_to_end": t["ray", n] / t["local", n],
            "ray_startup_seconds": t["ray", quarter] - steady * t["local", quarter],
            "ray_init_seconds": init, "ray_images": n}


def bench_concept_map(repeats: int) -> dict:
    """One concept activation map on click: the toy classifier on one 64-pixel image, one
    concept through the finer maps' aligner on ``layer2`` (a forward pass plus a few small
    products; what a click draws), against the bare forward pass."""
    from ..engine.concepts.cam import concept_maps
    from ..engine.concepts.finer_maps import MapAligner
    from ..engine.models.aligner import LinearAligner
    from ..zoo.models import toy_classifier

    classifier = toy_classifier("clean", "cpu")
    rng = np.random.default_rng(0)
    aligner = LinearAligner().fit(rng.normal(size=(400, 192)), rng.normal(size=(400, 128)))
    finer = MapAligner("layer2", LinearAligner().fit(rng.normal(size=(400, 48)),
                                                     rng.normal(size=(400, 128))),
                       rng.normal(size=(2000, 128)).astype(np.float32))
    concept = rng.normal(size=(1, 128)).astype(np.float32)
    image = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    one_map = lambda: concept_maps(classifier, aligner, concept, [0.0], [1.0], image,  # noqa
                                   ["c"], map_aligner=finer)
    one_map()  # warm-up
    t_map = _median_time(one_map, max(repeats, 10))
    with torch.inference_mode():
        t_fwd = _median_time(lambda: classifier.features_and_logits(image), max(repeats, 10))
    return {"concept_map_ms": t_map * 1000, "concept_map_over_forward": t_map / t_fwd}


# -- first run: what a new user waits for, and what it costs in memory -------------------------
def measure_process(argv: list[str], *, env: dict | None = None, cwd=None,
                    timeout: float = 1800, interval: float = 0.25) -> dict:
    """Run ``argv`` and sample the memory of its whole process tree while it runs.

    Returns wall seconds, exit status, and the peak over samples of the tree's summed RSS and
    PSS (PSS counts pages shared between processes once — e.g. a forked worker's copy of the
    parent — so it is the honest figure; RSS is the conservative one).
    """
    import subprocess

    import psutil

    started = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    peak_rss = peak_pss = 0
    root = psutil.Process(proc.pid)
    output: list[str] = []

    import threading

    reader = threading.Thread(target=lambda: output.extend(proc.stdout), daemon=True)
    reader.start()
    while proc.poll() is None:
        if time.perf_counter() - started > timeout:
            proc.kill()
            break
        rss = pss = 0
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            tree = []
        for p in tree:
            try:
                info = p.memory_full_info()
                rss += info.rss
                pss += getattr(info, "pss", info.rss)
            except psutil.Error:
                pass
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(interval)
    proc.wait()
    reader.join(timeout=5)
    return {"seconds": round(time.perf_counter() - started, 1), "returncode": proc.returncode,
            "peak_rss_mb": round(peak_rss / 2**20), "peak_pss_mb": round(peak_pss / 2**20),
            "output_tail": "".join(output)[-2000:]}


FIRST_EXPLORER = (
    "import time, semheat_widgets as sw\n"
    "t = time.perf_counter()\n"
    "ex = sw.Explorer.toy('encoder_fault')\n"
    "assert ex.heatmap.chart.spec['data']['values']  # the differential heatmap is drawn\n"
    "print(f'explorer ready {time.perf_counter() - t:.1f}')\n")


def bench_first_run(work: Path) -> dict:
    """Seconds and peak memory of a new user's first steps, each in a fresh process on an
    empty toy-world folder: the first explorer (one bundle built on demand, imports included)
    and the full ``semheat toy build``."""
    import os
    import sys

    env = dict(os.environ, TQDM_DISABLE="1")
    first = measure_process([sys.executable, "-c", FIRST_EXPLORER],
                            env=dict(env, SEMHEAT_TOY_DIR=str(work / "lazy")))
    build = measure_process([sys.executable, "-m", "semheat_widgets.cli", "toy", "build",
                             str(work / "full"), "--quiet"], env=env)
    for name, r in (("first explorer", first), ("toy build", build)):
        if r["returncode"] != 0:
            raise RuntimeError(f"{name} failed: {r['output_tail']}")
    return {"first_explorer_s": first["seconds"], "first_explorer_peak_rss_mb":
            first["peak_rss_mb"], "first_explorer_peak_pss_mb": first["peak_pss_mb"],
            "toy_build_s": build["seconds"], "toy_build_peak_rss_mb": build["peak_rss_mb"],
            "toy_build_peak_pss_mb": build["peak_pss_mb"]}


def _process_seconds(argv: list[str]) -> float:
    import subprocess
    import sys

    t = time.perf_counter()
    done = subprocess.run([sys.executable, *argv], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:  # a crash is a finding, not a timing: say what it printed
        tail = done.stderr.strip().splitlines()[-3:]
        raise RuntimeError(f"`python {' '.join(argv)}` exited {done.returncode}: "
                           f"{' | '.join(tail) or 'nothing on stderr'}")
    return seconds


def bench_light_commands(repeats: int, saved: Path) -> dict:
    """Whole-process latencies of the commands that only read bundles (see the docstring)."""
    from ..zoo.world_file import default_toy_dir, is_world, missing_bundles

    cli = ["-m", "semheat_widgets.cli"]

    def paired(argv):  # the command and the bare import, run in turn
        return [(_process_seconds(cli + argv), _process_seconds(["-c", "import numpy, pyarrow"]))
                for _ in range(repeats)]

    pairs = paired(["info", str(saved), "--json"])
    out = {"info_s": float(np.median([a for a, _ in pairs])),
           "import_numpy_pyarrow_s": float(np.median([b for _, b in pairs])),
           "info_vs_import_numpy_pyarrow": float(np.median([a / b for a, b in pairs]))}
    toy = default_toy_dir()
    if is_world(toy) and not missing_bundles(toy):
        for command in ("localize", "monitor"):
            pairs = paired([command, str(toy), "--json"])
            out[f"{command}_s"] = float(np.median([a for a, _ in pairs]))
            out[f"{command}_vs_import_numpy_pyarrow"] = float(np.median([a / b
                                                                         for a, b in pairs]))
    return out


def bench_load(bundle, folder: Path, repeats: int) -> dict:
    from ..engine.bundle import Bundle

    path = bundle.save(folder / "bundle")
    load = _median_time(lambda: Bundle.load(path), repeats)
    verify = _median_time(lambda: Bundle.load(path).verify(), 1)
    return {"load_s": load, "verify_s": verify}


def run_benchmarks(records: int = 1_000_000, quick: bool = False, progress: bool = True,
                   ray: bool = False, first_run: bool = False) -> dict:
    repeats = 2 if quick else 5
    log = (lambda m: print(m, flush=True)) if progress else (lambda m: None)
    out = {"records": records, "threads": torch.get_num_threads(), "repeats": repeats}
    if first_run:
        import tempfile

        log("first run: explorer on an empty toy-world folder, then a full toy build ...")
        with tempfile.TemporaryDirectory(prefix="semheat-first-run-") as work:
            out.update(bench_first_run(Path(work)))
    log(f"building a synthetic bundle of {records} records ...")
    bundle = synthetic_bundle(records)
    log("heatmaps ...")
    out.update(bench_heatmaps(bundle, repeats))
    log("free-text concept ...")
    out.update(bench_add_concept(bundle, repeats))
    out.update(bench_cell_query(bundle, repeats))
    log("concept discovery ...")
    out.update(bench_discover(bundle, repeats))
    import tempfile

    with tempfile.TemporaryDirectory(prefix="semheat-bench-") as work:
        log("Bundle.load from disk, and the light commands ...")
        out.update(bench_load(bundle, Path(work), repeats))
        small = synthetic_bundle(5000).save(Path(work) / "small")
        out.update(bench_light_commands(repeats, small))
    del bundle
    log("runtime monitor overhead (ResNet-18) ...")
    out.update(bench_monitor(repeats))
    log("one concept map on click ...")
    out.update(bench_concept_map(repeats))
    log("extraction throughput ...")
    out.update(bench_extraction(512 if quick else 4096, repeats))
    if ray:
        log("Ray extraction against local extraction ...")
        out.update(bench_ray_extraction(2000 if quick else 8000))
    out["goals_met"] = {k: (out[k] <= v if op == "<=" else out[k] >= v)
                        for k, (op, v) in GOALS.items() if k in out}
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()}
