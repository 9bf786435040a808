"""Build the toy world: one bundle per classifier of the fault zoo, with known answers.

    semheat toy build DIR

Every classifier is analysed on the same test set — fresh natural scenes plus a shifted set
where the encoder fault's spurious tie breaks (trucks and cars on water) — with FGSM / PGD
versions of a subset, and with a reference set (held-out data of its own training
distribution) for fitting the aligner, the heatmap references and the thresholds. Each bundle
gets ground-truth columns: ``gt_fault`` (``encoder`` / ``head`` / empty when unknown) and
``gt_concept`` (the responsible concept of an encoder fault), derived from the construction of
the zoo (see :mod:`.faults`).

Layout: ``DIR/world.json`` declares the world (its settings and bundle names) and is written
first; each bundle is built when first asked for (:func:`ensure_bundles`) — the explorer opens
one without waiting for all three — and saved atomically into ``DIR/<name>``. The rendered
inputs are shared through ``DIR/inputs/`` until every bundle is built (:mod:`.inputs`).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..data.toy.captions import attribute_prompts, class_prompts
from ..data.toy.world import ATTRIBUTES, CLASSES, ToyWorld
from ..engine.pipeline import AnalysisConfig, analyze
from ..engine.extract.attacks import Attack
from ..engine.bundle import Bundle
from ..engine.concepts.bank import ConceptBank
from ..errors import SemheatError, SemheatTypeError
from ..jobs import ToyWorldJob, defaults, mentioning
from ..safe_io import (WORLD_FORMAT, atomic_write, check_replaceable, publish_dir, recover,
                       temp_dir_for, writer_lock)
from . import inputs as toy_inputs
from .faults import (ENCODER_FAULT_CLASS, ENCODER_FAULT_CONCEPT, clean_train_world,
                     encoder_fault_train_world, shift_world)
from .models import TOY_CLASSIFIERS, toy_classifier, toy_vlm
from .quality import aligned_attribute_quality
from .world_file import (WORLD_SCHEMA, default_toy_dir, is_world,  # noqa: F401
                         missing_bundles, read_world, world_bundles)

TOY_WORLD_SEED = 4242  # the test set
REFERENCE_SEED = 4343  # held-out reference sets
PRIMARY = "clean"
DEFAULTS = defaults(ToyWorldJob)  # a world.json without a setting was built with its default
BATCH_SIZE = 128  # faster per image than 256 on a 2-core CPU (PGD), and half the memory
LAZY_WAIT_S = 1800  # a lazy build waits this long for another process building the same world


def toy_concepts() -> ConceptBank:
    return ConceptBank([(a, attribute_prompts(a)) for a in ATTRIBUTES])


def reference_world(name: str) -> ToyWorld:
    """Held-out data from the classifier's own training distribution (other seed)."""
    base = encoder_fault_train_world() if name == "encoder_fault" else clean_train_world()
    return base.with_overrides(seed=REFERENCE_SEED)


def ground_truth(name: str, bundle: Bundle, inputs: toy_inputs.ToyInputs,
                 clean) -> dict[str, np.ndarray]:
    """``gt_fault`` / ``gt_concept`` of every record of a toy bundle (see :mod:`.faults`).

    ``inputs`` are the bundle's natural inputs in order (reference first); ``clean`` is the
    clean classifier, asked only about the bundle's mistakes.
    """
    gt_fault = np.full(bundle.n, "", dtype=object)
    gt_concept = np.full(bundle.n, "", dtype=object)
    if name in ("encoder_fault", "head_fault"):
        new = toy_inputs.new_mistakes(bundle, inputs, clean)
        src = bundle.column("source_id")
    if name == "encoder_fault":
        j = ATTRIBUTES.index(ENCODER_FAULT_CONCEPT)
        tied = new & inputs.attributes[src, j] & (inputs.domain[src] != "reference") & (
            bundle.column("prediction") == CLASSES.index(ENCODER_FAULT_CLASS))
        gt_fault[tied] = "encoder"
        gt_concept[tied] = ENCODER_FAULT_CONCEPT
    elif name == "head_fault":
        gt_fault[new] = "head"
    return {"gt_fault": gt_fault.astype(str), "gt_concept": gt_concept.astype(str)}


