"""``semheat analyze``: from a dataset on disk, a VLM and a classifier to a saved bundle.

    semheat analyze --data rival10:DIR --vlm open_clip:RN50:openai \\
                    --classifier resnet18 --train-epochs 5 --out rival10_bundle

- ``--data rival10:DIR`` (the RIVAL10 layout) or ``folder:DIR`` (``DIR/<class>/<image>``,
  concepts from ``--attributes CSV`` or ``--concepts a,b,c``): :mod:`.datasets`.
- ``--vlm``: any VLM id of the engine's registry — ``open_clip:ARCH:TAG`` (``TAG`` = ``none``
  for random weights, offline) or ``toy`` (the toy world's tiny CLIP).
- ``--classifier resnet18`` fine-tunes a torchvision ResNet-18 on the train split (from the
  ImageNet weights when they can be had, from scratch otherwise); ``resnet18:CKPT`` loads a
  checkpoint (safetensors, or a state dict read with ``weights_only=True``): :mod:`.fine_tune`.
- ``--image-size N``: the side images are decoded at (shorter side, centre crop) for the
  classifier, its fine-tuning and the bundle (default :data:`IMAGE_SIZE`); the VLM resizes to
  its own size.

A part of the train split (``--reference-fraction``, never used for fine-tuning) is the
reference set (aligner, heatmap references, thresholds); the test split is analysed. Training
writes a checkpoint after every epoch into ``OUT.work/`` and resumes from it after an
interruption.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from torch.utils.data import Subset

from ..arguments import as_int
from ..engine.attacks import Attack
from ..engine.classifier import IMAGENET_MEAN, IMAGENET_STD, ModelSplit
from ..engine.detect.fit import check_monitor_name
from ..engine.device import resolve_device
from ..engine.extract import extract
from ..engine.models import check_vlm_id, load_vlm
from ..engine.pipeline import AnalysisConfig, analyze
from ..errors import SemheatError
from ..safe_io import check_replaceable, make_work_dir, recover, remove_owned, writer_lock
from .datasets import load_data, reference_indices
from .fine_tune import build_resnet18, fine_tune

ATTACKS = (Attack("fgsm"), Attack("pgd", steps=10))
THUMB_SIZE = 96
IMAGE_SIZE = 224  # images are decoded at this size (shorter side, centre crop) by default
MAX_IMAGE_SIZE = 4096  # --image-size beyond this is refused (a typo, not a wish)


def dataset_paths(dataset) -> list[str]:
    """The image file of every item of a dataset (through ``Subset``), or "" where unknown."""
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        inner = dataset_paths(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    paths = getattr(dataset, "paths", None)
    return [str(p) for p in paths] if paths is not None else [""] * len(dataset)


def run_analysis(*, data: str, vlm: str, classifier: str, out, train_epochs: int = 0,
                 attributes_csv=None, concepts: list[str] | None = None,
                 reference_fraction: float = 0.2,
                 attack_limit: int | None = 500, batch_size: int = 64, device=None,
                 num_workers: int = 0, overwrite: bool = False, progress: bool = True,
                 engine: str = "local", ray_address: str | None = None,
                 ray_actors: int | None = None, ray_shard_size: int = 512,
                 monitor: str = "concept", image_size: int | None = None) -> Path:
    """The whole ``semheat analyze`` job; returns the bundle path.

    ``engine="ray"`` runs the forward passes on Ray (``ray_address``: an existing cluster, or
    ``None`` for a local one; ``ray_actors`` model replicas, default one per GPU or 4 CPUs),
    keeping finished shards of ``ray_shard_size`` inputs in ``OUT.work/ray`` for resuming.
    ``image_size`` is the side the images are decoded at for the classifier (default
    :data:`IMAGE_SIZE`); it is recorded as the bundle's ``image_size``.
    """
    image_size = IMAGE_SIZE if image_size is None else as_int(
        image_size, "--image-size", minimum=1, maximum=MAX_IMAGE_SIZE)
    out = Path(out)
    with writer_lock(out):  # one run per output, for the whole run
        recover(out)
        found = check_replaceable(out, ("bundle",), "a bundle")
        if found == "bundle" and not overwrite:
            raise SemheatError(f"{out} exists; use --force to replace it")
        check_replaceable(out.parent / f"{out.name}.work", ("work",), "a work folder")
        return _run_analysis(data=data, vlm=vlm, classifier=classifier, out=out,
                             train_epochs=train_epochs, attributes_csv=attributes_csv,
                             concepts=concepts, reference_fraction=reference_fraction,
                             attack_limit=attack_limit, batch_size=batch_size, device=device,
                             num_workers=num_workers, overwrite=overwrite, progress=progress,
                             engine=engine, ray_address=ray_address, ray_actors=ray_actors,
                             ray_shard_size=ray_shard_size, monitor=monitor,
                             image_size=image_size)


def _run_analysis(*, data, vlm, classifier, out: Path, train_epochs, attributes_csv, concepts,
                  reference_fraction, attack_limit, batch_size, device, num_workers, overwrite,
                  progress, engine, ray_address, ray_actors, ray_shard_size, monitor,
                  image_size: int = IMAGE_SIZE) -> Path:
    if not 0 < reference_fraction < 1:
        raise SemheatError(f"--reference-fraction must be in (0, 1), got {reference_fraction}")
    started = time.time()
    name, _, ckpt = classifier.partition(":")  # check every spec before any heavy work
    if name != "resnet18":
        raise SemheatError(f"--classifier must be resnet18 or resnet18:CKPT, got {classifier!r}")
    if ckpt and not Path(ckpt).is_file():
        raise SemheatError(f"classifier checkpoint not found: {ckpt}")
    try:
        vlm = check_vlm_id(vlm)
    except SemheatError as exc:
        raise SemheatError(f"--vlm must be open_clip:ARCH:TAG or toy ({exc})") from None
    if engine not in ("local", "ray"):
        raise SemheatError(f"--engine must be local or ray, got {engine!r}")
    check_monitor_name(monitor)
    extractor = extract
    if engine == "ray":
        from ..engine.extract_ray import RayExtractor

        extractor = RayExtractor(ray_address, num_actors=ray_actors, shard_size=ray_shard_size,
                                 work_dir=out.parent / f"{out.name}.work" / "ray")
    spec = load_data(data, size=image_size, attributes_csv=attributes_csv, concepts=concepts)
    model, origin = build_resnet18(len(spec.classes), Path(ckpt) if ckpt else None)
    work = out.parent / f"{out.name}.work"
    if overwrite:  # --force: nothing of an earlier run is resumed (only our own work folder)
        remove_owned(work, ("work",))
    make_work_dir(work)
    ref_idx = reference_indices(spec.train_labels, reference_fraction)
    rest = np.setdiff1d(np.arange(len(spec.train_labels)), ref_idx)
    reference = Subset(spec.train, ref_idx.tolist())
    tuning_set = Subset(spec.train, rest.tolist())
    training = {}
    if train_epochs > 0:
        # the size is part of the job (a state trained at another size is not resumed); the
        # default size keeps the job name earlier versions wrote
        at_size = "" if image_size == IMAGE_SIZE else f" | {image_size} px"
        training = fine_tune(model, tuning_set, epochs=train_epochs, work=work,
                                    batch_size=batch_size, device=device,
                                    num_workers=num_workers, progress=progress,
                                    job=f"{data} | {classifier} from {origin} | "
                                        f"{train_epochs} epochs | batch {batch_size} | "
                                        f"{len(tuning_set)} inputs{at_size}")
    checkpoint = (work / "classifier.safetensors") if train_epochs > 0 else \
        (Path(ckpt).resolve() if ckpt else None)
    split = ModelSplit(model, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       name=f"resnet18:{origin}" + (f"+{train_epochs}ep" if train_epochs else ""))
    split = split.to(resolve_device(device)).eval()
    the_vlm = load_vlm(vlm, device)
    extra = {"path": dataset_paths(reference) + dataset_paths(spec.test)}
    if spec.train_attributes is not None and spec.test_attributes is not None:
        both = np.r_[spec.train_attributes[ref_idx], spec.test_attributes]
        names = [c.name for c in spec.concepts]
        extra["attributes"] = [[names[j] for j in np.flatnonzero(row)] for row in both]
    cfg = AnalysisConfig(attacks=ATTACKS, attack_limit=attack_limit, batch_size=batch_size,
                         monitor=monitor,
                         num_workers=num_workers, thumb_size=THUMB_SIZE,
                         extra_info={"data": data, "classifier_origin": origin,
                                     "training": training, "image_size": image_size,
                                     "classifier_checkpoint": str(checkpoint) if checkpoint
                                     else None}, started_at=started)
    # built in place: the large arrays go straight into the bundle's files (bounded memory)
    analyze(split, the_vlm, spec.test, reference=reference, classes=spec.classes,
            concepts=spec.concepts, class_prompts=spec.class_prompts, config=cfg, name=out.name,
            extra_columns=extra, progress=progress, extractor=extractor, save_to=out,
            overwrite=overwrite)
    return out
