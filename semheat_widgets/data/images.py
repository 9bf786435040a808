"""Image files as tensors: decoding with clear errors, and a dataset over a list of files."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import SemheatError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_image(path, size: int | None = None) -> torch.Tensor:
    """Decode ``path`` to ``uint8 3 x H x W`` (RGB; grayscale and alpha converted).

    With ``size``, the shorter side is resized to ``size`` and the centre square cropped, so
    images of any shape batch together. A file that cannot be decoded raises a
    :class:`SemheatError` naming it.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None:
                w, h = im.size
                scale = size / min(w, h)
                im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                               Image.BICUBIC)
                left, top = (im.width - size) // 2, (im.height - size) // 2
                im = im.crop((left, top, left + size, top + size))
            arr = np.asarray(im, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise SemheatError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise SemheatError(f"cannot read image {path}: {exc}") from None
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()


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
