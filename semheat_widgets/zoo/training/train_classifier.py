"""Train the toy classifiers of the fault zoo (clean and encoder-fault) on the CPU.

    python -m semheat_widgets.zoo.training.train_classifier --which all

Weights go to ``semheat_widgets/zoo/classifiers/<name>.safetensors`` (fp16); the accuracy of
the shipped weights on fresh images (and, for the faults, on the shifted set and the flip
counts of the head fault) goes to ``quality.json`` beside them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data.toy.world import ToyWorld
from .. import CLASSIFIER_DIR
from ..faults import clean_train_world, encoder_fault_train_world, shift_world
from ..quality import EVAL_WORLD
from ..toy_resnet import ToyResNet, classifier_config

WORLDS = {"clean": clean_train_world, "encoder_fault": encoder_fault_train_world}


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to 4 pixels (reflect padding)."""
    pad = F.pad(x, (4, 4, 4, 4), mode="reflect")
    dx, dy = torch.randint(0, 9, (2,), generator=gen).tolist()
    return pad[..., dy:dy + x.shape[-2], dx:dx + x.shape[-1]]


def _normalise(images_uint8: torch.Tensor, cfg: dict) -> torch.Tensor:
    mean = torch.tensor(cfg["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    return (images_uint8.float() / 255 - mean) / std


@torch.no_grad()
def accuracy(model, images: torch.Tensor, labels: np.ndarray, cfg: dict) -> float:
    model.eval()
    preds = torch.cat([model(_normalise(images[s:s + 512], cfg)).argmax(1)
                       for s in range(0, len(images), 512)])
    return float((preds.numpy() == labels).mean())


def train_classifier(world: ToyWorld, *, n_train: int = 24000, epochs: int = 8,
                     batch_size: int = 128, lr: float = 0.1, seed: int = 0,
                     progress: bool = True) -> tuple[ToyResNet, dict]:
    from tqdm.auto import tqdm

    from ...data.toy.dataset import ToyDataset

    torch.manual_seed(seed)
    cfg = classifier_config()
    started = time.time()
    data = ToyDataset(world, 0, n_train)
    images = data.render_all()
    labels = torch.from_numpy(data.labels)
    model = ToyResNet(widths=tuple(cfg["widths"]))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4,
                          nesterov=True)
    steps = epochs * (n_train // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1),
                                                pct_start=0.15)
    gen = torch.Generator().manual_seed(seed)
    bar = tqdm(total=steps, desc=f"train classifier (seed {world.seed})", disable=not progress)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n_train, generator=gen)
        for s in range(0, n_train - batch_size + 1, batch_size):
            idx = order[s:s + batch_size]
            x = _augment(_normalise(images[idx], cfg), gen)
            loss = F.cross_entropy(model(x), labels[idx], label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    model.eval()
    return model, {"n_train": n_train, "epochs": epochs, "batch_size": batch_size, "lr": lr,
                   "seed": seed, "train_seconds": round(time.time() - started, 1),
                   "threads": torch.get_num_threads()}


def save_fp16(model, path: Path) -> None:
    """The weights in fp16 as safetensors, written atomically (temporary sibling + rename): a
    kill or a full disk never leaves a truncated cache file."""
    from safetensors.torch import save

    from ...safe_io import atomic_write

    atomic_write(path, save({k: v.detach().half().contiguous() if v.is_floating_point()
                             else v.contiguous() for k, v in model.state_dict().items()}))


def measure_zoo(out_dir: Path = CLASSIFIER_DIR, n_eval: int = 2000) -> dict:
    """Accuracy of the shipped classifiers on fresh natural and shifted images."""
    from ...data.toy.dataset import ToyDataset
    from ..models import TOY_CLASSIFIERS, load_toy_resnet

    cfg = classifier_config()
    nat = ToyDataset(EVAL_WORLD, 0, n_eval)
    nat_images = nat.render_all()
    shift = ToyDataset(shift_world(EVAL_WORLD.seed), 0, n_eval // 4)
    shift_images = shift.render_all()
    out = {}
    preds = {}
    for name in TOY_CLASSIFIERS:
        if name != "head_fault" and not (out_dir / f"{name}.safetensors").is_file():
            continue
        if name == "head_fault" and "clean" not in preds:
            continue
        model = load_toy_resnet(name, out_dir)
        with torch.no_grad():
            p = torch.cat([model(_normalise(nat_images[s:s + 512], cfg)).argmax(1)
                           for s in range(0, n_eval, 512)]).numpy()
        preds[name] = p
        out[name] = {"accuracy": round(float((p == nat.labels).mean()), 4),
                     "shift_accuracy": round(accuracy(model, shift_images, shift.labels, cfg), 4),
                     "n_eval": n_eval, "n_shift": len(shift)}
    if "head_fault" in preds:
        flips = (preds["clean"] == nat.labels) & (preds["head_fault"] != nat.labels)
        out["head_fault"]["flipped_from_clean"] = int(flips.sum())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--which", choices=["clean", "encoder_fault", "all"], default="all")
    ap.add_argument("--out", default=str(CLASSIFIER_DIR))
    ap.add_argument("--n-train", type=int, default=24000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-eval", type=int, default=2000, help="fresh images to measure on")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = list(WORLDS) if args.which == "all" else [args.which]
    quality_path = out / "quality.json"
    training = json.loads(quality_path.read_text()).get("training", {}) \
        if quality_path.is_file() else {}
    for name in names:
        model, info = train_classifier(WORLDS[name](), n_train=args.n_train, epochs=args.epochs,
                                       seed=args.seed)
        save_fp16(model, out / f"{name}.safetensors")
        training[name] = info
    quality = {"measured": measure_zoo(out, args.n_eval), "training": training}
    quality_path.write_text(json.dumps(quality, indent=2) + "\n")
    print(json.dumps(quality, indent=2))


if __name__ == "__main__":
    main()
