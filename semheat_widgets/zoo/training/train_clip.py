"""Train the toy world's tiny CLIP: a genuine open_clip model, contrastive, on the CPU.

    python -m semheat_widgets.zoo.training.train_clip --out semheat_widgets/zoo/tiny_clip

The model is open_clip's ``CLIP`` with a small ModifiedResNet image tower and a 3-layer text
transformer (config in ``open_clip_config.json``). Token-embedding rows of words outside the
toy vocabulary start at zero and get no weight decay, so they stay zero and the weights file
stores only the used rows. Quality on fresh images is measured after the fp16 round trip and
written to ``quality.json`` beside the weights.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from ...data.toy.captions import caption, vocabulary_texts
from ...data.toy.dataset import render_images
from ...data.toy.world import ToyWorld
from ...engine.models.vlm import VLM, compact_state_dict
from .. import TINY_CLIP_DIR
from ..quality import eval_set, vlm_quality

TRAIN_WORLD_SEED = 1000


def _used_token_ids(tokenizer, world: ToyWorld, n_captions: int = 20000) -> torch.Tensor:
    rng = np.random.default_rng(0)
    texts = vocabulary_texts() + [caption(world.scene(i), rng) for i in range(n_captions)]
    return torch.unique(tokenizer(texts))


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = (p.ndim < 2 or "bn" in name or "ln" in name or "embedding" in name
                or "logit_scale" in name or name.endswith("positional_embedding"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def train_tiny_clip(out_dir, *, steps: int = 1500, batch_size: int = 256, pool_size: int = 60000,
                    lr: float = 2e-3, seed: int = 0, eval_size: int = 2000,
                    config_dir=TINY_CLIP_DIR, progress: bool = True) -> dict:
    import open_clip
    from open_clip.model import CLIP
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    config = json.loads((Path(config_dir) / "open_clip_config.json").read_text())
    if out_dir.resolve() != Path(config_dir).resolve():
        shutil.copy(Path(config_dir) / "open_clip_config.json", out_dir)
    cfg = config["model_cfg"]
    context = cfg["text_cfg"]["context_length"]
    tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    world = ToyWorld(seed=TRAIN_WORLD_SEED + seed)

    model = CLIP(**cfg)
    used = _used_token_ids(tokenizer, world)
    with torch.no_grad():  # unused vocabulary rows stay exactly zero (no grad, no decay)
        keep = torch.zeros(model.token_embedding.weight.shape[0], dtype=torch.bool)
        keep[used] = True
        model.token_embedding.weight[~keep] = 0.0

    started = time.time()
    pool = render_images(world, 0, pool_size, progress=progress)
    pool = torch.from_numpy(pool).permute(0, 3, 1, 2)
    scenes = world.scenes(0, pool_size)
    render_s = time.time() - started

    vlm = VLM(model, tokenizer, image_size=config["preprocess_cfg"]["size"],
              mean=config["preprocess_cfg"]["mean"], std=config["preprocess_cfg"]["std"],
              device="cpu")
    opt = torch.optim.AdamW(_param_groups(model, 0.1), lr=lr, betas=(0.9, 0.98), eps=1e-6)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / max(1, steps)))))
    loss_fn = open_clip.ClipLoss()
    rng = np.random.default_rng(seed)
    model.train()
    bar = tqdm(range(steps), desc="train tiny CLIP", disable=not progress)
    losses = []
    for step in bar:
        idx = rng.choice(pool_size, size=batch_size, replace=False)
        texts = tokenizer([caption(scenes[i], rng) for i in idx])
        images = vlm.preprocess(pool[idx])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            img, txt, scale = model(images, texts)
            loss = loss_fn(img.float(), txt.float(), scale.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        losses.append(loss.item())
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    train_s = time.time() - started - render_s

    model.eval()
    weights = out_dir / "tiny_clip.safetensors"
    from safetensors.torch import save_file

    save_file(compact_state_dict(model), str(weights))
    shipped = VLM.from_local(out_dir, device="cpu")  # measure what ships (fp16 round trip)
    quality = vlm_quality(shipped, *eval_set(eval_size))
    quality.update({
        "steps": steps, "batch_size": batch_size, "pool_size": pool_size, "lr": lr, "seed": seed,
        "final_loss": round(float(np.mean(losses[-50:])), 4), "render_seconds": round(render_s, 1),
        "train_seconds": round(train_s, 1), "threads": torch.get_num_threads(),
        "weights_bytes": weights.stat().st_size,
        "used_tokens": int(used.numel()),
    })
    (out_dir / "quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    return quality


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(TINY_CLIP_DIR))
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--pool-size", type=int, default=60000)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-size", type=int, default=2000)
    args = ap.parse_args(argv)
    quality = train_tiny_clip(args.out, steps=args.steps, batch_size=args.batch_size,
                              pool_size=args.pool_size, lr=args.lr, seed=args.seed,
                              eval_size=args.eval_size)
    print(json.dumps(quality, indent=2))


if __name__ == "__main__":
    main()
