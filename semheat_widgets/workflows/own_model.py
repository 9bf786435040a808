"""``semheat_widgets.analyze(model, data, ...)``: your classifier, your data, one call.

    import semheat_widgets as sw
    bundle = sw.analyze(model, "digits/", concepts=["loop", "straight line"], vlm="toy")
    sw.Explorer(bundle)

``model``: any ``nn.Module`` classifier (split by :class:`~..engine.models.classifier.ModelSplit`:
``head=``, ``features=``, ``output=``, ``weights=``, ``mean=``/``std=``/``input_size=`` are
passed on), a ready ``ModelSplit``, or a classifier id of the registry.
``data``: a torch ``Dataset`` or ``DataLoader`` yielding ``(image, label)`` — images as PIL
images (any mode), tensors or arrays of any size and layout —, an image folder
``DIR/<class>/<image>`` (a path), ``(images, labels)`` arrays, or a list of ``(image, label)``.
Everything is converted to RGB 0..1 and resized (shorter side, centre crop) to one size — the
classifier's ``input_size`` when known, else the first image's — and each model then applies
its own preprocessing. ``classes``: from the dataset (``.classes``) when it has them, else
``"0" .. "K-1"``. ``concepts``: a list of names, a dict ``name -> prompt(s)`` or a
``ConceptBank``. ``vlm``: a :class:`~..engine.models.vlm.VLM` or an id (``"toy"``: the toy world's
tiny CLIP, offline; ``"open_clip:ViT-B-32:none"``: random weights; ``open_clip:ARCH:PATH``: a
local checkpoint).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..engine.models.classifier import ModelSplit
from ..engine.concepts.bank import as_concept_bank, check_class_names, default_class_prompts
from ..engine.models.device import resolve_device
from ..engine.extract.inputs import ArrayImages, PreparedImages, image_tensor
from ..engine.pipeline import AnalysisConfig, analyze as engine_analyze, check_labels
from ..errors import SemheatError

ATTACK_LIMIT = 200  # natural inputs attacked (FGSM, PGD) by default: enough to calibrate on


def _inner_attr(dataset, name: str):
    """``dataset.<name>``, looking through ``Subset``/wrappers (``.dataset``)."""
    seen = 0
    while dataset is not None and seen < 8:
        value = getattr(dataset, name, None)
        if value is not None:
            return value
        dataset, seen = getattr(dataset, "dataset", None), seen + 1
    return None


def known_labels(dataset) -> np.ndarray | None:
    """The labels of every item when the dataset lists them (``targets`` / ``labels``),
    through ``Subset``; None otherwise (they are then read during the analysis)."""
    if hasattr(dataset, "indices") and hasattr(dataset, "dataset"):
        inner = known_labels(dataset.dataset)
        return None if inner is None else inner[np.asarray(dataset.indices, dtype=np.int64)]
    for name in ("targets", "labels"):
        values = getattr(dataset, name, None)
        if values is None:
            continue
        try:
            arr = np.asarray(values)
        except Exception:  # noqa: BLE001 - anything that is not an array of labels
            return None
        if arr.ndim == 1 and arr.dtype.kind in "iu" and len(arr) == len(dataset):
            return arr.astype(np.int64)
    return None


def as_dataset(data, labels=None):
    """``(dataset, batch_size or None, paths or None)`` from what a user has (see module)."""
    if isinstance(data, (str, Path)):
        from ..data.folder import ImageFolderDataset

        folder = Path(data)
        if not folder.is_dir():
            raise SemheatError(f"{folder} is not a folder of images (DIR/<class>/<image>)")
        ds = ImageFolderDataset(folder, size=None, on_error="skip", check_images=True)
        return ds, None, [str(p) for p in ds.paths]
    if isinstance(data, DataLoader):
        inner = data.dataset
        if isinstance(inner, IterableDataset) or not hasattr(inner, "__getitem__"):
            raise SemheatError("the DataLoader's dataset cannot be indexed (an "
                               "IterableDataset); pass a map-style Dataset or (images, labels)")
        return inner, data.batch_size, None
    if isinstance(data, tuple) and len(data) == 2 and not isinstance(data[1], (int, str)):
        return ArrayImages(*data), None, None
    if isinstance(data, (np.ndarray, torch.Tensor)):
        return ArrayImages(data, labels), None, None
    if isinstance(data, (Dataset, list)) or (hasattr(data, "__getitem__") and
                                             hasattr(data, "__len__")):
        return data, None, None
    raise SemheatError(f"data must be a Dataset, a DataLoader, an image folder path or "
                       f"(images, labels) arrays, got {type(data).__name__}")


def as_split(model, device=None, **split_kwargs) -> ModelSplit:
    if isinstance(model, ModelSplit):
        return model
    if isinstance(model, str):
        from ..engine.models.registry import load_classifier

        return load_classifier(model, device)
    if not isinstance(model, nn.Module):
        raise SemheatError(f"model must be a torch nn.Module, a ModelSplit or a classifier id, "
                           f"got {type(model).__name__}")
    return ModelSplit(model, name=split_kwargs.pop("name", None) or type(model).__name__,
                      **split_kwargs)


def analyze(model, data, classes=None, concepts=None, vlm="toy", *, labels=None,
            class_prompts=None, head=None, features=None, output=None, weights=None,
            mean=None, std=None, input_size=None, size=None, batch_size=None,
            attack_limit: int | None = ATTACK_LIMIT, config: AnalysisConfig | None = None,
            device=None, name="bundle", save_to=None, overwrite=False, progress=True):
    """Analyse ``model`` on ``data`` with ``concepts`` through ``vlm``; returns the
    :class:`~..engine.bundle.Bundle` (saved in ``save_to`` when given). See the module.

    ``size``: the side images are brought to before each model's own resize (default: the
    classifier's input size, else the first image's shorter side). ``attack_limit``: natural
    inputs attacked for the adversarial monitor (0: none). ``config`` overrides the analysis
    settings as a whole."""
    bank = as_concept_bank(concepts)  # cheap checks first
    dataset, loader_batch, paths = as_dataset(data, labels)
    if len(dataset) == 0:
        raise SemheatError("the dataset is empty: nothing to analyse")
    split = as_split(model, device, head=head, features=features, output=output,
                     weights=weights, mean=mean, std=std, input_size=input_size)
    if device is not None and resolve_device(device) != split.device:
        split = split.to(resolve_device(device))
    if isinstance(vlm, str):
        from ..engine.models.registry import load_vlm

        vlm = load_vlm(vlm, split.device)
    if classes is None:
        classes = _inner_attr(dataset, "classes")
    class_index = {}
    if classes is not None:
        classes = check_class_names(classes)
        class_index = {c: k for k, c in enumerate(classes)}
    first, _ = PreparedImages(dataset, 1).split_item(dataset[0])
    first = image_tensor(first)
    side = int(size or split.input_size or min(first.shape[-2:]))
    prepared = PreparedImages(dataset, side, mean=split.mean.flatten().tolist(),
                              std=split.std.flatten().tolist(), class_index=class_index,
                              labels=None if labels is None or isinstance(dataset, ArrayImages)
                              else labels)
    split.eval()
    split.resolve(prepared[0][0][None])  # the head, found on a real input: errors come early
    if classes is None:
        classes = [str(k) for k in range(split.num_classes)]
    if split.num_classes != len(classes):
        raise SemheatError(f"the classifier has {split.num_classes} outputs but {len(classes)} "
                           f"class names were given")
    given = np.asarray(labels) if labels is not None else known_labels(dataset)
    if given is not None:
        check_labels(np.asarray(given, dtype=np.int64), classes)
    cfg = config or AnalysisConfig(attack_limit=attack_limit,
                                   batch_size=batch_size or loader_batch or 64)
    extra = {"path": paths} if paths else None
    with warnings.catch_warnings():
        warnings.filterwarnings("once", message="the images look")
        return engine_analyze(split, vlm, prepared, classes=classes, concepts=bank,
                              class_prompts=class_prompts or default_class_prompts(classes),
                              config=cfg, name=name, extra_columns=extra, progress=progress,
                              save_to=save_to, overwrite=overwrite)
