"""The toy world's inputs, rendered once and shared by every bundle built from them.

A toy world analyses each classifier of the fault zoo on the same test set (fresh natural
scenes plus the tie-breaking shift) with a reference set from its own training distribution
(the clean and head-fault classifiers share one). An input set is rendered once, kept in the
world's ``inputs/`` folder (``.npy`` files, no pickle) with what every bundle needs of it — the
VLM's embeddings of its images — and removed when the whole world is built. The ground truth
asks the clean classifier only about a bundle's mistakes (:func:`new_mistakes`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import TensorDataset

from ..data.toy.dataset import ToyDataset, render_images
from ..data.toy.world import ToyWorld
from ..safe_io import TEMP_MARKER, check_regular, temp_dir_for

FIELDS = ("images", "labels", "attributes", "domain", "image_emb")


@dataclass
class ToyInputs:
    """Rendered images (``uint8 N x 3 x H x W``) with their labels, attribute flags, domain
    and the VLM's embeddings (one entry per input)."""

    images: torch.Tensor
    labels: np.ndarray
    attributes: np.ndarray
    domain: np.ndarray
    image_emb: np.ndarray

    def dataset(self) -> TensorDataset:
        return TensorDataset(self.images, torch.from_numpy(self.labels))

    def __len__(self) -> int:
        return len(self.labels)

    def __add__(self, other: "ToyInputs") -> "ToyInputs":
        return ToyInputs(torch.cat([self.images, other.images]),
                         *(np.concatenate([getattr(self, f), getattr(other, f)])
                           for f in FIELDS[1:]))


def render(parts: list[tuple[str, ToyWorld, int]], vlm, progress: bool = False,
           batch_size: int = 128) -> ToyInputs:
    """Render ``(domain, world, count)`` parts and embed their images with the VLM."""
    data = [(d, ToyDataset(w, 0, n)) for d, w, n in parts if n]
    images = torch.cat([torch.from_numpy(render_images(x.world, x.start, x.count,
                                                       progress=progress)).permute(0, 3, 1, 2)
                        for _, x in data]).contiguous()
    return ToyInputs(images, np.concatenate([x.labels for _, x in data]),
                     np.concatenate([x.attributes for _, x in data]),
                     np.concatenate([np.full(len(x), d) for d, x in data]),
                     vlm.encode_images(images, batch_size=batch_size).numpy().astype(np.float32))


def new_mistakes(bundle, inputs: ToyInputs, clean, batch_size: int = 128) -> np.ndarray:
    """Per record of ``bundle`` (analysed on ``inputs``, reference first): a natural input that
    its classifier gets wrong and the clean classifier gets right — the mistakes a fault of
    the zoo made. The clean classifier is run on those mistakes only."""
    wrong = bundle.mask(perturbation="natural") & ~bundle.column("correct").astype(bool)
    src = bundle.column("source_id")[wrong]
    right = np.zeros(len(src), bool)
    for s in range(0, len(src), batch_size):
        rows = src[s:s + batch_size]
        with torch.inference_mode():
            logits = clean(inputs.images[rows].to(clean.device))
        right[s:s + batch_size] = logits.argmax(1).cpu().numpy() == inputs.labels[rows]
    out = np.zeros(bundle.n, bool)
    out[np.flatnonzero(wrong)[right]] = True
    return out


def load(folder: Path) -> ToyInputs | None:
    """A set saved by :func:`save` (None when it is not there or incomplete)."""
    try:
        arrays = {f: np.load(check_regular(folder / f"{f}.npy"), allow_pickle=False)
                  for f in FIELDS}
    except Exception:  # missing or damaged: render it again
        return None
    if len({len(a) for a in arrays.values()}) != 1:
        return None
    return ToyInputs(torch.from_numpy(arrays.pop("images")), **arrays)


def save(inputs: ToyInputs, folder: Path) -> None:
    """Write ``inputs`` into ``folder`` atomically (built beside it, renamed into place)."""
    tmp = temp_dir_for(folder)
    try:
        for f in FIELDS:
            value = getattr(inputs, f)
            np.save(tmp / f"{f}.npy", value.numpy() if f == "images" else np.asarray(value),
                    allow_pickle=False)
        (tmp / TEMP_MARKER).unlink()
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def cached(folder: Path, parts, vlm, progress: bool = False) -> ToyInputs:
    """The input set kept in ``folder``, rendered (and kept) on first use."""
    found = load(folder)
    if found is None:
        found = render(parts, vlm, progress)
        save(found, folder)
    return found
