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

from ..engine.models.classifier import ModelSplit
from ..engine.memory import release_freed_memory
from ..engine.models.device import resolve_device
from ..errors import SemheatError
from ..safe_io import check_regular, space_errors


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


TRAIN_STATE = "train_state.safetensors"  # the one resume record: weights, momentum, progress
CHECKPOINT = "classifier.safetensors"  # the trained weights alone, for users and the manifest


def fine_tune(model, dataset, *, epochs: int, work: Path, batch_size: int = 64,
              lr: float = 0.01, device=None, num_workers: int = 0,
              progress: bool = True, job: str = "", seed: int = 0) -> dict:
    """Fine-tune ``model`` (inputs: uint8 images) with SGD; resumes from ``work``.

    ``model`` is a torch module (ImageNet normalisation) or a :class:`ModelSplit`, whose own
    preprocessing is then used. ``job`` names what is being trained (data, starting point,
    epochs): a saved state is only resumed when it was written for the same job; otherwise
    training starts afresh.

    A resumed run trains the same model as an uninterrupted one: after every epoch one file
    (:data:`TRAIN_STATE`, written temp + rename) records the weights, the optimizer's momentum
    and the epochs done together, and every epoch's shuffle and random draws come from
    ``(seed, epoch)`` alone, never from how many epochs ran before in this process. The order
    is drawn here, not by the loader, so ``num_workers`` changes the speed, not the model.
    """
    from tqdm.auto import tqdm

    device = resolve_device(device)
    split = (model if isinstance(model, ModelSplit) else ModelSplit(model)).to(device)
    model = split.model
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    job = job or f"{len(dataset)} inputs, {epochs} epochs, lr {lr}, batch {batch_size}"
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    done = _resume(model, opt, scaler, work / TRAIN_STATE, job, device)
    devices = [device] if device.type == "cuda" else []
    for epoch in range(done, epochs):
        for group in opt.param_groups:  # cosine schedule over epochs
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / max(epochs, 1)))
        model.train()
        order = torch.randperm(len(dataset),
                               generator=torch.Generator().manual_seed(seed * 100003 + epoch))
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order.tolist(),
                            num_workers=num_workers, drop_last=len(dataset) > batch_size)
        with torch.random.fork_rng(devices=devices):  # dropout and the like: per epoch too
            torch.manual_seed(seed * 100003 + epoch)
            for images, labels in tqdm(loader, desc=f"fine-tune epoch {epoch + 1}/{epochs}",
                                       disable=not progress):
                images, labels = images.to(device), labels.to(device)
                with torch.autocast(device.type, dtype=torch.float16,
                                    enabled=device.type == "cuda"):
                    loss = torch.nn.functional.cross_entropy(split(images), labels)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
        _save_state(model, opt, scaler, work / TRAIN_STATE, job, epoch + 1)
    _save_weights(model, work / CHECKPOINT)  # also after a resume that found all epochs done
    model.eval()
    release_freed_memory()  # the batches' activations and gradients
    return {"epochs": epochs, "resumed_from_epoch": done}


def _atomic_safetensors(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with space_errors(path):
            save_file(tensors, str(tmp), metadata=metadata)
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _save_weights(model, path: Path) -> None:
    _atomic_safetensors({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                        path)


def _save_state(model, opt, scaler, path: Path, job: str, epochs_done: int) -> None:
    """Weights (``model.*``), momentum buffers (``momentum.<param index>``), progress and the
    mixed-precision loss scale (the file's metadata) in one file, so no kill can leave one
    without the others."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    for i, param in enumerate(p for g in opt.param_groups for p in g["params"]):
        buf = opt.state.get(param, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.detach().cpu().contiguous()
    meta = {"job": job, "epochs_done": str(epochs_done), "format": "semheat-train-state-1"}
    if scaler.is_enabled():
        meta["scaler"] = json.dumps(scaler.state_dict())
    _atomic_safetensors(tensors, path, meta)


def _resume(model, opt, scaler, path: Path, job: str, device) -> int:
    """Epochs already done by an earlier run of the same ``job`` (weights and momentum loaded
    into ``model`` and ``opt``); 0 when there is nothing to resume. An unreadable resume
    state is not fatal: training starts again from the first epoch, with a warning."""
    from safetensors import safe_open

    if not path.exists():
        return 0
    try:
        check_regular(path, "resume state")
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = f.metadata() or {}
            if meta.get("format") != "semheat-train-state-1":
                raise SemheatError("not a semheat training state")
            if meta.get("job") != job:
                return 0  # another job's state: start afresh
            done = int(meta.get("epochs_done", ""))
            if done < 0:
                raise SemheatError(f"epochs_done {done} is not an epoch count")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
        own = model.state_dict()
        if set(weights) != set(own) or any(weights[k].shape != v.shape for k, v in own.items()):
            raise SemheatError("its weights do not fit this model")  # checked before any load
        params = [p for g in opt.param_groups for p in g["params"]]
        momentum = {i: tensors[f"momentum.{i}"] for i in range(len(params))
                    if f"momentum.{i}" in tensors}
        if any(buf.shape != params[i].shape for i, buf in momentum.items()):
            raise SemheatError("its momentum does not fit this model")
        scale = json.loads(meta["scaler"]) if scaler.is_enabled() and "scaler" in meta else None
        model.load_state_dict(weights)
        if scale is not None:
            scaler.load_state_dict(scale)
        for i, buf in momentum.items():
            opt.state[params[i]]["momentum_buffer"] = buf.to(device=params[i].device,
                                                             dtype=params[i].dtype)
        return done
    except Exception as exc:  # safetensors, torch and format errors alike: all mean "damaged"
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        warnings.warn(f"the resume state {path} is unreadable ({reason}); "
                      f"training starts again from epoch 1", stacklevel=3)
        opt.state.clear()
        return 0
