"""The bundle: one analysis of a (classifier, VLM, dataset) triple, saved as a directory.

Layout (schema version 1)::

    manifest.json        format, schema version, classes, concepts, models, splits, figures
    records.parquet      one row per input: id, split, perturbation, source_id, label,
                         prediction, correct, detector scores, verdicts, ...
    arrays/<name>.npy    dense arrays (features, logits, image_emb, aligned, scores, thumbs, ...)
                         loaded as read-only memory maps
    state.safetensors    fitted state: aligner, concept and class embeddings, standardiser,
                         detectors (``detector.[task.]name.*``, see :mod:`.detect.protocol`)

Fitted state is read through typed accessors (:attr:`Bundle.aligner`, :meth:`Bundle.monitor`,
:meth:`Bundle.detector`, :attr:`Bundle.class_embeddings`, :attr:`Bundle.models`), never
through string keys in callers.

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
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..arguments import as_index, as_indices, as_int, as_path, choice
from ..errors import SemheatError, SemheatTypeError
from ..safe_io import (_file_kind, atomic_write, check_replaceable, needs_recovery,
                       open_npy_memmap, parse_json, publish_dir, recover, recover_for_reading,
                       space_errors,
                       temp_dir_for, writer_lock)
from .aligner import LinearAligner
from .detect.protocol import Evidence, unpack
from .models import ModelIds
from .heatmaps import (KINDS, ConfusionSums, Heatmap,
                       Standardizer, heatmap, single_heatmap)
from .store import array_chunks, prefetch, release
from .schema import (FINITE_ARRAYS, FORMAT, SCHEMA_VERSION, SPLITS, check_manifest,
                     column_values, validate_bundle, verify_bundle)
from .tasks import TASKS, Task, task_named
from .vectors import SCORE_CHUNK

REQUIRED_COLUMNS = ("id", "split", "perturbation", "source_id", "label", "prediction",
                    "correct")
CATEGORICAL = ("split", "perturbation", "fault", "fault_paper", "probe_verdict",
               "oracle_verdict", "heatmap_verdict", "gt_fault", "probe_fault", "defect")
_SAVE_HOOK: dict = {}  # tests inject a crash between the two renames of a save here


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_LOAD_ATTEMPTS = 5  # a load cut short by a concurrent save is retried on the new version


class _Folder:
    """A bundle directory resolved once: its files are opened relative to one directory
    handle, so they all belong to the version that was at ``path`` when it was opened."""

    def __init__(self, path: Path):
        self.path = path
        self.fd = None
        if os.open in os.supports_dir_fd:
            try:
                self.fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
            except NotADirectoryError:
                raise SemheatError(f"{path} is not a bundle directory") from None
            except FileNotFoundError:
                raise SemheatError(f"{path}: no such bundle directory") from None
            except OSError as exc:
                raise SemheatError(f"{path}: cannot open ({exc.strerror or exc})") from None
            self.identity = _identity(os.fstat(self.fd))
        elif not path.is_dir():  # (no directory handles here: plain paths)
            raise SemheatError(f"{path}: no such bundle directory" if not path.exists()
                               else f"{path} is not a bundle directory")

    def open(self, name: str):
        """A binary file object of ``name`` (a regular file; a FIFO cannot block this)."""
        where = self.path / name
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = (os.open(name, flags, dir_fd=self.fd) if self.fd is not None
                  else os.open(where, flags))
        except FileNotFoundError:
            if name == "manifest.json":
                raise SemheatError(f"{self.path} is not a bundle (no manifest.json)") from None
            raise SemheatError(f"{where}: no such bundle file") from None
        except OSError as exc:
            if isinstance(exc, PermissionError):
                raise SemheatError(f"{where}: permission denied") from None
            raise SemheatError(f"{where}: cannot read ({exc.strerror or exc})") from None
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            os.close(fd)
            raise SemheatError(f"{where} is not a regular file ({_file_kind(mode)}); "
                               f"refusing to open it")
        return os.fdopen(fd, "rb")

    def read(self, name: str, reader):
        """``reader(file, path)`` on one file, with one-line errors."""
        where = self.path / name
        with self.open(name) as f:
            try:
                return reader(f, where)
            except SemheatError:
                raise
            except Exception as exc:  # OSError, ValueError, Arrow and safetensors errors
                raise SemheatError(f"{where}: cannot read: {_first_line(exc)}") from None

    def json(self, name: str, what: str):
        data = self.read(name, lambda f, p: f.read())
        return parse_json(data, self.path / name, what)

    def replaced(self) -> bool:
        """Whether ``path`` now names another directory than the one read (a save swapped a
        new version in, or is between its two renames)."""
        if self.fd is None:
            return True  # cannot tell: let the caller retry
        try:
            return _identity(os.stat(self.path)) != self.identity
        except OSError:
            return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _identity(st) -> tuple:
    return st.st_dev, st.st_ino


def _wait_for(path: Path) -> _Folder:
    """Open ``path``; where a save is between its two renames (the old version moved aside,
    the new one not yet in), wait a moment for the new one (then recover the old one)."""
    for _ in range(200):
        try:
            return _Folder(path)
        except SemheatError:
            if path.exists() and not path.is_dir():
                raise
            if not path.exists() and not needs_recovery(path):
                raise  # nothing there and no save under way
            # else a save is swapping versions in: open again in a moment
        time.sleep(0.01)
    recover_for_reading(path)
    return _Folder(path)


def _read_parquet(f, where: Path) -> pa.Table:
    # On the calling thread, no read-ahead: Arrow's pooled reader threads can outlive the read
    # and abort the interpreter at exit ("terminate called without an active exception",
    # apache/arrow#34314; 5 % of `semheat info` runs under load here). The records of a bundle
    # are small (one row per input, no arrays), so the pool would buy nothing.
    return pq.ParquetFile(f, pre_buffer=False).read(use_threads=False)


def _read_state(f, where: Path) -> dict:
    from safetensors.numpy import load

    return load(f.read())


def _read_npy(f, where: Path, mmap: bool) -> np.ndarray:
    """A ``.npy`` file: its header only, the data memory-mapped (``mmap``) or read. Object
    arrays are refused (nothing is ever unpickled)."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise SemheatError(f"{where}: unsupported .npy format version {version}")
    if dtype.hasobject:
        raise SemheatError(f"{where}: cannot read: holds Python objects (would need pickle; "
                           f"refused)")
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    available = os.fstat(f.fileno()).st_size - f.tell()
    if available < size:
        raise SemheatError(f"{where}: truncated ({available} of {size} data bytes)")
    order = "F" if fortran else "C"
    if not mmap or size == 0:
        return np.fromfile(f, dtype=dtype, count=size // max(dtype.itemsize, 1)).reshape(
            shape, order=order)
    return np.memmap(f, dtype=dtype, mode="r", shape=shape, order=order, offset=f.tell())


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
        """Write the bundle atomically to ``path`` (a directory) and return it.

        With ``overwrite``, ``path`` may hold an earlier bundle (or be an empty folder);
        anything else there is refused and left untouched. The writer lock of ``path`` is held
        throughout, and a crash leaves the old bundle or the new one (see :mod:`..safe_io`).
        """
        with self.writing(path, overwrite) as folder:
            self.write_files(folder)
        self.path = Path(path).resolve()
        return self.path

    @staticmethod
    @contextmanager
    def writing(path, overwrite: bool = False):
        """Hold ``path``'s writer lock and yield a fresh temporary folder beside it, published
        as the bundle at ``path`` when the block ends (removed if it raises) — where a bundle is
        built in place, its large arrays written straight into their final files."""
        path = Path(path).resolve()
        with writer_lock(path):
            recover(path)
            kind = check_replaceable(path, ("bundle",), "a bundle")
            if kind == "bundle" and not overwrite:
                raise SemheatError(f"{path} exists; pass overwrite=True to replace it")
            with space_errors(path):
                tmp = temp_dir_for(path)
            try:
                with space_errors(path):
                    yield tmp
                    publish_dir(tmp, path, ("bundle",), "a bundle",
                                _between=_SAVE_HOOK.get("between"))
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise

    def write_files(self, folder: Path) -> None:
        """Write the bundle's files into ``folder`` (see :meth:`writing`); the manifest last."""
        from safetensors.numpy import save_file

        arrays, concepts, state = self._merged_for_save()
        manifest = dict(self.manifest, concepts=concepts, n_records=self.n)
        manifest["arrays"] = {k: {"shape": list(a.shape), "dtype": str(a.dtype)}
                              for k, a in arrays.items()}
        (folder / "arrays").mkdir(exist_ok=True)  # (arrays built in place are there already)
        pq.write_table(self.records, folder / "records.parquet")
        for key, arr in arrays.items():
            _write_npy(folder / "arrays" / f"{key}.npy", arr)
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()},
                  str(folder / "state.safetensors"))
        # the manifest last: a folder with a valid manifest is a complete bundle
        atomic_write(folder / "manifest.json", json.dumps(manifest, indent=1,
                                                          default=_json_default))

    @classmethod
    def load(cls, path, mmap: bool = True) -> "Bundle":
        """Open a bundle directory (arrays memory-mapped read-only by default).

        Every file is checked against the declared format (:mod:`.schema`) before use — the
        manifest, the records, the arrays' headers (dtype, shape, size; their values are
        checked when written, and in full by :func:`verify_bundle` / ``semheat verify``) and
        the fitted state; a damaged bundle raises one :class:`SemheatError` line naming the
        file and the field.

        Old or new, never a mix: the directory is opened once and every file is opened through
        that handle, so a save that swaps a new version in meanwhile cannot hand this reader
        parts of both; the memory-mapped arrays belong to the version loaded for as long as
        the bundle lives. A read that the swap cut short (the old version deleted under it) is
        started again on the new version.
        """
        path = Path(as_path(path, "Bundle.load path"))
        for attempt in range(_LOAD_ATTEMPTS):
            folder = _wait_for(path)
            try:
                return cls._load_from(folder, path, mmap)
            except SemheatError:
                if not folder.replaced() or attempt == _LOAD_ATTEMPTS - 1:
                    raise
            finally:
                folder.close()
        raise AssertionError("unreachable")

    @classmethod
    def _load_from(cls, folder: "_Folder", path: Path, mmap: bool) -> "Bundle":
        manifest_path = path / "manifest.json"
        manifest = folder.json("manifest.json", "bundle manifest")
        check_manifest(manifest, manifest_path)
        records = folder.read("records.parquet", _read_parquet)
        arrays = {}
        for key in manifest["arrays"]:
            arrays[key] = folder.read(f"arrays/{key}.npy",
                                      lambda f, p: _read_npy(f, p, mmap))
        state = folder.read("state.safetensors", _read_state)
        validate_bundle(manifest, records, arrays, state, path)
        return cls(manifest, records, arrays, state, path)

    def verify(self, progress: bool = False) -> dict:
        """The full scan that loading skips: every value of every array (see
        :func:`.schema.verify_bundle`; ``semheat verify BUNDLE``)."""
        return verify_bundle(self, progress=progress)

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

    def column(self, name: str) -> np.ndarray:
        """A record column as a NumPy array (cached; categorical columns as strings)."""
        if name not in self._columns:
            if name not in self.records.column_names:
                raise SemheatError(f"bundle has no record column {name!r}")
            self._columns[name] = column_values(self.records.column(name))
        return self._columns[name]

    def has_column(self, name: str) -> bool:
        return name in self.records.column_names

    def codes(self, name: str) -> tuple[np.ndarray, list[str]]:
        """A string column as small integer codes plus its categories (fast filtering)."""
        if name not in self._categories:
            coded = _arrow_codes(self.records.column(name)) if self.has_column(name) else None
            if coded is None:
                values = self.column(name).astype(str)
                cats, codes = np.unique(values, return_inverse=True)
                coded = (codes.astype(np.int32), cats.tolist())
            self._categories[name] = coded
        return self._categories[name]

    def mask(self, **filters) -> np.ndarray:
        """Boolean mask of records matching ``column=value`` (or ``column=[values]``)."""
        m = np.ones(self.n, dtype=bool)
        for key, value in filters.items():
            if value is None:
                continue
            values = value if isinstance(value, (list, tuple, set)) else [value]
            if key in ("perturbation", "split"):
                self._check_values(key, values)
            if key in CATEGORICAL:
                codes, cats = self.codes(key)
                wanted = [cats.index(v) for v in values if v in cats]
                m &= np.isin(codes, wanted)
            else:
                m &= np.isin(self.column(key), list(values))
        return m

    def _check_values(self, key: str, values) -> None:
        """``split=`` must name a split and ``records=`` a perturbation this bundle holds:
        a typo must not quietly give an empty heatmap."""
        known = list(SPLITS) if key == "split" else self.codes("perturbation")[1]
        for v in values:
            if v not in known:
                what = "split" if key == "split" else "records"
                raise SemheatError(f"unknown {what} {v!r}; this bundle has {known}")

    # -- fitted state (typed) ----------------------------------------------------------------
    @property
    def standardizer(self) -> Standardizer:
        if self._extra:
            return Standardizer(*self._extra_standardizer())
        return Standardizer.from_state(self.state)

    @property
    def aligner(self) -> LinearAligner:
        return LinearAligner.from_state(self.state)

    @property
    def models(self) -> ModelIds:
        """The identifiers of the classifier and the VLM the bundle was built with."""
        m = self.manifest.get("models") or {}
        return ModelIds(str(m.get("classifier", "")), str(m.get("vlm", "")))

    @property
    def class_embeddings(self) -> np.ndarray:
        """``K x m`` unit text embeddings of the class prompts (the localization oracle's)."""
        return np.asarray(self.state["class_embeddings"])

    def monitor_info(self, task: Task | str) -> dict:
        """What the manifest records of a task's monitor (availability, calibration ...)."""
        task = _task(task)
        return dict(self.manifest.get("monitor", {}).get(task.name, {}))

    def detector(self, name: str, task: Task | str | None = None):
        """A fitted detector (``concept``, ``heatmap``, ``mahalanobis``, ``combined`` ...) of a
        task."""
        if not isinstance(name, str):
            raise SemheatTypeError(f"detector name must be a string, got {name!r}")
        task = _task(task) if task is not None else None
        info = self.monitor_info(task) if task else {}
        info = {**info, **info.get("detectors", {}).get(name, {})}  # what it chose, if recorded
        return unpack(name, self.state, task, info)

    def monitor(self, task: Task | str = "misclassification"):
        """The fitted runtime monitor of ``task`` (standardisation and concepts included)."""
        task = _task(task)
        info = self.monitor_info(task)
        if not info.get("available", False):
            raise SemheatError(f"the bundle has no fitted {task.name} monitor")
        return self.detector(info.get("monitor", "heatmap"), task)

    def evidence(self, rows=None) -> Evidence:
        """What detectors see of some records (all by default): logits, features, concept
        scores (concepts added later included) and labels."""
        pick = (lambda a: np.asarray(a)) if rows is None else (lambda a: np.asarray(a[rows]))
        return Evidence(pick(self.arrays["logits"]),
                        pick(self.arrays["features"]) if "features" in self.arrays else None,
                        self.scores(rows), pick(self.column("label")))

    @property
    def tasks(self) -> list[Task]:
        """The tasks whose monitor this bundle has fitted."""
        return [t for t in TASKS.values() if self.monitor_info(t).get("available", False)]

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
    def confusion(self, *, records="natural", split=None) -> ConfusionSums:
        m = self.mask(perturbation=records, split=split)
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
        choice(kind, KINDS, "heatmap kind")
        stats = self.confusion(records=records, split=split)
        hm = heatmap(kind, stats, self.classes, self.concept_names,
                     self.standardizer if standardized else None)
        hm.meta.update(records=records, split=split)
        return hm

    def heatmaps(self, *, records="natural", split=None, standardized: bool = True
                 ) -> dict[str, Heatmap]:
        stats = self.confusion(records=records, split=split)
        st = self.standardizer if standardized else None
        return {k: heatmap(k, stats, self.classes, self.concept_names, st) for k in KINDS}

    def single(self, i: int, standardized: bool = True) -> Heatmap:
        """The single-input heatmap of record ``i``."""
        i = as_index(i, self.n, "record")
        label = self.classes[int(self.column("label")[i])]
        return single_heatmap(self.scores([i])[0], self.concept_names, label,
                              self.standardizer if standardized else None)

    # -- queries ---------------------------------------------------------------------------
    def query(self, *, prediction: int | None = None, label: int | None = None,
              correct: bool | None = None, records="natural", split=None,
              sort_by: str | None = None, descending: bool = True, standardized: bool = True,
              offset: int = 0, limit: int | None = None, **filters) -> Selection:
        """Record indices matching the filters, sorted by a concept or a numeric column."""
        offset = as_int(offset, "offset", minimum=0)
        limit = None if limit is None else as_int(limit, "limit", minimum=0)
        for key, value in (("prediction", prediction), ("label", label)):
            if value is not None:
                as_int(value, key, minimum=0, maximum=len(self.classes) - 1)
        if sort_by is not None and not isinstance(sort_by, str):
            raise SemheatTypeError(f"sort_by must be a concept or column name, got {sort_by!r}")
        m = self.mask(perturbation=records, split=split, **filters)
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
        if not isinstance(heatmap_kind, str):
            raise SemheatTypeError(f"heatmap_kind must be a string, got {heatmap_kind!r}")
        choice(heatmap_kind.removeprefix("binarized_"), KINDS, "heatmap kind")
        k = self.classes.index(choice(row, self.classes, "class (row)"))
        kind = heatmap_kind.removeprefix("binarized_")
        if concept is not None and not isinstance(concept, str):
            raise SemheatTypeError(f"concept must be a concept name, got {concept!r}")
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
        idx = np.ascontiguousarray(as_indices(indices, self.n, "rows indices"), np.int64)
        table = self.records
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        # the index array from its buffer: pa.array(ndarray) imports pandas (0.3 s, once)
        return table.take(pa.Array.from_buffers(pa.int64(), len(idx),
                                                [None, pa.py_buffer(idx)])).to_pylist()

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
        i = as_index(i, self.n, "record")
        if "thumbs" not in self.arrays:
            raise SemheatError(f"bundle {self.name!r} has no thumbnails (arrays/thumbs.npy)")
        return np.asarray(self.arrays["thumbs"][i])

    def thumbnail_png(self, i: int) -> bytes:
        """Record ``i``'s thumbnail encoded as PNG (what the widgets and reports send)."""
        return png_bytes(self.thumbnail(i))

    def thumbnail_pngs(self, indices) -> list[bytes]:
        """:meth:`thumbnail_png` of each of ``indices`` (a page of the grid), their rows read
        from disk together (see :func:`.store.prefetch`)."""
        indices = list(indices)
        if "thumbs" in self.arrays:  # (a bad index is refused below, as one at a time)
            prefetch(self.arrays["thumbs"], [int(i) for i in indices if isinstance(
                i, (int, np.integer)) and not isinstance(i, bool) and 0 <= i < self.n])
        return [self.thumbnail_png(i) for i in indices]

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
        try:
            vector = np.asarray(vector, dtype=np.float32)
        except (TypeError, ValueError):
            raise SemheatTypeError(f"vector= of concept {concept.name!r} must be numbers") from None
        if vector.ndim != 1:
            raise SemheatError(f"vector= of concept {concept.name!r} must be 1-D, got shape "
                               f"{vector.shape}")
        if not np.isfinite(vector).all() or not np.any(vector):
            raise SemheatError(f"the vector of concept {concept.name!r} is zero or holds NaN/inf")
        aligned = self.arrays["aligned"]
        if vector.shape[0] != aligned.shape[1]:
            raise SemheatError(f"concept vector has {vector.shape[0]} dims, the aligned "
                               f"embeddings {aligned.shape[1]}")
        scores = np.empty(self.n, np.float32)
        for s in range(0, self.n, SCORE_CHUNK):
            scores[s:s + SCORE_CHUNK] = aligned[s:s + SCORE_CHUNK] @ vector
        if not np.isfinite(scores).all():
            raise SemheatError(f"the bundle's aligned embeddings hold NaN or inf: cannot score "
                               f"{concept.name!r} (the arrays/aligned.npy file is damaged)")
        ref = scores[self.mask(perturbation="natural", split="fit")].astype(np.float64)
        if len(ref) < 2:
            raise SemheatError("the bundle has too few natural 'fit' records to standardise")
        if not ref.std() > 0:
            raise SemheatError(f"concept {concept.name!r} scores the same on every reference "
                               f"input: its z-scores would be meaningless")
        self._extra.append({"name": concept.name, "prompts": list(concept.prompts),
                            "vector": vector, "scores": scores,
                            "mean": ref.mean(), "std": ref.std()})
        return len(self.concept_names) - 1

    def discover(self, selection, vocabulary=None, k: int = 20, *, reference="predicted",
                 vlm=None, order_by: str = "image", records="natural", exclude_classes=True,
                 cache_dir=None):
        """Rank the phrases of ``vocabulary`` by how strongly they separate ``selection`` (a
        mask, indices or a query :class:`Selection`) from ``reference`` (``"predicted"``: the
        correct inputs of the same predicted class; ``"true"``: of the same true class; or a
        mask), in the aligned and the image space side by side: a
        :class:`~.discover.Discovery`. ``vocabulary``: a :class:`~.discover.Vocabulary`,
        already embedded :class:`~.discover.PhraseEmbeddings`, or ``None`` for the default
        vocabulary of the bundle's VLM; text embeddings are cached per VLM (user cache)."""
        from .discover import discover

        phrases = self.phrase_embeddings(vocabulary, vlm=vlm, cache_dir=cache_dir)
        if exclude_classes:
            phrases = phrases.without(self.classes)
        return discover(self, selection, phrases, k=k, reference=reference,
                        order_by=order_by, records=records)

    def slices(self, task: str = "misclassification", vocabulary=None, *, vlm=None,
               cache_dir=None, **settings):
        """Error slices of ``task`` (only ``misclassification``): the mistakes grouped in CLIP
        space, error-aware (Domino's idea), each named by :meth:`discover`, largest first; a
        list of :class:`~.slices.Slice`. ``settings``: see :func:`~.slices.find_slices`."""
        from .slices import find_slices

        if task != "misclassification":
            raise SemheatError(f"slices are found for task 'misclassification', not {task!r}")
        phrases = self.phrase_embeddings(vocabulary, vlm=vlm, cache_dir=cache_dir)
        return find_slices(self, phrases.without(self.classes), **settings)

    def phrase_embeddings(self, vocabulary=None, *, vlm=None, cache_dir=None):
        """A vocabulary embedded by the bundle's VLM (remembered on the bundle)."""
        from .discover import PhraseEmbeddings, phrase_embeddings, vocabulary_for
        from .models import load_vlm

        if isinstance(vocabulary, PhraseEmbeddings):
            return vocabulary
        key = id(vocabulary) if vocabulary is not None else None
        memo = self.__dict__.setdefault("_phrases", {})
        if key in memo and (vocabulary is None or memo[key][0] is vocabulary):
            return memo[key][1]
        voc = vocabulary if vocabulary is not None else vocabulary_for(self.models.vlm)
        vlm = vlm if vlm is not None else load_vlm(self.models.vlm)
        out = phrase_embeddings(vlm, voc, cache_dir=cache_dir, progress=True)
        memo[key] = (vocabulary, out)
        return out

    def _extra_standardizer(self):
        mean = np.r_[self.state["standardizer.mean"], [e["mean"] for e in self._extra]]
        std = np.r_[self.state["standardizer.std"], [e["std"] for e in self._extra]]
        return mean.astype(np.float32), std.astype(np.float32)

    def compare(self, other: "Bundle"):
        """This bundle (before a fix) against ``other`` (after it), on the same inputs: a
        :class:`~.compare.Comparison` (accuracy, flipped inputs, heatmap deltas)."""
        from .compare import compare

        if not isinstance(other, Bundle):
            raise SemheatTypeError(f"compare needs another Bundle (use Bundle.load(path) for a "
                                   f"folder), got {type(other).__name__}")
        return compare(self, other)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return (f"<Bundle {self.name!r}: {self.n} records, {len(self.classes)} classes, "
                f"{len(self.concept_names)} concepts{where}>")


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


