"""A bundle's thumbnails (``arrays/thumbs.npy``, uint8 N x H x W x 3) and their PNG encoding,
what the widgets and reports send."""

from __future__ import annotations

import numpy as np

from ...arguments import as_index
from ...errors import SemheatError
from .store import prefetch


def png_bytes(image: np.ndarray) -> bytes:
    """``uint8 H x W x 3`` as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def thumbnail(bundle, i) -> np.ndarray:
    """Record ``i``'s thumbnail, refused in one line where the bundle has none."""
    i = as_index(i, bundle.n, "record")
    if "thumbs" not in bundle.arrays:
        raise SemheatError(f"bundle {bundle.name!r} has no thumbnails (arrays/thumbs.npy)")
    return np.asarray(bundle.arrays["thumbs"][i])


def read_ahead(bundle, indices: list) -> None:
    """Ask the disk for the thumbnail rows of ``indices`` together (see
    :func:`.store.prefetch`); a bad index is left for :func:`thumbnail` to refuse."""
    if "thumbs" in bundle.arrays:
        prefetch(bundle.arrays["thumbs"], [int(i) for i in indices if isinstance(
            i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < bundle.n])