# -- building ---------------------------------------------------------------------------------
def _settings(kwargs: dict) -> dict:
    """The world's settings: the options given (``None``: the default; for ``attack_limit``:
    every input attacked) over :class:`~semheat_widgets.jobs.ToyWorldJob`'s defaults, checked."""
    given = {k: v for k, v in kwargs.items() if v is not None or k == "attack_limit"}
    try:
        job = ToyWorldJob(**given)
    except TypeError as exc:  # an unknown option: one line
        raise SemheatTypeError(f"toy world: {exc}") from None
    return job.checked().settings()


def _declare(folder: Path, settings: dict) -> dict:
    world = {"format": WORLD_FORMAT, "bundles": list(TOY_CLASSIFIERS), "primary": PRIMARY,
             "seed": TOY_WORLD_SEED, **settings, "build_seconds": {},
             "encoder_fault": {"concept": ENCODER_FAULT_CONCEPT, "class": ENCODER_FAULT_CLASS}}
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write(folder / "world.json", json.dumps(world, indent=1))
    return world


def build_toy_world(out_dir, *, n_reference: int | None = None, n_natural: int | None = None,
                    n_shift: int | None = None, attack_limit: int | None = DEFAULTS["attack_limit"],
                    overwrite: bool = False, progress: bool = True, device=None,
                    similarity: str | None = None, monitor: str | None = None) -> Path:
    """Build every bundle of the toy world into ``out_dir`` and return it.

    Each classifier is analysed with a reference set drawn from its *own* training
    distribution (aligner, heatmap references and thresholds come from it, as a user would fit
    them on their validation data) and the same test set: fresh natural scenes plus the
    tie-breaking shift. A world that is partly built (by the explorer) with the same settings
    is completed; ``overwrite`` rebuilds a finished one (into a hidden sibling, swapped in at
    the end). Holds ``out_dir``'s writer lock throughout; another build refuses at once.
    """
    out_dir = Path(out_dir)
    settings = _settings(dict(n_reference=n_reference, n_natural=n_natural, n_shift=n_shift,
                              attack_limit=attack_limit, similarity=similarity,
                              monitor=monitor))
    with writer_lock(out_dir):
        recover(out_dir)
        kind = check_replaceable(out_dir, ("toy-world",), "a toy world")
        if kind == "toy-world" and not overwrite:
            world = read_world(out_dir)
            if not missing_bundles(out_dir):
                raise mentioning(f"{out_dir} already holds a toy world; pass overwrite=True "
                                 f"to rebuild it", "overwrite")
            if any(world.get(k, DEFAULTS.get(k)) != v for k, v in settings.items()):
                raise mentioning(f"{out_dir} holds a partly built toy world with other "
                                 f"settings; pass overwrite=True to rebuild it", "overwrite")
            _build_missing(out_dir, world, progress, device)
            return out_dir
        tmp = temp_dir_for(out_dir)
        try:
            world = _declare(tmp, settings)
            _build_missing(tmp, world, progress, device)
            publish_dir(tmp, out_dir, ("toy-world",), "a toy world")
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return out_dir


def ensure_bundles(directory=None, names=TOY_CLASSIFIERS, *, progress: bool = True,
                   device=None, **settings) -> Path:
    """The toy world in ``directory`` (default :func:`default_toy_dir`) with at least the
    bundles ``names`` built, building only what is missing (declaring the world with
    ``settings`` if there is none yet). Another process building the same world is waited for.
    """
    directory = Path(directory) if directory is not None else default_toy_dir()
    unknown = [n for n in names if n not in TOY_CLASSIFIERS]
    if unknown:
        raise SemheatError(f"the toy world has no bundle {unknown[0]!r}; choose from "
                           f"{list(TOY_CLASSIFIERS)}")
    if is_world(directory) and not set(names) & set(missing_bundles(directory)):
        return directory
    with writer_lock(directory, wait=LAZY_WAIT_S):
        recover(directory)
        if is_world(directory):
            world = read_world(directory)
        else:
            check_replaceable(directory, (), "a toy world")
            world = _declare(directory, _settings(settings))
        _build_missing(directory, world, progress, device, only=names)
    return directory


