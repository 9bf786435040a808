"""Toy-world datasets: a lazy torch ``Dataset`` and a fast bulk renderer."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from torch.utils.data import Dataset

from .world import ATTRIBUTES, CLASSES, ToyWorld


class ToyDataset(Dataset):
    """Scenes ``start .. start+count-1`` of ``world``; items are ``(uint8 CxHxW, label)``.

    Labels and attribute flags come from the scene specification, without rendering.
    """

    classes = CLASSES
    attribute_names = ATTRIBUTES

    def __init__(self, world: ToyWorld, start: int = 0, count: int = 1000):
        if count < 0 or start < 0:
            raise ValueError(f"start and count must be >= 0, got {start}, {count}")
        self.world, self.start, self.count = world, start, count
        scenes = world.scenes(start, count)
        self.labels = np.array([s.label for s in scenes], dtype=np.int64)
        self.attributes = np.array([s.attributes for s in scenes], dtype=bool).reshape(
            count, len(ATTRIBUTES))

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int):
        if not 0 <= i < self.count:
            raise IndexError(i)
        image = self.world.image(self.start + i)
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), int(self.labels[i])

    def render_all(self, workers: int | None = None) -> torch.Tensor:
        """All images as one ``uint8 N x 3 x H x W`` tensor (rendered in parallel)."""
        images = render_images(self.world, self.start, self.count, workers)
        return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _render_range(args):
    world, start, count = args
    return np.stack([world.image(i) for i in range(start, start + count)]) if count else \
        np.zeros((0, world.size, world.size, 3), np.uint8)


def render_images(world: ToyWorld, start: int, count: int, workers: int | None = None,
                  progress: bool = False) -> np.ndarray:
    """Render scenes ``start .. start+count-1`` to ``uint8 N x H x W x 3``."""
    workers = workers or min(os.cpu_count() or 1, 8)
    chunk = 256
    jobs = [(world, s, min(chunk, start + count - s)) for s in range(start, start + count, chunk)]
    if workers <= 1 or len(jobs) <= 1:
        parts = map(_render_range, jobs)
    else:
        pool = ProcessPoolExecutor(workers)
        parts = pool.map(_render_range, jobs)
    if progress:
        from tqdm.auto import tqdm

        parts = tqdm(parts, total=len(jobs), desc="render toy images", unit="chunk")
    try:
        out = np.concatenate(list(parts)) if jobs else np.zeros((0, world.size, world.size, 3),
                                                                   np.uint8)
    finally:
        if workers > 1 and len(jobs) > 1:
            pool.shutdown()
    return out
