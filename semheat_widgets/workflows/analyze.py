"""``semheat analyze``: from a dataset on disk, a VLM and a classifier to a saved bundle.

    semheat analyze --data rival10:DIR --vlm open_clip:RN50:openai \
                    --classifier resnet18 --train-epochs 5 --out rival10_bundle

- ``--data rival10:DIR`` (the RIVAL10 layout) or ``folder:DIR`` (``DIR/<class>/<image>``,
  concepts from ``--attributes CSV`` or ``--concepts a,b,c``).
- ``--vlm open_clip:ARCH:TAG`` (``TAG`` = ``none`` for random weights, offline) or ``toy``.
- ``--classifier resnet18`` fine-tunes a torchvision ResNet-18 on the train split (from the
  ImageNet weights when they can be had, from scratch otherwise); ``resnet18:CKPT`` loads a
  checkpoint (safetensors, or a state dict read with ``weights_only=True``).

A part of the train split (``--reference-fraction``, never used for fine-tuning) is the
reference set (aligner, heatmap references, thresholds); the test split is analysed. Training
writes a checkpoint after every epoch into ``OUT.work/`` and resumes from it after an
interruption; CUDA and mixed precision are used when a GPU is present.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from ..data.names import RIVAL10_ATTRIBUTES
from ..data.rival10_prompts import RIVAL10_CLASS_PROMPTS, RIVAL10_PROMPTS
from ..engine.analyze import AnalysisConfig, analyze
from ..engine.attacks import Attack
from ..engine.concepts import ConceptBank
from ..engine.extract import extract
from ..engine.split import IMAGENET_MEAN, IMAGENET_STD, ModelSplit
from ..engine.vlm import VLM, resolve_device
from ..errors import SemheatError
from ..safe_io import (atomic_write, check_regular, check_replaceable, make_work_dir, read_json,
                       recover, remove_owned, writer_lock)


def rival10_concepts(templates=("{}",)) -> ConceptBank:
    """The 18 RIVAL10 attributes as a concept bank, with the project's prompts."""
    return ConceptBank([(name, RIVAL10_PROMPTS[name]) for name in RIVAL10_ATTRIBUTES],
                       templates=templates)


@dataclass
class DataSpec:
    train: object
    test: object
    classes: list[str]
    concepts: ConceptBank
    class_prompts: dict[str, list[str]]
    train_labels: np.ndarray | None = None
    train_attributes: np.ndarray | None = None  # bool N_train x C, aligned with ``train``
    test_attributes: np.ndarray | None = None


def load_data(spec: str, size: int = 224, attributes_csv=None,
              concepts: list[str] | None = None) -> DataSpec:
    """``rival10:DIR`` or ``folder:DIR`` -> train/test datasets, classes and concepts.

    ``folder:DIR`` is an ImageFolder tree ``DIR/<class>/<image>``, split 70/30 into train and
    test (seeded); its concepts are the columns of ``attributes_csv`` (0/1 per image, paths
    relative to ``DIR``) or the free-text ``concepts``.
    """
    kind, _, where = spec.partition(":")
    if not where:
        raise SemheatError(f"--data must look like rival10:DIR or folder:DIR, got {spec!r}")
    if kind == "rival10":
        from ..data.rival10 import Rival10Dataset

        train = Rival10Dataset(where, "train", size=size, on_error="skip", check_images=True)
        test = Rival10Dataset(where, "test", size=size, on_error="skip", check_images=True)
        return DataSpec(train, test, list(train.classes), rival10_concepts(),
                        dict(RIVAL10_CLASS_PROMPTS), train.labels, train.attributes,
                        test.attributes)
    if kind == "folder":
        from ..data.folder import ImageFolderDataset

        full = ImageFolderDataset(where, size=size, attributes_csv=attributes_csv,
                                  on_error="skip", check_images=True)
        names = list(full.attribute_names) or list(concepts or [])
        if not names:
            raise SemheatError("folder data needs concepts: give --attributes CSV (its columns "
                               "name the concepts) or --concepts a,b,c")
        order = np.random.default_rng(0).permutation(len(full))
        cut = int(round(0.7 * len(full)))
        tr, te = np.sort(order[:cut]), np.sort(order[cut:])
        attrs = full.attributes
        bank = ConceptBank([(n, [n, f"a photo of something {n}"]) for n in names])
        classes = list(full.classes)
        return DataSpec(Subset(full, tr.tolist()), Subset(full, te.tolist()), classes, bank,
                        {c: [f"a photo of a {c}."] for c in classes}, full.labels[tr],
                        None if attrs is None else attrs[tr], None if attrs is None else attrs[te])
    raise SemheatError(f"unknown data kind {kind!r}: use rival10:DIR or folder:DIR")


def reference_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A stratified, seeded share of the train split held out as the reference set: at least
    two inputs of every class (one to fit on, one to calibrate on), sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        take = min(len(members), max(2, int(round(fraction * len(members)))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))


