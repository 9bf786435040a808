"""A small fake RIVAL10 tree in the published layout, for tests (no downloads).

Every class gets ``n_per_class`` images per split, alternating its two wnids; every
``grayscale_every``-th image is grayscale and one name has extra underscores. With
``malformed=True`` the *train* split also gets three bad entries: an image without its
``_attr_labels.npy``, one with an unknown wnid and a corrupt JPEG (whose sidecars are fine).
"""

from __future__ import annotations

import base64
import io
import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from semheat_widgets.data.names import RIVAL10_ATTRIBUTES, RIVAL10_CLASSES
from semheat_widgets.data.rival10 import RIVAL10_WNIDS

WNIDS = {label: [w for w, lab in RIVAL10_WNIDS.items() if lab == label]
         for label in range(len(RIVAL10_CLASSES))}
IMAGE_WH = (40, 30)  # not square, so resizing and cropping are exercised


@dataclass
class FakeEntry:
    path: Path
    label: int
    attributes: np.ndarray  # bool 18, row 0 of the .npy
    changed: np.ndarray  # bool 18, row 1
    grayscale: bool
    mask_box: tuple[int, int, int, int]  # (left, top, right, bottom) of every attribute mask


@dataclass
class FakeRival10:
    root: Path  # the RIVAL10 folder
    entries: dict[str, list[FakeEntry]] = field(default_factory=dict)  # good entries, sorted
    bad: dict[str, Path] = field(default_factory=dict)  # kind -> image path (train split)
    corrupt_entry: FakeEntry | None = None  # the corrupt JPEG: valid sidecars, label 4


def _png_b64(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(mask.astype(np.uint8) * 255).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _write_entry(folder: Path, stem: str, rng, grayscale: bool, label: int) -> FakeEntry:
    w, h = IMAGE_WH
    colour = np.array([25 * label, 255 - 20 * label, 120], np.uint8)
    pixels = np.clip(colour + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels)
    (image.convert("L") if grayscale else image).save(folder / f"{stem}.JPEG", quality=90)
    flags = rng.integers(0, 2, (2, len(RIVAL10_ATTRIBUTES)))
    np.save(folder / f"{stem}_attr_labels.npy", flags)
    box = (int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2)), w - 4, h - 3)
    mask = np.zeros((h, w), bool)
    mask[box[1]:box[3], box[0]:box[2]] = True
    present = [a for a, f in zip(RIVAL10_ATTRIBUTES, flags[0], strict=True) if f]
    masks = {a: _png_b64(mask) for a in present + ["entire-object"]}
    with open(folder / f"{stem}_attr_dict.pkl", "wb") as f:
        pickle.dump(masks, f)
    Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{stem}_merged_mask.JPEG")
    object_dir = folder.parent / "entire_object_masks"
    Image.fromarray(mask.astype(np.uint8) * 255).save(object_dir / f"{stem}.JPEG")
    return FakeEntry(folder / f"{stem}.JPEG", label, flags[0].astype(bool),
                     flags[1].astype(bool), grayscale, box)


def _write_meta(root: Path) -> None:
    meta = root / "meta"
    meta.mkdir(parents=True, exist_ok=True)
    wnid_to_class = {w: f"imagenet-{w}" for w in RIVAL10_WNIDS}
    mappings = {f"imagenet-{w}": [RIVAL10_CLASSES[lab], lab] for w, lab in RIVAL10_WNIDS.items()}
    (meta / "wnid_to_class.json").write_text(json.dumps(wnid_to_class, indent=1))
    (meta / "label_mappings.json").write_text(json.dumps(mappings, indent=1))


def make_fake_rival10(root, n_per_class: int = 2, splits=("train", "test"),
                      grayscale_every: int = 3, malformed: bool = True,
                      seed: int = 0) -> FakeRival10:
    """Write a fake ``root/RIVAL10`` tree and return what the loader should find in it."""
    rival = Path(root) / "RIVAL10"
    rng = np.random.default_rng(seed)
    fake = FakeRival10(rival)
    _write_meta(rival)
    for split in splits:
        folder = rival / split / "ordinary"
        folder.mkdir(parents=True)
        (rival / split / "entire_object_masks").mkdir()
        entries, k = [], 0
        for label in range(len(RIVAL10_CLASSES)):
            for j in range(n_per_class):
                name = f"{1000 + j}_extra_part" if j == 1 else str(1000 + j)
                stem = f"{WNIDS[label][j % 2]}_{name}"
                grey = grayscale_every > 0 and k % grayscale_every == 0
                entries.append(_write_entry(folder, stem, rng, grey, label))
                k += 1
        if malformed and split == "train":
            missing = _write_entry(folder, f"{WNIDS[0][0]}_9001", rng, False, 0)
            missing.path.with_name(f"{WNIDS[0][0]}_9001_attr_labels.npy").unlink()
            _write_entry(folder, "n99999999_9002", rng, False, 0)
            corrupt = _write_entry(folder, f"{WNIDS[4][0]}_9003", rng, False, 4)
            corrupt.path.write_bytes(b"this is not a jpeg")
            fake.bad = {"missing_npy": missing.path, "corrupt": corrupt.path,
                        "unknown_wnid": folder / "n99999999_9002.JPEG"}
            fake.corrupt_entry = corrupt
        fake.entries[split] = sorted(entries, key=lambda e: e.path.name)
    return fake
