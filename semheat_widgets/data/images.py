"""Image files as a dataset: keeping the readable ones of a list, and a dataset over files
(decoding itself: :mod:`semheat_widgets.engine.image_files`)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from ..engine.image_files import load_image
from ..errors import SemheatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def keep_readable(items, read: Callable, on_error: str) -> tuple[list, list, list[str]]:
    """``(kept items, what read returned for each, problems)``: ``read(item)`` for every item;
    one raising :class:`SemheatError` is skipped (its message kept) when ``on_error`` is
    ``"skip"``, and stops everything when it is ``"raise"``."""
    if on_error not in ("raise", "skip"):
        raise SemheatError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    kept, results, problems = [], [], []
    for item in items:
        try:
            results.append(read(item))
        except SemheatError as exc:
            if on_error == "raise":
                raise
            problems.append(str(exc))
            continue
        kept.append(item)
    return kept, results, problems


class ImageFilesDataset(Dataset):
    """Images from files with integer labels; items ``(uint8 3 x size x size, label)``."""

    def __init__(self, paths: Sequence, labels: Sequence[int], size: int = 224):
        if len(paths) != len(labels):
            raise SemheatError(f"{len(paths)} image paths but {len(labels)} labels")
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        return load_image(self.paths[i], self.size), int(self.labels[i])
