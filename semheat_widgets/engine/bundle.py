"""The bundle: one analysis of a (classifier, VLM, dataset) triple, saved as a directory.

Layout (schema version 1)::

    manifest.json        format, schema version, classes, concepts, models, splits, figures
    records.parquet      one row per input: id, split, kind, source_id, label, prediction, ...
    arrays/<name>.npy    dense arrays (features, logits, image_emb, aligned, scores, thumbs, ...)
                         loaded as read-only memory maps
    state.safetensors    fitted state: aligner, concept and class embeddings, standardiser,
                         monitor reference rows, Mahalanobis statistics

Nothing is ever unpickled: NumPy arrays load with ``allow_pickle=False``, state with
safetensors, records with Arrow. Saving writes a hidden sibling directory first and renames it
into place, so a crash leaves either the old bundle or the new one, never half of one.

The query API answers what the widgets ask ("inputs predicted k that are wrong, sorted by
concept j") from a few cached integer columns and the memory-mapped score matrix, without
turning records into Python objects.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import SchemaVersionError, SemheatError
from .aligner import LinearAligner
from .heatmaps import (KINDS, ConfusionSums, Heatmap,
                       Standardizer, heatmap, single_heatmap)

FORMAT = "semheat-bundle"
SCHEMA_VERSION = 1
REQUIRED_COLUMNS = ("id", "split", "kind", "source_id", "label", "prediction", "correct")
CATEGORICAL = ("split", "kind", "fault", "oracle_verdict", "heatmap_verdict", "gt_fault",
               "defect")
SPLITS = ("fit", "calib", "eval")
ARRAY_NAME = re.compile(r"[A-Za-z0-9_]+")  # array files live in arrays/<name>.npy, nowhere else


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


@dataclass
class Selection:
    """The answer to a query: record indices in order, and how many matched in total."""

    indices: np.ndarray
    total: int
    sort_values: np.ndarray | None = None


class Bundle:
    """An analysis held in memory or memory-mapped from disk. See the module docstring."""

    def __init__(self, manifest: dict, records: pa.Table, arrays: dict[str, np.ndarray],
                 state: dict[str, np.ndarray], path: Path | None = None):
        self.manifest = manifest
        self.records = records
        self.arrays = arrays
        self.state = state
        self.path = Path(path) if path is not None else None
        self._columns: dict[str, np.ndarray] = {}
        self._categories: dict[str, tuple[np.ndarray, list[str]]] = {}
        self._extra: list[dict] = []  # concepts added after the bundle was built
        self._validate()

    # -- construction and validation -------------------------------------------------------
    @classmethod
    def create(cls, *, name: str, classes: Sequence[str], concepts: list[dict],
               columns: dict[str, np.ndarray | list], arrays: dict[str, np.ndarray],
               state: dict[str, np.ndarray], info: dict | None = None) -> "Bundle":
        manifest = {
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "name": name,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "classes": list(classes), "concepts": concepts, "n_records": len(columns["id"]),
            **(info or {}),
        }
        table = pa.table({k: pa.array(v) for k, v in columns.items()})
        return cls(manifest, table, arrays, state)

    def _validate(self):
        missing = [c for c in REQUIRED_COLUMNS if c not in self.records.column_names]
        if missing:
            raise SemheatError(f"bundle records lack columns {missing}")
        n = self.records.num_rows
        if self.manifest.get("n_records", n) != n:
            raise SemheatError(f"manifest says {self.manifest['n_records']} records, "
                               f"records hold {n}")
        for key, arr in self.arrays.items():
            if len(arr) != n:
                raise SemheatError(f"array {key!r} has {len(arr)} rows, expected {n}")
        if "scores" in self.arrays and self.arrays["scores"].shape[1] != len(
                self.manifest["concepts"]):
            raise SemheatError("the score matrix and the concept list disagree")

    # -- persistence -----------------------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        """Write the bundle atomically to ``path`` (a directory) and return it."""
        from safetensors.numpy import save_file

        path = Path(path).resolve()
        if path.exists() and not overwrite:
            raise SemheatError(f"{path} exists; pass overwrite=True to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
        arrays, concepts, state = self._merged_for_save()
        manifest = dict(self.manifest, concepts=concepts, n_records=self.n)
        manifest["arrays"] = {k: {"shape": list(a.shape), "dtype": str(a.dtype)}
                              for k, a in arrays.items()}
        try:
            (tmp / "arrays").mkdir(parents=True)
            pq.write_table(self.records, tmp / "records.parquet")
            for key, arr in arrays.items():
                _write_npy(tmp / "arrays" / f"{key}.npy", arr)
            save_file({k: np.ascontiguousarray(v) for k, v in state.items()},
                      str(tmp / "state.safetensors"))
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1,
                                                          default=_json_default))
            if path.exists():
                old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.path = path
        return path

    @classmethod
    def load(cls, path, mmap: bool = True) -> "Bundle":
        """Open a bundle directory (arrays memory-mapped read-only by default)."""
        from safetensors.numpy import load_file

        path = Path(path)
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise SemheatError(f"{path} is not a bundle (no manifest.json)")
        try:
            manifest = json.loads(manifest_path.read_text())
        except json.JSONDecodeError as exc:
            raise SemheatError(f"{manifest_path} is not valid JSON: {exc}") from None
        if manifest.get("format") != FORMAT:
            raise SemheatError(f"{path} is not a {FORMAT} (format {manifest.get('format')!r})")
        version = manifest.get("schema_version")
        if version != SCHEMA_VERSION:
            raise SchemaVersionError(f"{path} has bundle schema version {version}; this "
                                     f"semheat_widgets reads version {SCHEMA_VERSION} "
                                     f"(rebuild the bundle or change semheat_widgets)")
        missing = [k for k in ("classes", "concepts", "arrays") if k not in manifest]
        bad = [k for k in manifest.get("arrays", {}) if not ARRAY_NAME.fullmatch(str(k))]
        if missing or bad:
            raise SemheatError(f"{manifest_path} is damaged: missing {missing}, bad array names "
                               f"{bad}")
        try:
            records = pq.read_table(path / "records.parquet", memory_map=True)
            arrays = {}
            for key in manifest["arrays"]:
                arrays[key] = np.load(path / "arrays" / f"{key}.npy",
                                      mmap_mode="r" if mmap else None, allow_pickle=False)
            state = load_file(str(path / "state.safetensors"))
        except Exception as exc:  # OSError, ValueError, Arrow and safetensors errors alike
            raise SemheatError(f"cannot read bundle {path}: "
                               f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                               ) from None
        return cls(manifest, records, arrays, state, path)

    def _merged_for_save(self):
        """Arrays, concept list and state with runtime-added concepts folded in."""
        arrays = dict(self.arrays)
        concepts = list(self.manifest["concepts"])
        state = dict(self.state)
        if self._extra:
            extra_scores = np.stack([e["scores"] for e in self._extra], axis=1)
            arrays["scores"] = np.concatenate([np.asarray(self.arrays["scores"]),
                                               extra_scores.astype(np.float32)], axis=1)
            concepts += [{"name": e["name"], "prompts": e["prompts"]} for e in self._extra]
            state["concept_embeddings"] = np.concatenate(
                [self.state["concept_embeddings"], np.stack([e["vector"] for e in self._extra])])
            mean, std = self._extra_standardizer()
            state["standardizer.mean"], state["standardizer.std"] = mean, std
        return arrays, concepts, state

    # -- basic accessors -------------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.records.num_rows

    @property
    def name(self) -> str:
        return self.manifest.get("name", "bundle")

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    @property
    def concept_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["concepts"]] + [e["name"] for e in self._extra]

    @property
    def concept_prompts(self) -> dict[str, list[str]]:
        out = {c["name"]: list(c["prompts"]) for c in self.manifest["concepts"]}
        out.update({e["name"]: list(e["prompts"]) for e in self._extra})
        return out

    def column(self, name: str) -> np.ndarray:
        """A record column as a NumPy array (cached; categorical columns as strings)."""
        if name not in self._columns:
            if name not in self.records.column_names:
                raise SemheatError(f"bundle has no record column {name!r}")
            col = self.records.column(name)
            if pa.types.is_dictionary(col.type):
                col = col.cast(col.type.value_type)
            self._columns[name] = col.to_numpy(zero_copy_only=False)
        return self._columns[name]

    def has_column(self, name: str) -> bool:
        return name in self.records.column_names

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        """A string column as small integer codes plus its categories (fast filtering)."""
        if name not in self._categories:
            values = self.column(name).astype(str)
            cats, codes = np.unique(values, return_inverse=True)
            self._categories[name] = (codes.astype(np.int32), cats.tolist())
        return self._categories[name]

    def mask(self, **filters) -> np.ndarray:
        """Boolean mask of records matching ``column=value`` (or ``column=[values]``)."""
        m = np.ones(self.n, dtype=bool)
        for key, value in filters.items():
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple, set)) else [value]
            if key in CATEGORICAL:
                codes, cats = self.codes(key)
                wanted = [cats.index(v) for v in values if v in cats]
                m &= np.isin(codes, wanted)
            else:
                m &= np.isin(self.column(key), list(values))
        return m

    @property
    def standardizer(self) -> Standardizer:
        if self._extra:
            return Standardizer(*self._extra_standardizer())
        return Standardizer(self.state["standardizer.mean"], self.state["standardizer.std"])

    @property
    def aligner(self) -> LinearAligner:
        return LinearAligner.from_state(self.state)

    @property
    def concept_embeddings(self) -> np.ndarray:
        base = np.asarray(self.state["concept_embeddings"])
        if not self._extra:
            return base
        return np.concatenate([base, np.stack([e["vector"] for e in self._extra])])

    # -- scores ----------------------------------------------------------------------------
    def scores(self, rows=None) -> np.ndarray:
        """Raw concept scores ``cos(A z, t_j)`` (N x C, or the given rows), extras included."""
        base = self.arrays["scores"]
        block = base if rows is None else base[rows]
        if not self._extra:
            return block
        extra = np.stack([e["scores"] if rows is None else e["scores"][rows]
                          for e in self._extra], axis=1)
        return np.concatenate([np.asarray(block), extra], axis=1)

    def concept_column(self, concept: str, standardized: bool = True) -> np.ndarray:
        """All records' scores of one concept (a memory-map column read)."""
        names = self.concept_names
        if concept not in names:
            raise SemheatError(f"unknown concept {concept!r}")
        j = names.index(concept)
        c0 = self.arrays["scores"].shape[1]
        col = self.arrays["scores"][:, j] if j < c0 else self._extra[j - c0]["scores"]
        if standardized:
            st = self.standardizer
            col = (col - st.mean[j]) / st.std[j]
        return np.asarray(col)

    # -- heatmaps --------------------------------------------------------------------------
    def confusion(self, *, kind="natural", split=None) -> ConfusionSums:
        m = self.mask(kind=kind, split=split)
        idx = np.flatnonzero(m)
        labels, preds = self.column("label")[idx], self.column("prediction")[idx]
        if m.all():
            scores = self.scores()
        else:
            scores = self.scores(idx)
        return ConfusionSums.from_scores(scores, labels, preds, len(self.classes))

    def heatmap(self, kind: str = "differential", *, records="natural", split=None,
                standardized: bool = True) -> Heatmap:
        """One heatmap of ``kind`` over the chosen records (e.g. ``records="pgd"``)."""
        stats = self.confusion(kind=records, split=split)
        hm = heatmap(kind, stats, self.classes, self.concept_names,
                     self.standardizer if standardized else None)
        hm.meta.update(records=records, split=split)
        return hm

    def heatmaps(self, *, records="natural", split=None, standardized: bool = True
                 ) -> dict[str, Heatmap]:
        stats = self.confusion(kind=records, split=split)
        st = self.standardizer if standardized else None
        return {k: heatmap(k, stats, self.classes, self.concept_names, st) for k in KINDS}

    def single(self, i: int, standardized: bool = True) -> Heatmap:
        """The single-input heatmap of record ``i``."""
        label = self.classes[int(self.column("label")[i])]
        return single_heatmap(self.scores([i])[0], self.concept_names, label,
                              self.standardizer if standardized else None)

    # -- queries ---------------------------------------------------------------------------
    def query(self, *, prediction: int | None = None, label: int | None = None,
              correct: bool | None = None, records="natural", split=None,
              sort_by: str | None = None, descending: bool = True, standardized: bool = True,
              offset: int = 0, limit: int | None = None, **filters) -> Selection:
        """Record indices matching the filters, sorted by a concept or a numeric column."""
        m = self.mask(kind=records, split=split, **filters)
        if prediction is not None:
            m &= self.column("prediction") == prediction
        if label is not None:
            m &= self.column("label") == label
        if correct is not None:
            m &= self.column("correct") == bool(correct)
        idx = np.flatnonzero(m)
        values = None
        if sort_by is not None and len(idx):
            if sort_by in self.concept_names:
                j = self.concept_names.index(sort_by)
                c0 = self.arrays["scores"].shape[1]
                raw = (self.arrays["scores"][idx, j] if j < c0
                       else self._extra[j - c0]["scores"][idx])
                st = self.standardizer
                values = (raw - st.mean[j]) / st.std[j] if standardized else np.asarray(raw)
            else:
                values = np.asarray(self.column(sort_by))[idx]
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

    def cell_query(self, heatmap_kind: str, row: str, concept: str | None = None, *,
                   records="natural", split=None, **kwargs) -> Selection:
        """The inputs behind one heatmap cell, most extreme in ``concept`` first.

        For ``differential`` and ``incorrect`` cells these are the offending inputs: predicted
        ``row`` and wrong. For ``gt_minus_output`` the inputs wrongly predicted as ``row``.
        """
        k = self.classes.index(row) if row in self.classes else None
        if k is None:
            raise SemheatError(f"unknown class {row!r}")
        kind = heatmap_kind.removeprefix("binarized_")
        if kind not in KINDS:
            raise SemheatError(f"unknown heatmap kind {heatmap_kind!r}")
        where = {
            "ground_truth": dict(label=k), "output": dict(prediction=k),
            "correct": dict(prediction=k, correct=True),
            "incorrect": dict(prediction=k, correct=False),
            "misclassified_from": dict(label=k, correct=False),
            "differential": dict(prediction=k, correct=False),
            "gt_minus_output": dict(prediction=k, correct=False),
        }[kind]
        return self.query(**where, records=records, split=split, sort_by=concept, **kwargs)

    def rows(self, indices, columns: Sequence[str] | None = None) -> list[dict]:
        """Records at ``indices`` as dicts (only for the few shown on screen)."""
        table = self.records.take(pa.array(np.asarray(indices, dtype=np.int64)))
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        return table.to_pylist()

    def add_columns(self, columns: dict) -> None:
        """Add (or replace) record columns, one value per record."""
        for key, values in columns.items():
            if len(values) != self.n:
                raise SemheatError(f"column {key!r} has {len(values)} values for {self.n} "
                                   f"records")
            if key in self.records.column_names:
                self.records = self.records.drop_columns([key])
            self.records = self.records.append_column(key, pa.array(values))
            self._columns.pop(key, None)
            self._categories.pop(key, None)

    def thumbnail(self, i: int) -> np.ndarray:
        return np.asarray(self.arrays["thumbs"][i])

    def thumbnail_png(self, i: int) -> bytes:
        """Record ``i``'s thumbnail encoded as PNG (what the widgets and reports send)."""
        return png_bytes(self.thumbnail(i))

    # -- open vocabulary -------------------------------------------------------------------
    def add_concept(self, name: str, prompts: Sequence[str] | str | None = None, *, vlm=None,
                    vector: np.ndarray | None = None) -> int:
        """Add a free-text concept as a new column, scored from the cached aligned embeddings.

        Give the ``vlm`` (to embed the prompts) or a precomputed unit ``vector``. Returns the
        new column's index. Costs one pass over the aligned embeddings.
        """
        from .concepts import ConceptBank

        bank = ConceptBank()
        concept = bank.add(name, prompts)
        if concept.name in self.concept_names:
            raise SemheatError(f"concept {concept.name!r} already exists")
        if vector is None:
            if vlm is None:
                raise SemheatError("add_concept needs vlm= (to embed the prompts) or vector=")
            vector = bank.embed(vlm)[0]
        vector = np.asarray(vector, dtype=np.float32).ravel()
        aligned = self.arrays["aligned"]
        if vector.shape[0] != aligned.shape[1]:
            raise SemheatError(f"concept vector has {vector.shape[0]} dims, the aligned "
                               f"embeddings {aligned.shape[1]}")
        scores = np.empty(self.n, np.float32)
        chunk = 262144
        for s in range(0, self.n, chunk):
            scores[s:s + chunk] = aligned[s:s + chunk] @ vector
        ref = scores[self.mask(kind="natural", split="fit")].astype(np.float64)
        if len(ref) < 2:
            raise SemheatError("the bundle has too few natural 'fit' records to standardise")
        self._extra.append({"name": concept.name, "prompts": list(concept.prompts),
                            "vector": vector, "scores": scores,
                            "mean": ref.mean(), "std": ref.std()})
        return len(self.concept_names) - 1

    def _extra_standardizer(self):
        mean = np.r_[self.state["standardizer.mean"], [e["mean"] for e in self._extra]]
        std = np.r_[self.state["standardizer.std"], [e["std"] for e in self._extra]]
        return mean.astype(np.float32), std.astype(np.float32)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return (f"<Bundle {self.name!r}: {self.n} records, {len(self.classes)} classes, "
                f"{len(self.concept_names)} concepts{where}>")


def _write_npy(path: Path, arr: np.ndarray, chunk: int = 65536) -> None:
    """Write ``arr`` (possibly a memory map) as .npy in row chunks (bounded memory)."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=arr.dtype, shape=arr.shape)
    for s in range(0, len(arr), chunk):
        out[s:s + chunk] = arr[s:s + chunk]
    out.flush()
    del out


def png_bytes(image: np.ndarray) -> bytes:
    """``uint8 H x W x 3`` as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
