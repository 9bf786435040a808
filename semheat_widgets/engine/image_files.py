"""Image files decoded safely: the one place an image file (or an image's bytes) is opened.

A path must be a regular file (a FIFO or a device is refused before opening); every way
decoding can fail — a missing file, an unknown format, truncated data, a decompression bomb —
is one :class:`~semheat_widgets.errors.SemheatError` line naming the image.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np
import torch

from ..errors import SemheatError
from ..safe_io import check_regular

_T = TypeVar("_T")


def _decode(source, what: str | None, use: Callable[..., _T]) -> _T:
    """Open ``source`` (a path or the bytes of an image) with PIL and return ``use(image)``.

    The one place images are opened: a path must be a regular file (a FIFO or a device is
    refused before opening, so it can never hang this), and every way decoding can fail —
    missing file, unknown format, truncated data, an image over PIL's pixel limit (a
    decompression bomb, also when its warning is turned into an error) — becomes a one-line
    :class:`SemheatError` naming ``what`` (default: ``image PATH``, or ``image data``).
    """
    from PIL import Image, UnidentifiedImageError

    if isinstance(source, (bytes, bytearray, memoryview)):
        label, path = what or "image data", None
        opened = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        label = what or f"image {path}"
        opened = check_regular(path, "image file")
    try:
        with Image.open(opened) as im:
            return use(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        found = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(exc))
        size = (f"{int(found.group(1)):,} pixels, over the limit of {int(found.group(2)):,}"
                if found else "over the pixel limit")
        raise SemheatError(f"{label} is too large to decode safely ({size}); refusing a "
                           f"possible decompression bomb") from None
    except FileNotFoundError:
        raise SemheatError(f"{path}: no such image file") from None
    except PermissionError:
        raise SemheatError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise SemheatError(f"cannot read {label}: not a recognised image format") from None
    except Exception as exc:  # OSError, ValueError, SyntaxError, struct.error, MemoryError …:
        # whatever PIL raises on a damaged file means the file cannot be read
        reason = (str(exc).strip().splitlines() or [""])[0] or type(exc).__name__
        raise SemheatError(f"cannot read {label}: {reason}") from None


def open_rgb(source, what: str | None = None):
    """``source`` (a path, or an image's bytes) as a fully loaded RGB ``PIL.Image``
    (grayscale, palette and alpha converted). Any failure is a one-line
    :class:`SemheatError` naming ``what`` (default: the path)."""
    return _decode(source, what, lambda im: im.convert("RGB"))


def image_size(source, what: str | None = None) -> tuple[int, int]:
    """``(width, height)`` of an image from its header (pixels not decoded), with the same
    checks and errors as :func:`open_rgb` (a decompression bomb is refused here too)."""
    return _decode(source, what, lambda im: tuple(im.size))


def load_image(path, size: int | None = None) -> torch.Tensor:
    """Decode ``path`` to ``uint8 3 x H x W`` (RGB; grayscale and alpha converted).

    With ``size``, the shorter side is resized to ``size`` and the centre square cropped, so
    images of any shape batch together. A file that cannot be decoded raises a
    :class:`SemheatError` naming it (see :func:`open_rgb`).
    """
    from PIL import Image

    im = open_rgb(path)
    if size is not None:
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))),
                       Image.BICUBIC)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        im = im.crop((left, top, left + size, top + size))
    arr = np.asarray(im, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
