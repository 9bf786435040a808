"""One pass over a dataset: classifier features and logits, VLM image embeddings, thumbnails.

Batches come from a ``DataLoader`` (workers, pinned memory on CUDA) in the dataset's order.
Results go straight into preallocated arrays — ``.npy`` files opened as memory maps when
``out_dir`` is given — so memory stays bounded however large the dataset. An optional
attack is applied to each batch before the forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ...errors import SemheatError
from ...safe_io import open_npy_memmap
from ..models.classifier import ModelSplit
from ..pixels import thumbnails
from ..bundle.store import ArrayStore
from ..models.vlm import VLM

FIELDS = ("features", "logits", "image_emb", "labels", "thumbs")


@dataclass
class Extracted:
    features: np.ndarray  # N x d float32
    logits: np.ndarray  # N x K float32
    image_emb: np.ndarray  # N x m float32, unit norm
    labels: np.ndarray  # N int64
    thumbs: np.ndarray  # N x t x t x 3 uint8

    def __len__(self) -> int:
        return len(self.labels)


def _allocate(out_dir: Path | None, name: str, shape, dtype):
    if out_dir is None:
        return np.zeros(shape, dtype)
    return open_npy_memmap(out_dir / f"{name}.npy", dtype, shape)


def _unwrap_worker_error(exc: Exception) -> Exception:
    """DataLoader workers re-raise with a multi-line traceback; keep the real message."""
    text = str(exc)
    if isinstance(exc, SemheatError) and text.startswith("Caught"):
        lines = [ln for ln in text.splitlines() if ln.strip()]
        last = lines[-1].split(": ", 1)[-1] if lines else text
        return SemheatError(last)
    return exc


def forward_batch(classifier: ModelSplit, vlm: VLM | None, images: torch.Tensor,
                  labels: torch.Tensor, attack=None, thumb_size: int = 64,
                  first: int = 0) -> dict[str, np.ndarray]:
    """One batch (already on the device) through attack, classifier and VLM: features,
    logits, image embeddings and thumbnails as numpy arrays (no ``image_emb`` when ``vlm`` is
    None). ``first`` numbers the batch's first input in the error raised for NaN or inf
    features. Shared by the local and Ray paths, so both give the same records."""
    if attack is not None:
        images = attack(classifier, images, labels)
    with torch.inference_mode():
        z, logits = classifier.features_and_logits(images)
    z, logits = z.float().flatten(1).cpu(), logits.float().cpu()
    if not (torch.isfinite(z).all() and torch.isfinite(logits).all()):
        raise SemheatError(f"the classifier produced NaN or inf features for inputs "
                           f"{first}..{first + len(images) - 1}")
    out = {"features": z.numpy(), "logits": logits.numpy(),
           "thumbs": thumbnails(images.detach(), thumb_size)}
    if vlm is not None:
        out["image_emb"] = vlm.encode_images(images, batch_size=images.shape[0]).numpy()
    return out


def extract(classifier: ModelSplit, vlm: VLM, dataset, *, batch_size: int = 128,
            num_workers: int = 0, out_dir=None, thumb_size: int = 64, attack=None,
            progress: bool = True, desc: str = "extract",
            image_embeddings: np.ndarray | None = None,
            into: ArrayStore | None = None, offset: int = 0) -> Extracted:
    """Run classifier and VLM over ``dataset`` (items ``(image tensor, label)``) once.

    ``attack`` (an :class:`~semheat_widgets.engine.extract.attacks.Attack`) perturbs every batch
    against ``classifier`` first. ``image_embeddings`` (one row per input, in order), when the
    caller already has the VLM's embeddings of these very images — several classifiers
    analysed on the same inputs — are used instead of running the VLM again. ``into``: the
    caller's :class:`~.bundle.store.ArrayStore` (e.g. the memory maps of a bundle being built)
    to write rows ``offset .. offset + len(dataset) - 1`` of, instead of allocating new arrays.
    """
    n = len(dataset)
    if n == 0:
        raise SemheatError("the dataset is empty: nothing to analyse")
    if image_embeddings is not None:
        if attack is not None:
            raise SemheatError("precomputed image embeddings cannot describe attacked images")
        if len(image_embeddings) != n:
            raise SemheatError(f"{len(image_embeddings)} precomputed image embeddings for {n} "
                               f"inputs")
    device = classifier.device
    out_dir = Path(out_dir) if out_dir is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda", persistent_workers=False)
    arrays: dict[str, np.ndarray] = {}
    start = 0
    classifier.eval()
    from tqdm.auto import tqdm

    bar = tqdm(total=n, desc=desc, unit="img", disable=not progress)
    try:
        for images, labels in loader:
            images = images.to(device, non_blocking=True)
            labels = torch.as_tensor(labels).to(device)
            out = forward_batch(classifier, vlm if image_embeddings is None else None, images,
                                labels, attack, thumb_size, start)
            out["labels"] = labels.cpu().numpy()
            stop = start + len(images)
            if image_embeddings is not None:
                out["image_emb"] = np.asarray(image_embeddings[start:stop], dtype=np.float32)
            if into is not None:
                for key, v in out.items():
                    into.write(key, offset + start, v)
            else:
                if not arrays:
                    arrays = {key: _allocate(out_dir, key, (n, *v.shape[1:]), v.dtype)
                              for key, v in out.items()}
                for key, v in out.items():
                    arrays[key][start:stop] = v
            start = stop
            bar.update(len(images))
    except SemheatError as exc:
        raise _unwrap_worker_error(exc) from None
    finally:
        bar.close()
    if start != n:
        raise SemheatError(f"the dataset yielded {start} items but reports length {n}")
    if into is not None:
        return Extracted(**{k: into[k][offset:offset + n] for k in FIELDS})
    for a in arrays.values():
        if isinstance(a, np.memmap):
            a.flush()
    return Extracted(**{k: arrays[k] for k in FIELDS})


extract.writes_into = True  # the pipeline may hand it its ArrayStore (see analyze)
