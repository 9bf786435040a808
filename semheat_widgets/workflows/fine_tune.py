"""Fine-tuning a torchvision ResNet-18 for ``semheat analyze``: resumable, checkpointed every
epoch (atomically), CUDA and mixed precision when present; checkpoints are loaded without
unpickling anything."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from ..engine.classifier import ModelSplit
from ..engine.device import resolve_device
from ..errors import SemheatError
from ..safe_io import atomic_write, check_regular, read_json


def _imagenet_resnet18():
    """ResNet-18 with ImageNet weights if they can be had (offline: None)."""
    from torchvision.models import ResNet18_Weights, resnet18

    try:
        return resnet18(weights=ResNet18_Weights.IMAGENET1K_V1), "imagenet"
    except Exception:  # no network, no cached weights
        return None, "scratch"


def load_checkpoint_state(path: Path) -> dict:
    """A checkpoint's state dict: safetensors, or a ``.pt`` state dict of plain tensors read
    with ``weights_only=True``. Anything else is one line — never torch's advice to retry with
    ``weights_only=False``, which would run whatever code the file holds."""
    path = Path(path)
    check_regular(path, "checkpoint")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise SemheatError(f"{path} is not a readable safetensors checkpoint "
                               f"({str(exc).splitlines()[0][:120] if str(exc) else 'empty'})") \
                from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        raise SemheatError(f"cannot load checkpoint {path} safely: it is not a state dict of "
                           f"plain tensors (give a .safetensors file, or a state dict saved "
                           f"with torch.save(model.state_dict(), ...))") from None
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


def fine_tune(model, dataset, *, epochs: int, work: Path, batch_size: int = 64,
              lr: float = 0.01, device=None, num_workers: int = 0,
              progress: bool = True, job: str = "") -> dict:
    """Fine-tune ``model`` (inputs: uint8 images) with SGD; resumes from ``work``.

    ``model`` is a torch module (ImageNet normalisation) or a :class:`ModelSplit`, whose own
    preprocessing is then used. ``job`` names what is being trained (data, starting point,
    epochs): a saved state is only resumed when it was written for the same job; otherwise
    training starts afresh.
    """
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    device = resolve_device(device)
    split = (model if isinstance(model, ModelSplit) else ModelSplit(model)).to(device)
    model = split.model
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
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