def _build_missing(folder: Path, world: dict, progress: bool, device, only=None) -> None:
    todo = [n for n in missing_bundles(folder) if only is None or n in only]
    if not todo:
        return
    from tqdm.auto import tqdm

    vlm = toy_vlm(device)
    clean = toy_classifier("clean", device, frozen=True)
    concepts = toy_concepts()
    store = folder / "inputs"  # the rendered sets, kept until every bundle is built
    stages = tqdm(total=len(todo), desc="toy world", unit="bundle", disable=not progress)
    stages.set_postfix_str("rendering the test set")
    test = toy_inputs.cached(store / "test", _test_parts(world), vlm, progress)
    for name in todo:
        started = time.time()
        stages.set_postfix_str(f"{name}: rendering its reference set")
        ref_name = "encoder_fault" if name == "encoder_fault" else "clean"
        ref = toy_inputs.cached(store / f"reference_{ref_name}", _reference_parts(name, world),
                                vlm, progress)
        stages.set_postfix_str(f"{name}: extraction, attacks, analysis")
        bundle = _analyze_one(name, world, ref, test, vlm, concepts, progress, device)
        both = ref + test  # the bundle's natural inputs, reference first
        bundle.add_columns(ground_truth(name, bundle, both, clean))
        bundle.save(folder / name)
        world = read_world(folder)
        world["build_seconds"][name] = round(time.time() - started, 1)
        if name == PRIMARY:
            world["quality"] = aligned_attribute_quality(bundle, both.attributes)
        atomic_write(folder / "world.json", json.dumps(world, indent=1))
        del bundle, both
        stages.update(1)
    stages.close()
    if not missing_bundles(folder):
        shutil.rmtree(store, ignore_errors=True)  # every bundle holds what it needs


def _analyze_one(name, world, ref, test, vlm, concepts, progress, device,
                 classifier=None) -> Bundle:
    config = AnalysisConfig(attacks=(Attack("fgsm"), Attack("pgd", steps=10)),
                            attack_limit=world["attack_limit"], batch_size=BATCH_SIZE,
                            monitor_similarity=world["similarity"],
                            monitor=world.get("monitor", DEFAULTS["monitor"]),
                            extra_info={"toy_world": {
                                "classifier": name, "n_reference": world["n_reference"],
                                "n_natural": world["n_natural"], "n_shift": world["n_shift"],
                                "seed": TOY_WORLD_SEED}})
    both = ref + test
    present = [[a for a, on in zip(ATTRIBUTES, row) if on] for row in both.attributes]
    if classifier is None:
        classifier = toy_classifier(name, device, frozen=True)
    return analyze(classifier, vlm, test.dataset(), reference=ref.dataset(),
                   classes=CLASSES, concepts=concepts,
                   class_prompts={c: class_prompts(c) for c in CLASSES}, config=config,
                   name=name, extra_columns={"domain": both.domain, "attributes": present},
                   progress=progress, image_embeddings=both.image_emb)


def _test_parts(world: dict) -> list:
    """The toy world's test set: its natural inputs, then the shifted ones."""
    return [("natural", ToyWorld(seed=TOY_WORLD_SEED), world["n_natural"]),
            ("shift", shift_world(TOY_WORLD_SEED + 1), world["n_shift"])]


def _reference_parts(name: str, world: dict) -> list:
    """Bundle ``name``'s reference set."""
    return [("reference", reference_world(name), world["n_reference"])]


def analyze_like(name: str, classifier, directory=None, *, attacks: bool = False,
                 progress: bool = True, bundle_name: str | None = None) -> Bundle:
    """Analyse another ``classifier`` (e.g. a repaired one) on the very inputs of the toy
    world's bundle ``name`` — the same reference and test sets, so that the two bundles can be
    compared input by input — with the same ground-truth columns. Without ``attacks`` (the
    default) only natural inputs are analysed, which is all a comparison needs."""
    directory = Path(directory) if directory is not None else default_toy_dir()
    if name not in TOY_CLASSIFIERS:
        raise SemheatError(f"the toy world has no bundle {name!r}")
    world = read_world(directory)
    vlm = toy_vlm(classifier.device)
    clean = toy_classifier("clean", classifier.device, frozen=True)
    test = toy_inputs.render(_test_parts(world), vlm, progress)
    ref = toy_inputs.render(_reference_parts(name, world), vlm, progress)
    settings = dict(world, attack_limit=world["attack_limit"] if attacks else 0)
    bundle = _analyze_one(name, settings, ref, test, vlm, toy_concepts(), progress,
                          classifier.device, classifier=classifier)
    bundle.manifest["name"] = bundle_name or f"{name} ({classifier.name})"
    bundle.add_columns(ground_truth(name, bundle, ref + test, clean))
    return bundle
