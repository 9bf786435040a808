"""A bundle's thumbnails (``arrays/thumbs.npy``, uint8 N x H x W x 3) and their PNG encoding,
what the widgets and reports send.

Encoding is most of what a click on a heatmap cell costs in Python (about 0.6 ms a thumbnail,
24 a page), and neighbouring cells show many of the same inputs (the cells of one row are
the same mistakes sorted by another concept), so each bundle keeps its last
:data:`PNG_CACHE` encodings (:class:`PngCache`).
"""

from __future__ import annotations

from collections import OrderedDict

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


PNG_CACHE = 2048  # encoded thumbnails a bundle keeps (about 8 KB each at 64 pixels)


class PngCache:
    """The last ``size`` PNG encodings of a bundle's thumbnails, by record index (least
    recently used first out)."""

    def __init__(self, size: int = PNG_CACHE):
        self.size, self._items = size, OrderedDict()

    def get(self, bundle, i: int) -> bytes:
        png = self._items.get(i)
        if png is None:
            png = png_bytes(thumbnail(bundle, i))
            self._items[i] = png
            if len(self._items) > self.size:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(i)
        return png


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
