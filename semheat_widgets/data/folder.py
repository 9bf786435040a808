"""Any ImageFolder-style tree ``root/<class>/<image>`` as a dataset, with optional attributes.

Classes are the sub-folders that hold at least one image (searched recursively), sorted by name;
hidden folders and files (names starting with ``.``) are ignored. Attribute flags may come from
a CSV file with a ``path`` column (relative to ``root``, ``/``-separated) and one 0/1 column per
attribute; it must have exactly one row per image in the tree.

Malformed entries (an image file that is not a regular file — a FIFO, a device, a dangling
link — and, with ``check_images=True``, an image whose header cannot be read or that is over
PIL's pixel limit, a decompression bomb) raise a :class:`SemheatError` naming the file by
default; with ``on_error="skip"`` they are left out (their CSV rows are still accepted) and one
warning says how many and why. An undecodable image that was not checked up front raises when
its item is loaded.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from ..errors import SemheatError
from ..safe_io import check_regular
from ..engine.image_files import image_size
from .images import IMAGE_SUFFIXES, ImageFilesDataset, keep_readable


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if not p.is_dir() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


class ImageFolderDataset(ImageFilesDataset):
    """Items ``(uint8 3 x size x size, label)``; ``.classes``, ``.paths``, ``.labels``, and
    ``.attributes`` (bool N x A, or ``None`` without a CSV) named by ``.attribute_names``;
    ``.skipped`` (the messages of entries left out with ``on_error="skip"``).
    ``check_images=True`` opens every image header up front; ``on_error`` is ``"raise"`` or
    ``"skip"`` (module docstring)."""

    def __init__(self, root, size: int = 224, attributes_csv=None, on_error: str = "raise",
                 check_images: bool = False):
        root = Path(root).expanduser()
        if not root.is_dir():
            raise SemheatError(f"image folder not found: {root}")
        classes, listed, paths, labels, problems = [], [], [], [], []
        folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        for folder in folders:
            images = _images_under(folder)
            listed += images
            usable, _, skipped = keep_readable(
                images, lambda p: image_size(p) if check_images else check_regular(p), on_error)
            problems += skipped
            if usable:
                paths += usable
                labels += [len(classes)] * len(usable)
                classes.append(folder.name)
        if problems:
            warnings.warn(f"skipped {len(problems)} unreadable images in {root}; "
                          f"first: {problems[0]}", stacklevel=2)
        if not paths:
            if listed:
                raise SemheatError(f"no usable images in {root}; first problem: {problems[0]}")
            raise SemheatError(f"no images found in {root}: expected an ImageFolder layout "
                               f"{root}/<class>/<image>")
        super().__init__(paths, labels, size)
        self.root, self.classes = root, tuple(classes)
        self.skipped = problems
        self.attribute_names: tuple[str, ...] = ()
        self.attributes: np.ndarray | None = None
        if attributes_csv is not None:
            # every listed image needs its row, skipped ones too; keep the rows of those used
            self.attribute_names, flags = read_attributes_csv(attributes_csv, root, listed)
            row = {p: i for i, p in enumerate(listed)}
            self.attributes = flags[[row[p] for p in self.paths]]


def read_attributes_csv(csv_path, root: Path, paths: list[Path]):
    """``(names, bool N x A)`` from a CSV of ``path`` plus 0/1 attribute columns, in the order
    of ``paths``; every image needs exactly one row and every row must name an image."""
    csv_path = Path(csv_path).expanduser()
    index = {p.relative_to(root).as_posix(): i for i, p in enumerate(paths)}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in reader.fieldnames or ()]
            if "path" not in fields:
                raise SemheatError(f"{csv_path}: needs a 'path' column, has {fields}")
            names = tuple(c for c in fields if c != "path")
            if not names:
                raise SemheatError(f"{csv_path}: no attribute columns besides 'path'")
            reader.fieldnames = fields
            flags = np.zeros((len(paths), len(names)), bool)
            seen = np.zeros(len(paths), bool)
            for row in reader:
                line = reader.line_num
                rel = Path((row["path"] or "").strip()).as_posix()
                if rel not in index:
                    raise SemheatError(f"{csv_path} line {line}: {rel!r} is not an image "
                                       f"under {root}")
                i = index[rel]
                if seen[i]:
                    raise SemheatError(f"{csv_path} line {line}: {rel!r} appears twice")
                seen[i] = True
                for j, name in enumerate(names):
                    value = (row[name] or "").strip()
                    if value not in ("0", "1"):
                        raise SemheatError(f"{csv_path} line {line}: {name} must be 0 or 1, "
                                           f"got {value!r}")
                    flags[i, j] = value == "1"
    except FileNotFoundError:
        raise SemheatError(f"attributes CSV not found: {csv_path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SemheatError(f"cannot read attributes CSV {csv_path}: {exc}") from None
    if not seen.all():
        missing = [p for p, i in index.items() if not seen[i]]
        raise SemheatError(f"{csv_path}: no row for {len(missing)} image(s), e.g. {missing[0]!r}")
    return names, flags
