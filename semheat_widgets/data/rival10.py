"""The real RIVAL10 dataset, read from its published folder layout.

``RIVAL10/{train,test}/ordinary/`` holds ``<wnid>_<name>.JPEG`` images; beside each one
``<stem>_attr_labels.npy`` (row 0: the 18 attribute flags, row 1: flags changed by augmentation),
``<stem>_merged_mask.JPEG`` and ``<stem>_attr_dict.pkl`` (attribute -> base64 mask image). The
class comes from the ImageNet wnid that starts the file name, using the fixed table
:data:`RIVAL10_WNIDS`; the ``meta/*.json`` files are not needed.

RIVAL10 is licensed for non-commercial research only (University of Maryland terms) and is
derived from ImageNet (ImageNet terms apply); see :mod:`semheat_widgets.data.download`.

Malformed entries (missing or bad ``_attr_labels.npy``, unknown wnid, with ``masks=True`` a
missing ``_attr_dict.pkl``, with ``check_images=True`` an unreadable image) raise a
:class:`SemheatError` naming the file by default; with ``on_error="skip"`` they are left out and
one warning says how many and why. A dataset entry that is not a regular file (a FIFO, a
device, a dangling link) is malformed too, and so, with ``check_images=True``, is an image over
PIL's pixel limit (a decompression bomb). An undecodable image that was not checked up front
raises when its item is loaded.
"""

from __future__ import annotations

import base64
import binascii
import warnings
from pathlib import Path

import numpy as np

from ..errors import SemheatError
from ..safe_io import check_regular
from ..engine.image_files import image_size, open_rgb
from .images import ImageFilesDataset, keep_readable
from .names import RIVAL10_ATTRIBUTES, RIVAL10_CLASSES
from .safe_pickle import load_str_dict

_SYNSETS = (
    ("n03796401", "n04467665"), ("n02814533", "n03100240"), ("n02690373", "n04552348"),
    ("n03673027", "n03095699"), ("n02123394", "n02124075"), ("n02099712", "n02099601"),
    ("n02389026", "n02391049"), ("n02423022", "n02422699"), ("n01644900", "n01644373"),
    ("n01531178", "n01532829"),
)
RIVAL10_WNIDS: dict[str, int] = {w: label for label, pair in enumerate(_SYNSETS) for w in pair}
"""ImageNet wnid -> RIVAL10 class index (two synsets per class)."""

SIDECAR_SUFFIXES = ("_merged_mask", "_attr_labels", "_attr_dict")
SPLITS = ("train", "test")


def find_rival10_root(root, split: str = "train") -> Path:
    """The ``RIVAL10`` folder, given it or its parent; a clear error says what was expected."""
    root = Path(root).expanduser()
    for candidate in (root, root / "RIVAL10"):
        if (candidate / split / "ordinary").is_dir():
            return candidate
    raise SemheatError(f"{root} is not a RIVAL10 folder: expected {root}/{split}/ordinary or "
                       f"{root}/RIVAL10/{split}/ordinary (see semheat_widgets.data.download)")


def is_rival10_image(path: Path) -> bool:
    """True for an image of the dataset, false for its sidecar files."""
    return (path.suffix.lower() in (".jpeg", ".jpg")
            and not path.stem.endswith(SIDECAR_SUFFIXES) and not path.name.startswith("."))


def sidecar(image: Path, suffix: str) -> Path:
    """The file beside ``image`` with the same stem, e.g. ``sidecar(p, "_attr_labels.npy")``."""
    return image.with_name(image.stem + suffix)


def wnid_label(image: Path) -> int:
    """The class index of ``image`` from the wnid before the first ``_`` of its name."""
    wnid = image.stem.split("_", 1)[0]
    if wnid not in RIVAL10_WNIDS:
        raise SemheatError(f"{image}: unknown ImageNet wnid {wnid!r} (not one of the 20 "
                           "RIVAL10 synsets)")
    return RIVAL10_WNIDS[wnid]


def read_attr_labels(path: Path) -> np.ndarray:
    """``bool 2 x 18`` (present flags, changed flags) from an ``_attr_labels.npy`` file."""
    n = len(RIVAL10_ATTRIBUTES)
    if not path.exists():
        raise SemheatError(f"missing attribute labels {path}")
    check_regular(path, "attribute labels")  # a FIFO would hang np.load
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise SemheatError(f"missing attribute labels {path}") from None
    except (OSError, ValueError, EOFError) as exc:
        raise SemheatError(f"cannot read attribute labels {path}: {exc}") from None
    if arr.ndim != 2 or arr.shape[1] != n or not 1 <= arr.shape[0] <= 2:
        raise SemheatError(f"{path}: attribute labels have shape {arr.shape}, expected (2, {n})")
    if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
        raise SemheatError(f"{path}: attribute labels must be 0 or 1")
    flags = np.zeros((2, n), bool)
    flags[: arr.shape[0]] = arr.astype(bool)
    return flags


