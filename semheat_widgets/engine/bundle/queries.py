"""What the widgets ask of a bundle's records: filters (masks), sorted and paged queries, the
records behind a heatmap cell, a few rows as dicts, and string columns as category codes.

They read a few cached integer columns and the memory-mapped score matrix, never turning
records into Python objects; the :class:`~.core.Bundle` methods of the same names call them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from ...arguments import as_indices, as_int, choice
from ...errors import SemheatError, SemheatTypeError
from ..heatmaps import KINDS
from .schema import SPLITS, column_values
from .open_vocabulary import concept_scores

CATEGORICAL = ("split", "perturbation", "fault", "fault_paper", "probe_verdict",
               "oracle_verdict", "heatmap_verdict", "gt_fault", "probe_fault", "defect")

@dataclass
class Selection:
    """The answer to a query: record indices in order, and how many matched in total."""

    indices: np.ndarray
    total: int
    sort_values: np.ndarray | None = None


def category_codes(bundle, name: str) -> tuple[np.ndarray, list[str]]:
    """Column ``name`` as int32 codes and its sorted categories (uncached: see
    :meth:`.core.Bundle.codes`)."""
    coded = _arrow_codes(bundle.records.column(name)) if bundle.has_column(name) else None
    if coded is None:
        values = bundle.column(name).astype(str)
        cats, codes = np.unique(values, return_inverse=True)
        coded = (codes.astype(np.int32), cats.tolist())
    return coded


def _arrow_codes(col) -> tuple[np.ndarray, list[str]] | None:
    """What ``np.unique(values, return_inverse=True)`` gives for a string column without nulls
    (sorted distinct values, and each record's index among them), from Arrow's dictionary
    encoding: the strings are compared once per distinct value, not once per record. None for
    other columns (the caller falls back to the NumPy path)."""
    typ = col.type
    plain = pa.types.is_string(typ) or pa.types.is_large_string(typ)
    coded = pa.types.is_dictionary(typ) and (pa.types.is_string(typ.value_type) or
                                             pa.types.is_large_string(typ.value_type))
    if not (plain or coded) or col.null_count or len(col) == 0:
        return None
    enc = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if plain:
        enc = enc.dictionary_encode()
    if enc.dictionary.null_count:
        return None
    words = np.array(enc.dictionary.to_pylist(), dtype=object).astype(str)
    cats, rank = np.unique(words, return_inverse=True)  # a dictionary may repeat a value
    codes = rank.astype(np.int32)[column_values(enc.indices)]
    used = np.bincount(codes, minlength=len(cats)) > 0
    if not used.all():  # values only the dictionary holds are no categories
        codes = (np.cumsum(used) - 1).astype(np.int32)[codes]
        cats = cats[used]
    return codes, cats.tolist()


def mask(bundle, filters: dict) -> np.ndarray:
    """The records matching every ``column: value`` (or ``column: [values]``) of ``filters``."""
    m = np.ones(bundle.n, dtype=bool)
    for key, value in filters.items():
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple, set)) else [value]
        if key in ("perturbation", "split"):
            _check_values(bundle, key, values)
        if key in CATEGORICAL:
            codes, cats = bundle.codes(key)
            wanted = [cats.index(v) for v in values if v in cats]
            m &= np.isin(codes, wanted)
        else:
            m &= np.isin(bundle.column(key), list(values))
    return m


def _check_values(bundle, key: str, values) -> None:
    """``split=`` must name a split and ``perturbation=`` one this bundle holds:
    a typo must not quietly give an empty heatmap."""
    known = list(SPLITS) if key == "split" else bundle.codes("perturbation")[1]
    for v in values:
        if v not in known:
            what = "split" if key == "split" else "perturbation"
            raise SemheatError(f"unknown {what} {v!r}; this bundle has {known}")


def query(bundle, where: dict, filters: dict, sort_by, descending: bool, standardized: bool,
          offset, limit) -> Selection:
    """:meth:`.core.Bundle.query` (see there): ``where`` holds its ``prediction``, ``label``
    and ``correct``, ``filters`` the column filters (``perturbation`` and ``split`` first)."""
    offset = as_int(offset, "offset", minimum=0)
    limit = None if limit is None else as_int(limit, "limit", minimum=0)
    for key in ("prediction", "label"):
        if where[key] is not None:
            as_int(where[key], key, minimum=0, maximum=len(bundle.classes) - 1)
    if sort_by is not None and not isinstance(sort_by, str):
        raise SemheatTypeError(f"sort_by must be a concept or column name, got {sort_by!r}")
    m = mask(bundle, filters)
    for key in ("prediction", "label"):
        if where[key] is not None:
            m &= bundle.column(key) == where[key]
    if where["correct"] is not None:
        m &= bundle.column("correct") == bool(where["correct"])
    idx = np.flatnonzero(m)
    values = None
    if sort_by is not None and len(idx):
        if sort_by in bundle.concept_names:
            j = bundle.concept_names.index(sort_by)
            raw = concept_scores(bundle, j, idx)
            st = bundle.standardizer
            values = (raw - st.mean[j]) / st.std[j] if standardized else np.asarray(raw)
        else:
            values = np.asarray(bundle.column(sort_by))[idx]
        if values.dtype.kind in "OUSb":  # strings and flags: plain order, then reversed
            order = np.argsort(values, kind="stable")
            order = order[::-1] if descending else order
        else:
            order = np.argsort(-values if descending else values, kind="stable")
        idx, values = idx[order], values[order]
    total = len(idx)
    stop = None if limit is None else offset + limit
    return Selection(idx[offset:stop], total,
                     None if values is None else values[offset:stop])


def cell_records(bundle, heatmap_kind, row, concept) -> dict:
    """The query arguments of :meth:`.core.Bundle.cell_query` (see there) for one cell."""
    if not isinstance(heatmap_kind, str):
        raise SemheatTypeError(f"heatmap_kind must be a string, got {heatmap_kind!r}")
    choice(heatmap_kind.removeprefix("binarized_"), KINDS, "heatmap kind")
    k = bundle.classes.index(choice(row, bundle.classes, "class (row)"))
    kind = heatmap_kind.removeprefix("binarized_")
    if concept is not None and not isinstance(concept, str):
        raise SemheatTypeError(f"concept must be a concept name, got {concept!r}")
    return {
        "ground_truth": dict(label=k), "output": dict(prediction=k),
        "correct": dict(prediction=k, correct=True),
        "incorrect": dict(prediction=k, correct=False),
        "misclassified_from": dict(label=k, correct=False),
        "differential": dict(prediction=k, correct=False),
        "gt_minus_output": dict(prediction=k, correct=False),
    }[kind]


def rows(records: pa.Table, indices, columns: Sequence[str] | None) -> list[dict]:
    """The ``records`` at ``indices`` as dicts, only ``columns`` (those that exist) if given."""
    idx = np.ascontiguousarray(as_indices(indices, records.num_rows, "rows indices"), np.int64)
    table = records
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    # the index array from its buffer: pa.array(ndarray) imports pandas (0.3 s, once)
    return table.take(pa.Array.from_buffers(pa.int64(), len(idx),
                                            [None, pa.py_buffer(idx)])).to_pylist()
