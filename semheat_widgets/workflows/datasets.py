"""Datasets on disk for ``semheat analyze``: ``rival10:DIR`` or ``folder:DIR``, with their
classes, concepts and class prompts, and the held-out reference share of the train split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch.utils.data import Subset

from ..data.names import RIVAL10_ATTRIBUTES
from ..data.rival10_prompts import RIVAL10_CLASS_PROMPTS, RIVAL10_PROMPTS
from ..engine.concepts.bank import ConceptBank, default_class_prompts
from ..errors import SemheatError
from ..jobs import mentioning

FOLDER_TRAIN_SHARE = 0.7  # an image folder is split 70/30 into train and test (seeded)


def rival10_concepts(templates=("{}",)) -> ConceptBank:
    """The 18 RIVAL10 attributes as a concept bank, with the project's prompts."""
    return ConceptBank([(name, RIVAL10_PROMPTS[name]) for name in RIVAL10_ATTRIBUTES],
                       templates=templates)


@dataclass
class DataSpec:
    train: object
    test: object
    classes: list[str]
    concepts: ConceptBank
    class_prompts: dict[str, list[str]]
    train_labels: np.ndarray | None = None
    train_attributes: np.ndarray | None = None  # bool N_train x C, aligned with ``train``
    test_attributes: np.ndarray | None = None


def load_data(spec: str, size: int = 224, attributes_csv=None,
              concepts: list[str] | None = None) -> DataSpec:
    """``rival10:DIR`` or ``folder:DIR`` -> train/test datasets, classes and concepts.

    ``folder:DIR`` is an ImageFolder tree ``DIR/<class>/<image>``, split
    :data:`FOLDER_TRAIN_SHARE` / the rest into train and test (seeded); its concepts are the
    columns of ``attributes_csv`` (0/1 per image, paths relative to ``DIR``) or the free-text
    ``concepts``.
    """
    source, _, where = spec.partition(":")
    if not where:
        raise SemheatError(f"data must look like rival10:DIR or folder:DIR, got {spec!r}")
    if source == "rival10":
        from ..data.rival10 import Rival10Dataset

        train = Rival10Dataset(where, "train", size=size, on_error="skip", check_images=True)
        test = Rival10Dataset(where, "test", size=size, on_error="skip", check_images=True)
        return DataSpec(train, test, list(train.classes), rival10_concepts(),
                        dict(RIVAL10_CLASS_PROMPTS), train.labels, train.attributes,
                        test.attributes)
    if source == "folder":
        from ..data.folder import ImageFolderDataset

        full = ImageFolderDataset(where, size=size, attributes_csv=attributes_csv,
                                  on_error="skip", check_images=True)
        names = list(full.attribute_names) or list(concepts or [])
        if not names:
            raise mentioning("folder data needs concept names: give attributes_csv (a CSV "
                             "whose columns name them) or concepts", "attributes_csv",
                             "concepts")
        order = np.random.default_rng(0).permutation(len(full))
        cut = int(round(FOLDER_TRAIN_SHARE * len(full)))
        tr, te = np.sort(order[:cut]), np.sort(order[cut:])
        attrs = full.attributes
        bank = ConceptBank([(n, [n, f"a photo of something {n}"]) for n in names])
        classes = list(full.classes)
        return DataSpec(Subset(full, tr.tolist()), Subset(full, te.tolist()), classes, bank,
                        default_class_prompts(classes), full.labels[tr],
                        None if attrs is None else attrs[tr], None if attrs is None else attrs[te])
    raise SemheatError(f"unknown data source {source!r}: use rival10:DIR or folder:DIR")


def reference_indices(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """A stratified, seeded share of the train split held out as the reference set: at least
    two inputs of every class (one to fit on, one to calibrate on), sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        take = min(len(members), max(2, int(round(fraction * len(members)))))
        chosen.append(rng.choice(members, size=take, replace=False))
    return np.sort(np.concatenate(chosen))
