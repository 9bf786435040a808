"""What users have, as what the engine takes: items ``(float 0..1 3 x S x S tensor, label)``.

:class:`PreparedImages` wraps any indexable dataset whose items are images — PIL images of any
mode, ``uint8`` or float arrays or tensors, ``H x W``, ``H x W x C`` or ``C x H x W``, 1, 2, 3 or
4 channels — with a label (an item ``(image, label)``, or a dict with ``image`` / ``label``
keys), and yields them converted to RGB, scaled to 0..1 and resized (shorter side, centre
crop) to one size, so they batch whatever their sizes. Float images that were already
normalised (values below 0) are mapped back to 0..1 with the given mean and std; ``0..255``
floats are divided by 255. The classifier and the VLM then apply their own preprocessing.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.utils.data import Dataset

from ...errors import SemheatError
from ..pixels import resize_center_crop

IMAGE_KEYS = ("image", "img", "pixel_values", "images", "x", "input")
LABEL_KEYS = ("label", "labels", "target", "targets", "y", "class")


def _from_pil(image) -> torch.Tensor:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # 16/32-bit grayscale: rescale
        arr = np.asarray(image, dtype=np.float32)
        top = float(arr.max()) or 1.0
        return torch.from_numpy(arr / top)[None]
    if image.mode != "RGB":
        image = image.convert("RGB")
    return torch.from_numpy(np.array(image, dtype=np.uint8)).permute(2, 0, 1)


def image_tensor(image) -> torch.Tensor:
    """One image (PIL, numpy or torch; any layout above) as a ``C x H x W`` tensor, C in
    1..4, in its own dtype."""
    if hasattr(image, "convert") and hasattr(image, "mode"):
        return _from_pil(image)
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint16:
            image = image.astype(np.float32) / 65535.0
        elif image.dtype == bool:
            image = image.astype(np.uint8) * 255
        elif image.dtype.kind in "iu" and image.dtype != np.uint8:
            image = image.astype(np.float32) / max(255.0, float(image.max()))
        image = torch.from_numpy(np.ascontiguousarray(image))
    if not isinstance(image, torch.Tensor):
        raise SemheatError(f"an image must be a PIL image, a numpy array or a tensor, got "
                           f"{type(image).__name__}")
    x = image.detach().cpu()
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise SemheatError(f"an image must be H x W, H x W x C or C x H x W, got shape "
                           f"{tuple(x.shape)}")
    if x.shape[0] not in (1, 2, 3, 4) and x.shape[-1] in (1, 2, 3, 4):
        x = x.permute(2, 0, 1)  # H x W x C
    if x.shape[0] not in (1, 2, 3, 4):
        raise SemheatError(f"an image needs 1 to 4 channels, got shape {tuple(x.shape)}")
    if x.dtype == torch.bool:
        x = x.to(torch.uint8) * 255
    return x


def to_rgb01(x: torch.Tensor, mean=None, std=None) -> tuple[torch.Tensor, str]:
    """A ``C x H x W`` image as float 0..1 RGB, and what was done to its values
    (``""``, ``"0..255"`` or ``"normalised"``)."""
    note = ""
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    else:
        x = x.float()
    c = x.shape[0]
    if c == 1:
        x = x.expand(3, -1, -1)
    elif c == 2:  # grey + alpha
        x = x[:1].expand(3, -1, -1)
    elif c == 4:  # RGBA
        x = x[:3]
    lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 and mean is not None:  # normalised with the classifier's mean and std
        m = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
        x, note = x * s + m, "normalised"
    elif hi > 1 + 1e-3 and lo >= 0:
        x, note = x / 255.0, "0..255"
    return x.clamp(0, 1).contiguous(), note


class PreparedImages(Dataset):
    """``dataset``'s items as ``(float 0..1 3 x size x size, int label)`` (see the module)."""

    def __init__(self, dataset, size: int, *, mean=None, std=None, labels=None,
                 class_index: dict | None = None):
        self.dataset = dataset
        self.size = int(size)
        self.mean, self.std = mean, std
        self.labels = labels  # optional: one label per item, instead of the items' own
        self.class_index = class_index or {}
        self._warned = set()

    def __len__(self) -> int:
        return len(self.dataset)

    def split_item(self, item):
        """``(image, label)`` of one item of the wrapped dataset."""
        if isinstance(item, dict):
            image = next((item[k] for k in IMAGE_KEYS if k in item), None)
            label = next((item[k] for k in LABEL_KEYS if k in item), None)
            if image is None:
                raise SemheatError(f"a dataset item is a dict with keys {list(item)}; it needs "
                                   f"an image under one of {IMAGE_KEYS}")
            return image, label
        if isinstance(item, (tuple, list)):
            if len(item) < 2:
                raise SemheatError("a dataset item must be (image, label)")
            return item[0], item[1]
        return item, None

    def label_of(self, label) -> int:
        if isinstance(label, str):
            if label not in self.class_index:
                raise SemheatError(f"label {label!r} is not one of the class names")
            return self.class_index[label]
        if isinstance(label, (torch.Tensor, np.ndarray)):
            if label.size == 1 if isinstance(label, np.ndarray) else label.numel() == 1:
                label = label.item()
            else:
                raise SemheatError(f"a label must be one integer, got shape "
                                   f"{tuple(label.shape)}")
        if isinstance(label, float) and label.is_integer():
            label = int(label)
        if not isinstance(label, (int, np.integer)) or isinstance(label, bool):
            raise SemheatError(f"a label must be an integer class index, got {label!r}")
        return int(label)

    def __getitem__(self, i: int):
        image, label = self.split_item(self.dataset[i])
        if self.labels is not None:
            label = self.labels[i]
        if label is None:
            raise SemheatError("the dataset yields images without labels; give labels= "
                               "(one class index per image)")
        x, note = to_rgb01(image_tensor(image), self.mean, self.std)
        if note and note not in self._warned:
            self._warned.add(note)
            what = ("undone with the classifier's mean and std" if note == "normalised"
                    else "divided by 255")
            warnings.warn(f"the images look {note} (values outside 0..1): {what}",
                          stacklevel=2)
        return resize_center_crop(x, self.size), self.label_of(label)


class ArrayImages(Dataset):
    """Images (an ``N x ...`` array or tensor, or a list) with their labels, as items."""

    def __init__(self, images, labels):
        if labels is None:
            raise SemheatError("arrays of images need labels: pass data=(images, labels)")
        if len(images) != len(labels):
            raise SemheatError(f"{len(images)} images but {len(labels)} labels")
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], self.labels[i]
