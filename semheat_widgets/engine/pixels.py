"""Images as tensors: one way to scale pixels and one way to resize and crop them.

Images travel as ``uint8`` 0..255 or float 0..1 tensors, ``N x 3 x H x W``. The classifier's
and the VLM's own preprocessing, the thumbnails and decoded files all resize the shorter side
and crop the centre square with :func:`resize_center_crop`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_float01(images: torch.Tensor) -> torch.Tensor:
    """``uint8`` 0..255 or float 0..1 images as float 0..1."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


def resize_center_crop(x: torch.Tensor, size: int, mode: str = "bicubic") -> torch.Tensor:
    """Resize the shorter side of float images to ``size`` (antialiased) and crop the centre
    square; images already ``size x size`` pass unchanged."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    squeeze = x.ndim == 3
    x = F.interpolate(x[None] if squeeze else x, size=(nh, nw), mode=mode, antialias=True,
                      align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    x = x[..., top:top + size, left:left + size]
    return x[0] if squeeze else x


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Float 0..1 images back to ``uint8`` 0..255 (clamped, rounded)."""
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def thumbnails(images: torch.Tensor, size: int) -> "np.ndarray":  # noqa: F821
    """``uint8 N x size x size x 3`` thumbnails of a batch (for the bundle and the widgets)."""
    x = resize_center_crop(to_float01(images), size, mode="bilinear")
    return to_uint8(x).permute(0, 2, 3, 1).cpu().numpy()
