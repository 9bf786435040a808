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

from ..engine.extract.attacks import Attack
from ..engine.models.classifier import IMAGENET_MEAN, IMAGENET_STD, ModelSplit
from ..engine.models.device import resolve_device
from ..engine.extract import extract
from ..engine.models.registry import load_vlm
from ..engine.pipeline import AnalysisConfig, analyze
from ..jobs import IMAGE_SIZE, AnalysisJob, job_of, mentioning, naming
from ..safe_io import check_replaceable, make_work_dir, recover, remove_owned, writer_lock
from .datasets import load_data, reference_indices
from .fine_tune import build_resnet18, fine_tune

ATTACKS = (Attack("fgsm"), Attack("pgd", steps=10))
THUMB_SIZE = 96


def dataset_paths(dataset) -> list[str]:
    """The image file of every item of a dataset (through ``Subset``), or "" where unknown."""
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        inner = dataset_paths(dataset.dataset)
        return [inner[i] for i in dataset.indices]
    paths = getattr(dataset, "paths", None)
    return [str(p) for p in paths] if paths is not None else [""] * len(dataset)


def run_analysis(job: AnalysisJob | None = None, /, **options) -> Path:
    """The whole ``semheat analyze`` job; returns the bundle path.

    Give an :class:`~semheat_widgets.jobs.AnalysisJob`, or its options as keywords
    (``run_analysis(data="rival10:DIR", vlm="toy", out="b")``); every option is checked before
    any work (:meth:`AnalysisJob.checked`). ``image_size`` is recorded as the bundle's
    ``image_size``.
    """
    job = job_of(AnalysisJob, job, options, "run_analysis")
    out = job.out
    with writer_lock(out):  # one run per output, for the whole run
        recover(out)
        found = check_replaceable(out, ("bundle",), "a bundle")
        if found == "bundle" and not job.overwrite:
            raise mentioning(f"{out} exists; pass overwrite=True to replace it", "overwrite")
        check_replaceable(out.parent / f"{out.name}.work", ("work",), "a work folder")
        return _run_analysis(job)


def _run_analysis(job: AnalysisJob) -> Path:
    out, device, progress = job.out, job.device, job.progress
    image_size, batch_size, num_workers = job.image_size, job.batch_size, job.num_workers
    data, classifier, train_epochs = job.data, job.classifier, job.train_epochs
    started = time.time()
    _, _, ckpt = classifier.partition(":")
    extractor = extract
    if job.engine == "ray":
        from ..engine.extract.on_ray import RayExtractor

        extractor = RayExtractor(job.ray_address, num_actors=job.ray_actors,
                                 shard_size=job.ray_shard_size,
                                 work_dir=out.parent / f"{out.name}.work" / "ray")
    with naming("data"):
        spec = load_data(data, size=image_size, attributes_csv=job.attributes_csv,
                         concepts=list(job.concepts) if job.concepts else None)
    model, origin = build_resnet18(len(spec.classes), Path(ckpt) if ckpt else None)
    work = out.parent / f"{out.name}.work"
    if job.overwrite:  # --force: nothing of an earlier run is resumed (only our own work folder)
        remove_owned(work, ("work",))
    make_work_dir(work)
    ref_idx = reference_indices(spec.train_labels, job.reference_fraction)
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
    the_vlm = load_vlm(job.vlm, device)
    extra = {"path": dataset_paths(reference) + dataset_paths(spec.test)}
    if spec.train_attributes is not None and spec.test_attributes is not None:
        both = np.r_[spec.train_attributes[ref_idx], spec.test_attributes]
        names = [c.name for c in spec.concepts]
        extra["attributes"] = [[names[j] for j in np.flatnonzero(row)] for row in both]
    cfg = AnalysisConfig(attacks=ATTACKS, attack_limit=job.attack_limit, batch_size=batch_size,
                         monitor=job.monitor,
                         num_workers=num_workers, thumb_size=THUMB_SIZE,
                         extra_info={"data": data, "classifier_origin": origin,
                                     "training": training, "image_size": image_size,
                                     "classifier_checkpoint": str(checkpoint) if checkpoint
                                     else None}, started_at=started)
    # built in place: the large arrays go straight into the bundle's files (bounded memory)
    analyze(split, the_vlm, spec.test, reference=reference, classes=spec.classes,
            concepts=spec.concepts, class_prompts=spec.class_prompts, config=cfg, name=out.name,
            extra_columns=extra, progress=progress, extractor=extractor, save_to=out,
            overwrite=job.overwrite)
    return out