def _task(task) -> Task:
    """A task given as a :class:`Task` or its name."""
    if isinstance(task, Task):
        return task
    if not isinstance(task, str):
        raise SemheatTypeError(f"task must be a task name {list(TASKS)}, got {task!r}")
    return task_named(task)


def _write_npy(path: Path, arr: np.ndarray, name: str = "") -> None:
    """Write ``arr`` (possibly a memory map) as .npy in row chunks (bounded memory), checking
    its values are finite as they pass (loading reads only the header); a memory map of that
    very file (an array built in place) is only flushed (and checked if in FINITE_ARRAYS)."""
    name = name or path.stem
    in_place = isinstance(arr, np.memmap) and arr.filename and path.exists() and \
        Path(arr.filename).resolve() == path.resolve()
    if in_place:
        arr.flush()
        if name in FINITE_ARRAYS:
            for rows in array_chunks(arr):
                _check_rows(name, arr, rows)
        return
    out = open_npy_memmap(path, arr.dtype, arr.shape)  # reserved: a full disk cannot fault
    for rows in array_chunks(arr):
        _check_rows(name, arr, rows)
        out[rows] = arr[rows]
        release(out)
        release(arr)
    out.flush()
    del out


def _check_rows(name: str, arr: np.ndarray, rows: slice) -> None:
    if arr.dtype.kind == "f" and not np.isfinite(arr[rows]).all():
        raise SemheatError(f"cannot save the bundle: array {name!r} holds NaN or inf values "
                           f"(rows {rows.start}..{rows.stop - 1})")


def png_bytes(image: np.ndarray) -> bytes:
    """``uint8 H x W x 3`` as PNG bytes."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()
