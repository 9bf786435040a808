"""Repair helpers: the generic moves after a fault is localized, each small.

- :func:`refit_head` — a head fault: keep the encoder, fit a new last layer on its features of
  a reference dataset (scikit-learn's logistic regression on cached features).
- :func:`concept_slice` / :func:`export_slice` — an encoder fault: the inputs of a class that
  show (or lack) the responsible concept, i.e. the slice to collect more of or to reweight, as
  record ids or as an image folder.
- fine-tuning on a dataset (e.g. one where a spurious tie breaks) is :func:`.fine_tune.fine_tune`,
  the resumable fine-tuning of ``semheat analyze``.

Check the repair with :meth:`~semheat_widgets.engine.bundle.Bundle.compare`.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..engine.bundle import Bundle
from ..engine.models.classifier import ModelSplit
from ..errors import SemheatError
from ..safe_io import check_replaceable, temp_dir_for, writer_lock

HEAD_C = 1.0  # the refitted head's inverse ridge strength (scikit-learn's default)


@torch.inference_mode()
def encoder_features(classifier: ModelSplit, dataset, batch_size: int = 256):
    """``(features N x d, labels N)`` of a dataset of ``(image, label)`` through the encoder."""
    zs, ys = [], []
    for images, labels in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        z, _ = classifier.features_and_logits(images.to(classifier.device))
        zs.append(z.float().cpu().numpy())
        ys.append(np.asarray(labels))
    if not zs:
        raise SemheatError("the reference dataset is empty")
    return np.concatenate(zs), np.concatenate(ys)


def refit_head(classifier: ModelSplit, reference_dataset, *, C: float = HEAD_C,
               name: str | None = None) -> ModelSplit:
    """A copy of ``classifier`` whose last linear layer is refit on the encoder's features of
    ``reference_dataset`` (multinomial logistic regression); the encoder is untouched."""
    from sklearn.linear_model import LogisticRegression

    if getattr(classifier, "head_name", None) is None:
        raise SemheatError("refit_head needs a classifier whose head is its last linear layer")
    z, y = encoder_features(classifier, reference_dataset)
    k = classifier.num_classes
    missing = sorted(set(range(k)) - set(np.unique(y).tolist()))
    if missing:
        raise SemheatError(f"the reference dataset has no inputs of class indices {missing}")
    fitted = LogisticRegression(C=C, max_iter=5000).fit(z, y)
    model = copy.deepcopy(classifier.model)
    head = torch.nn.Linear(z.shape[1], k)
    with torch.no_grad():
        head.weight.copy_(torch.as_tensor(fitted.coef_, dtype=torch.float32))
        head.bias.copy_(torch.as_tensor(fitted.intercept_, dtype=torch.float32))
    _set_module(model, classifier.head_name, head)
    out = ModelSplit(model, mean=tuple(classifier.mean.flatten().tolist()),
                     std=tuple(classifier.std.flatten().tolist()),
                     input_size=classifier.input_size,
                     name=name or f"{classifier.name}+refit-head")
    return out.to(classifier.device).eval()


def _set_module(model: torch.nn.Module, dotted: str, module: torch.nn.Module) -> None:
    parent = model
    *path, last = dotted.split(".")
    for part in path:
        parent = getattr(parent, part)
    setattr(parent, last, module)


def concept_slice(bundle: Bundle, cls: str, concept: str, *, shows: bool = True,
                  threshold: float = 0.0, split: str | None = None) -> np.ndarray:
    """Record indices of natural inputs of true class ``cls`` that show (z-score above
    ``threshold``) — or lack (``shows=False``: below) — ``concept``, strongest first."""
    if cls not in bundle.classes:
        raise SemheatError(f"unknown class {cls!r}")
    z = bundle.concept_column(concept)
    member = bundle.mask(perturbation="natural", split=split) & (
        bundle.column("label") == bundle.classes.index(cls))
    member &= (z > threshold) if shows else (z <= threshold)
    idx = np.flatnonzero(member)
    return idx[np.argsort(-z[idx] if shows else z[idx], kind="stable")]


def export_slice(bundle: Bundle, indices, dest) -> Path:
    """The thumbnails of ``indices`` as an image folder ``dest/<class>/<record id>.png`` (the
    ``folder:`` layout of ``semheat analyze``), written atomically into a new or empty folder."""
    import os

    dest = Path(dest)
    with writer_lock(dest):
        check_replaceable(dest, (), "an image folder")
        tmp = temp_dir_for(dest)
        try:
            for i in np.asarray(indices, dtype=np.int64):
                folder = tmp / bundle.classes[int(bundle.column("label")[i])]
                folder.mkdir(exist_ok=True)
                (folder / f"{int(bundle.column('id')[i])}.png").write_bytes(
                    bundle.thumbnail_png(int(i)))
            (tmp / ".semheat-temp").unlink()
            if dest.exists():
                dest.rmdir()  # checked above: empty
            os.replace(tmp, dest)
        except BaseException:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return dest