def parse_vlm_spec(spec: str) -> tuple[str, str] | None:
    """``open_clip:ARCH:TAG`` -> ``(ARCH, TAG)``; ``toy`` -> ``None``."""
    if spec == "toy":
        return None
    parts = spec.split(":")
    if len(parts) != 3 or parts[0] != "open_clip" or not parts[1] or not parts[2]:
        raise SemheatError(f"--vlm must be open_clip:ARCH:TAG or toy, got {spec!r}")
    return parts[1], parts[2]


def load_vlm_spec(spec: str, device=None) -> VLM:
    parsed = parse_vlm_spec(spec)
    if parsed is None:
        return VLM.toy(device=device)
    return VLM.create(*parsed, device=device)


def _imagenet_resnet18():
    """ResNet-18 with ImageNet weights if they can be had (offline: None)."""
    from torchvision.models import ResNet18_Weights, resnet18

    try:
        return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1), "imagenet"
    except Exception:  # no network, no cached weights
        return None, "scratch"


def load_checkpoint_state(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise SemheatError(f"cannot load checkpoint {path} safely: {str(exc).splitlines()[0]}") \
            from None
    return state.get("state_dict", state) if isinstance(state, dict) else state


def build_resnet18(num_classes: int, checkpoint: Path | None = None):
    from torchvision.models import resnet18

    if checkpoint is not None:
        model = resnet18(num_classes=num_classes)
        try:
            model.load_state_dict(load_checkpoint_state(checkpoint))
        except RuntimeError as exc:
            raise SemheatError(f"{checkpoint} does not fit a {num_classes}-class ResNet-18: "
                               f"{str(exc).splitlines()[0]}") from None
        return model, "checkpoint"
    model, origin = _imagenet_resnet18()
    if model is None:
        model = resnet18()
    model.fc = torch.nn.Linear(model.fc.in_features, num_classes)
    return model, origin


def train_classifier(model, dataset, *, epochs: int, work: Path, batch_size: int = 64,
                     lr: float = 0.01, device=None, num_workers: int = 0,
                     progress: bool = True, job: str = "") -> dict:
    """Fine-tune ``model`` (inputs: uint8 images) with SGD; resumes from ``work``.

    ``job`` names what is being trained (data, starting point, epochs): a saved state is only
    resumed when it was written for the same job; otherwise training starts afresh.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    device = resolve_device(device)
    split = ModelSplit(model).to(device)
    state_path, info_path = work / "classifier.safetensors", work / "train_state.json"
    job = job or f"{len(dataset)} inputs, {epochs} epochs, lr {lr}, batch {batch_size}"
    done = _resume_state(model, state_path, info_path, job, device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    gen = torch.Generator().manual_seed(0)
    for epoch in range(done, epochs):
        for group in opt.param_groups:  # cosine schedule over epochs (resumes exactly)
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
        model.train()
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=gen,
                            num_workers=num_workers, drop_last=len(dataset) > batch_size)
        for images, labels in tqdm(loader, desc=f"fine-tune epoch {epoch + 1}/{epochs}",
                                   disable=not progress):
            images, labels = images.to(device), labels.to(device)
            with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
                loss = torch.nn.functional.cross_entropy(split(images), labels)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        # both atomic, the state last: it names the checkpoint that is complete on disk
        tmp = state_path.with_name(f".{state_path.name}.tmp")
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp))
        os.replace(tmp, state_path)
        atomic_write(info_path, json.dumps({"epochs_done": epoch + 1, "job": job,
                                            "checkpoint": state_path.name}))
    model.eval()
    return {"epochs": epochs, "resumed_from_epoch": done}


def _resume_state(model, state_path: Path, info_path: Path, job: str, device) -> int:
    """Epochs already done by an earlier run of the same ``job`` (weights loaded into
    ``model``); 0 when there is nothing to resume. An unreadable resume state is not fatal:
    training starts again from the first epoch, with a warning."""
    from safetensors.torch import load_file

    if not (state_path.exists() and info_path.exists()):
        return 0
    try:
        info = read_json(info_path, "resume state")
        if not isinstance(info, dict):
            raise SemheatError(f"{info_path} is not a JSON object")
        if info.get("job") != job:
            return 0  # another job's state: start afresh
        done = info["epochs_done"]
        if not isinstance(done, int) or done < 0:
            raise SemheatError(f"{info_path}: field epochs_done: {done!r} is not an epoch count")
        check_regular(state_path, "checkpoint")
        model.load_state_dict(load_file(str(state_path), device=str(device)))
        return done
    except Exception as exc:  # safetensors, torch and JSON errors alike: all mean "damaged"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warnings.warn(f"the resume state in {info_path.parent} is unreadable ({reason}); "
                      f"training starts again from epoch 1", stacklevel=3)
        return 0


def run_analysis(*, data: str, vlm: str, classifier: str, out, train_epochs: int = 0,
                 attributes_csv=None, concepts: list[str] | None = None,
                 reference_fraction: float = 0.2,
                 attack_limit: int | None = 500, batch_size: int = 64, device=None,
                 num_workers: int = 0, overwrite: bool = False, progress: bool = True,
                 engine: str = "local", ray_address: str | None = None) -> Path:
    """The whole ``semheat analyze`` job; returns the bundle path.

    ``engine="ray"`` runs the forward passes on Ray (``ray_address``: an existing cluster, or
    ``None`` for a local one), keeping finished shards in ``OUT.work/ray`` for resuming.
    """
    out = Path(out)
    with writer_lock(out):  # one run per output, for the whole run
        recover(out)
        kind = check_replaceable(out, ("bundle",), "a bundle")
        if kind == "bundle" and not overwrite:
            raise SemheatError(f"{out} exists; use --force to replace it")
        check_replaceable(out.parent / f"{out.name}.work", ("work",), "a work folder")
        return _run_analysis(data=data, vlm=vlm, classifier=classifier, out=out,
                             train_epochs=train_epochs, attributes_csv=attributes_csv,
                             concepts=concepts, reference_fraction=reference_fraction,
                             attack_limit=attack_limit, batch_size=batch_size, device=device,
                             num_workers=num_workers, overwrite=overwrite, progress=progress,
                             engine=engine, ray_address=ray_address)


def _run_analysis(*, data, vlm, classifier, out: Path, train_epochs, attributes_csv, concepts,
                  reference_fraction, attack_limit, batch_size, device, num_workers, overwrite,
                  progress, engine, ray_address) -> Path:
    if not 0 < reference_fraction < 1:
        raise SemheatError(f"--reference-fraction must be in (0, 1), got {reference_fraction}")
    started = time.time()
    name, _, ckpt = classifier.partition(":")  # check every spec before any heavy work
    if name != "resnet18":
        raise SemheatError(f"--classifier must be resnet18 or resnet18:CKPT, got {classifier!r}")
    if ckpt and not Path(ckpt).is_file():
        raise SemheatError(f"classifier checkpoint not found: {ckpt}")
    parse_vlm_spec(vlm)
    if engine not in ("local", "ray"):
        raise SemheatError(f"--engine must be local or ray, got {engine!r}")
    extractor = extract
    if engine == "ray":
        from ..engine.extract_ray import RayExtractor

        extractor = RayExtractor(ray_address, work_dir=out.parent / f"{out.name}.work" / "ray")
    spec = load_data(data, attributes_csv=attributes_csv, concepts=concepts)
    model, origin = build_resnet18(len(spec.classes), Path(ckpt) if ckpt else None)
    work = out.parent / f"{out.name}.work"
    if overwrite:  # --force: nothing of an earlier run is resumed (only our own work folder)
        remove_owned(work, ("work",))
    make_work_dir(work)
    ref_idx = reference_indices(spec.train_labels, reference_fraction)
    rest = np.setdiff1d(np.arange(len(spec.train_labels)), ref_idx)
    reference = Subset(spec.train, ref_idx.tolist())
    fine_tune = Subset(spec.train, rest.tolist())
    training = {}
    if train_epochs > 0:
        training = train_classifier(model, fine_tune, epochs=train_epochs, work=work,
                                    batch_size=batch_size, device=device,
                                    num_workers=num_workers, progress=progress,
                                    job=f"{data} | {classifier} from {origin} | "
                                        f"{train_epochs} epochs | batch {batch_size} | "
                                        f"{len(fine_tune)} inputs")
    split = ModelSplit(model, mean=IMAGENET_MEAN, std=IMAGENET_STD,
                       name=f"resnet18:{origin}" + (f"+{train_epochs}ep" if train_epochs else ""))
    split = split.to(resolve_device(device)).eval()
    the_vlm = load_vlm_spec(vlm, device)
    extra = {}
    if spec.train_attributes is not None and spec.test_attributes is not None:
        both = np.r_[spec.train_attributes[ref_idx], spec.test_attributes]
        names = [c.name for c in spec.concepts]
        extra["attributes"] = [[names[j] for j in np.flatnonzero(row)] for row in both]
    cfg = AnalysisConfig(attacks=(Attack("fgsm"), Attack("pgd", steps=10)),
                         attack_limit=attack_limit, batch_size=batch_size,
                         num_workers=num_workers, thumb_size=96,
                         extra_info={"data": data, "classifier_origin": origin,
                                     "training": training})
    bundle = analyze(split, the_vlm, spec.test, reference=reference, classes=spec.classes,
                     concepts=spec.concepts, class_prompts=spec.class_prompts, config=cfg,
                     name=out.name, extra_columns=extra, progress=progress,
                     extractor=extractor)
    bundle.manifest["build_seconds"] = round(time.time() - started, 1)
    bundle.save(out, overwrite=overwrite)
    return out