def decode_mask(value, source="mask") -> np.ndarray:
    """``bool H x W`` from a base64 image (str or bytes, an optional ``data:`` prefix allowed);
    a pixel is set where any channel is non-zero."""
    if isinstance(value, str):
        value = value.encode("ascii", "ignore")
    if value.startswith(b"data:"):
        value = value.split(b",", 1)[-1]
    try:
        data = base64.b64decode(value)
    except (binascii.Error, ValueError) as exc:
        raise SemheatError(f"cannot decode {source}: {exc}") from None
    return np.asarray(open_rgb(data, source)).any(axis=-1)


def fit_mask(mask: np.ndarray, image_wh: tuple[int, int], size: int | None) -> np.ndarray:
    """Map ``mask`` onto the pixels of its image as :func:`~.images.load_image` returns them:
    stretched to the image's ``(width, height)``, then shorter side to ``size``, centre crop."""
    from PIL import Image

    im = Image.fromarray(mask.astype(np.uint8) * 255)
    if im.size != tuple(image_wh):
        im = im.resize(tuple(image_wh), Image.NEAREST)
    if size is not None:
        w, h = im.size
        scale = size / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.NEAREST)
        left, top = (im.width - size) // 2, (im.height - size) // 2
        im = im.crop((left, top, left + size, top + size))
    return np.asarray(im) > 127


class Rival10Dataset(ImageFilesDataset):
    """One split of RIVAL10; items ``(uint8 3 x size x size, label)``, files in sorted order.

    ``root`` is the ``RIVAL10`` folder or its parent. ``.labels`` (int64 N), ``.attributes`` and
    ``.changed`` (bool N x 18: present flags and flags changed by augmentation), ``.paths``,
    ``.skipped`` (the messages of entries left out with ``on_error="skip"``).
    ``masks=True`` also requires every ``_attr_dict.pkl`` up front; ``check_images=True`` opens
    every image header up front; ``on_error`` is ``"raise"`` or ``"skip"`` (module docstring).
    """

    classes = RIVAL10_CLASSES
    attribute_names = RIVAL10_ATTRIBUTES

    def __init__(self, root, split: str = "train", size: int = 224, masks: bool = False,
                 on_error: str = "raise", check_images: bool = False):
        if split not in SPLITS:
            raise SemheatError(f"RIVAL10 split must be 'train' or 'test', got {split!r}")
        self.root, self.split = find_rival10_root(root, split), split
        folder = self.root / split / "ordinary"
        listed = sorted(p for p in folder.iterdir() if not p.is_dir() and is_rival10_image(p))
        paths, entries, problems = keep_readable(
            listed, lambda p: self._read_entry(p, masks, check_images), on_error)
        labels, flags = [e[0] for e in entries], [e[1] for e in entries]
        if problems:
            warnings.warn(f"skipped {len(problems)} malformed RIVAL10 entries in {folder}; "
                          f"first: {problems[0]}", stacklevel=2)
        if not paths:
            raise SemheatError(f"no usable RIVAL10 images in {folder}")
        super().__init__(paths, labels, size)
        flags = np.stack(flags)
        self.attributes, self.changed = flags[:, 0], flags[:, 1]
        self.skipped = problems

    @staticmethod
    def _read_entry(path: Path, masks: bool, check_images: bool):
        check_regular(path, "image file")  # a FIFO, a device or a dangling link: malformed
        label = wnid_label(path)
        flags = read_attr_labels(sidecar(path, "_attr_labels.npy"))
        if masks and not sidecar(path, "_attr_dict.pkl").is_file():
            raise SemheatError(f"missing attribute masks {sidecar(path, '_attr_dict.pkl')}")
        if check_images:
            _image_wh(path)
        return label, flags

    def masks(self, i: int, aligned: bool = True) -> dict[str, np.ndarray]:
        """Attribute masks of item ``i`` (see :func:`image_masks`), on the item's
        ``size x size`` pixels when ``aligned``."""
        return image_masks(self.paths[i], self.size if aligned else None, aligned)


def image_masks(path, size: int | None = None, aligned: bool = True) -> dict[str, np.ndarray]:
    """Attribute masks of the RIVAL10 image ``path``: name -> ``bool H x W`` (the attributes
    the file has, and usually ``"entire-object"``). ``aligned`` maps them onto the image's
    pixels as :func:`~.images.load_image` returns them at ``size``; otherwise they keep their
    stored resolution. The pickle is read with a loader that refuses to run code."""
    path = Path(path)
    pkl = sidecar(path, "_attr_dict.pkl")
    raw = load_str_dict(pkl)
    out = {name: decode_mask(value, f"mask {name!r} in {pkl}") for name, value in raw.items()}
    if aligned:
        wh = _image_wh(path)
        out = {name: fit_mask(m, wh, size) for name, m in out.items()}
    return out


def _image_wh(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image from its header, or a :class:`SemheatError` naming it."""
    return image_size(path)
