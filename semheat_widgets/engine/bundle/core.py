"""The :class:`Bundle` class: an analysis held in memory or memory-mapped from disk, and what
it answers — typed fitted state, concept scores, heatmaps, queries, thumbnails, the open
vocabulary. The files on disk, the queries, the fitted monitors, the added concepts and the
thumbnails' encoding live in the sibling modules (see :mod:`semheat_widgets.engine.bundle`);
the methods here are their public face.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa

from ...arguments import as_index, as_path, choice
from ...errors import SemheatError, SemheatTypeError
from ..models.aligner import LinearAligner
from ..detect.protocol import Evidence
from ..heatmaps import KINDS, ConfusionSums, Heatmap, Standardizer, heatmap, single_heatmap
from ..models.registry import ModelIds
from ..tasks import Task
from . import files, images, monitors, open_vocabulary, queries
from .queries import Selection
from .schema import FORMAT, SCHEMA_VERSION, check_parts, column_values, verify_bundle


class Bundle:
    """An analysis held in memory or memory-mapped from disk. See
    :mod:`semheat_widgets.engine.bundle`."""

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
        self._pngs = images.PngCache()  # the last thumbnails encoded (see .images)
        check_parts(manifest, records, arrays)

    # -- construction ----------------------------------------------------------------------
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

    # -- persistence (see .files) ----------------------------------------------------------
    def save(self, path, overwrite: bool = False) -> Path:
        """Write the bundle atomically to ``path`` (a directory) and return it.

        With ``overwrite``, ``path`` may hold an earlier bundle (or be an empty folder);
        anything else there is refused and left untouched. The writer lock of ``path`` is held
        throughout, and a crash leaves the old bundle or the new one (see :mod:`...safe_io`).
        """
        with self.writing(path, overwrite) as folder:
            self.write_files(folder)
        self.path = Path(path).resolve()
        return self.path

    @staticmethod
    def writing(path, overwrite: bool = False):
        """Hold ``path``'s writer lock and yield a fresh temporary folder beside it, published
        as the bundle at ``path`` when the block ends (removed if it raises) — where a bundle is
        built in place, its large arrays written straight into their final files."""
        return files.writing(path, overwrite)

    def write_files(self, folder: Path) -> None:
        """Write the bundle's files into ``folder`` (see :meth:`writing`); the manifest last."""
        arrays, concepts, state = open_vocabulary.merged_for_save(self)
        manifest = dict(self.manifest, concepts=concepts, n_records=self.n)
        files.write_bundle(folder, manifest, self.records, arrays, state)

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
        return files.load(Path(as_path(path, "Bundle.load path")), mmap, cls)

    def verify(self, progress: bool = False) -> dict:
        """The full scan that loading skips: every value of every array (see
        :func:`.schema.verify_bundle`; ``semheat verify BUNDLE``)."""
        return verify_bundle(self, progress=progress)

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
            self._categories[name] = queries.category_codes(self, name)
        return self._categories[name]

    def mask(self, **filters) -> np.ndarray:
        """Boolean mask of records matching ``column=value`` (or ``column=[values]``)."""
        return queries.mask(self, filters)

    # -- fitted state (typed, see .monitors) -----------------------------------------------
    @property
    def standardizer(self) -> Standardizer:
        if self._extra:
            return Standardizer(*open_vocabulary.standardizer_arrays(self))
        return Standardizer.from_state(self.state)

    @property
    def aligner(self) -> LinearAligner:
        return LinearAligner.from_state(self.state)

    @property
    def map_aligner(self):
        """The finer concept maps' aligner (a :class:`~..concepts.finer_maps.MapAligner`), or
        ``None`` for a bundle without one (another architecture, or written before them)."""
        if "map_aligner.W" not in self.state:
            return None
        from ..concepts.finer_maps import MapAligner  # (torch: only for maps)

        layer = (self.manifest.get("concept_maps") or {}).get("layer", "layer2")
        return MapAligner.from_state(self.state, layer)

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
        return monitors.monitor_info(self.manifest, task)

    def detector(self, name: str, task: Task | str | None = None):
        """A fitted detector (``concept``, ``heatmap``, ``mahalanobis``, ``combined`` ...) of a
        task."""
        return monitors.detector(self.manifest, self.state, name, task)

    def monitor(self, task: Task | str = "misclassification"):
        """The fitted runtime monitor of ``task`` (standardisation and concepts included)."""
        return monitors.monitor(self.manifest, self.state, task)

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
        return monitors.fitted_tasks(self.manifest)

    @property
    def concept_embeddings(self) -> np.ndarray:
        return open_vocabulary.all_embeddings(self)

    # -- scores ----------------------------------------------------------------------------
    def scores(self, rows=None) -> np.ndarray:
        """Raw concept scores ``cos(A z, t_j)`` (N x C, or the given rows), extras included."""
        return open_vocabulary.all_scores(self, rows)

    def concept_column(self, concept: str, standardized: bool = True) -> np.ndarray:
        """All records' scores of one concept (a memory-map column read)."""
        names = self.concept_names
        if concept not in names:
            raise SemheatError(f"unknown concept {concept!r}")
        j = names.index(concept)
        col = open_vocabulary.concept_scores(self, j, slice(None))
        if standardized:
            st = self.standardizer
            col = (col - st.mean[j]) / st.std[j]
        return np.asarray(col)

    # -- heatmaps --------------------------------------------------------------------------
    def confusion(self, *, perturbation="natural", split=None) -> ConfusionSums:
        m = self.mask(perturbation=perturbation, split=split)
        idx = np.flatnonzero(m)
        labels, preds = self.column("label")[idx], self.column("prediction")[idx]
        if m.all():
            scores = self.scores()
        else:
            scores = self.scores(idx)
        return ConfusionSums.from_scores(scores, labels, preds, len(self.classes))

    def heatmap(self, kind: str = "differential", *, perturbation="natural", split=None,
                standardized: bool = True) -> Heatmap:
        """One heatmap of ``kind`` over the chosen records (e.g. ``perturbation="pgd"``)."""
        choice(kind, KINDS, "heatmap kind")
        stats = self.confusion(perturbation=perturbation, split=split)
        hm = heatmap(kind, stats, self.classes, self.concept_names,
                     self.standardizer if standardized else None)
        hm.meta.update(perturbation=perturbation, split=split)
        return hm

    def heatmaps(self, *, perturbation="natural", split=None, standardized: bool = True
                 ) -> dict[str, Heatmap]:
        stats = self.confusion(perturbation=perturbation, split=split)
        st = self.standardizer if standardized else None
        return {k: heatmap(k, stats, self.classes, self.concept_names, st) for k in KINDS}

    def single(self, i: int, standardized: bool = True) -> Heatmap:
        """The single-input heatmap of record ``i``."""
        i = as_index(i, self.n, "record")
        label = self.classes[int(self.column("label")[i])]
        return single_heatmap(self.scores([i])[0], self.concept_names, label,
                              self.standardizer if standardized else None)

    # -- queries (see .queries) ------------------------------------------------------------
    def query(self, *, prediction: int | None = None, label: int | None = None,
              correct: bool | None = None, perturbation="natural", split=None,
              sort_by: str | None = None, descending: bool = True, standardized: bool = True,
              offset: int = 0, limit: int | None = None, **filters) -> Selection:
        """Record indices matching the filters, sorted by a concept or a numeric column."""
        where = dict(prediction=prediction, label=label, correct=correct)
        return queries.query(self, where, dict(perturbation=perturbation, split=split, **filters),
                             sort_by, descending, standardized, offset, limit)

    def cell_query(self, heatmap_kind: str, row: str, concept: str | None = None, *,
                   perturbation="natural", split=None, **kwargs) -> Selection:
        """The inputs behind one heatmap cell, most extreme in ``concept`` first.

        For ``differential`` and ``incorrect`` cells these are the offending inputs: predicted
        ``row`` and wrong. For ``gt_minus_output`` the inputs wrongly predicted as ``row``.
        """
        where = queries.cell_records(self, heatmap_kind, row, concept)
        return self.query(**where, perturbation=perturbation, split=split, sort_by=concept,
                          **kwargs)

    def rows(self, indices, columns: Sequence[str] | None = None) -> list[dict]:
        """Records at ``indices`` as dicts (only for the few shown on screen)."""
        return queries.rows(self.records, indices, columns)

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

    # -- thumbnails (see .images) ----------------------------------------------------------
    def thumbnail(self, i: int) -> np.ndarray:
        return images.thumbnail(self, i)

    def thumbnail_png(self, i: int) -> bytes:
        """Record ``i``'s thumbnail encoded as PNG (what the widgets and reports send; the
        last few thousand are kept)."""
        return self._pngs.get(self, as_index(i, self.n, "record"))

    def thumbnail_pngs(self, indices) -> list[bytes]:
        """:meth:`thumbnail_png` of each of ``indices`` (a page of the grid), their rows read
        from disk together (see :func:`.store.prefetch`)."""
        indices = list(indices)
        images.read_ahead(self, indices)  # (a bad index is refused below, as one at a time)
        return [self.thumbnail_png(i) for i in indices]

    # -- open vocabulary (see .open_vocabulary) --------------------------------------------
    def add_concept(self, name: str, prompts: Sequence[str] | str | None = None, *, vlm=None,
                    vector: np.ndarray | None = None) -> int:
        """Add a free-text concept as a new column, scored from the cached aligned embeddings.

        Give the ``vlm`` (to embed the prompts) or a precomputed unit ``vector``. Returns the
        new column's index. Costs one pass over the aligned embeddings.
        """
        return open_vocabulary.add_concept(self, name, prompts, vlm, vector)

    def discover(self, selection, vocabulary=None, k: int = 20, *, reference="predicted",
                 vlm=None, order_by: str = "image", perturbation="natural", exclude_classes=True,
                 cache_dir=None):
        """Rank the phrases of ``vocabulary`` by how strongly they separate ``selection`` (a
        mask, indices or a query :class:`Selection`) from ``reference`` (``"predicted"``: the
        correct inputs of the same predicted class; ``"true"``: of the same true class; or a
        mask), in the aligned and the image space side by side: a
        :class:`~.discover.Discovery`. ``vocabulary``: a :class:`~.discover.Vocabulary`,
        already embedded :class:`~.discover.PhraseEmbeddings`, or ``None`` for the default
        vocabulary of the bundle's VLM; text embeddings are cached per VLM (user cache)."""
        from ..concepts.discover import discover

        phrases = self.phrase_embeddings(vocabulary, vlm=vlm, cache_dir=cache_dir)
        if exclude_classes:
            phrases = phrases.without(self.classes)
        return discover(self, selection, phrases, k=k, reference=reference,
                        order_by=order_by, perturbation=perturbation)

    def slices(self, task: str = "misclassification", vocabulary=None, *, vlm=None,
               cache_dir=None, **settings):
        """Error slices of ``task`` (only ``misclassification``): the mistakes grouped in CLIP
        space, error-aware (Domino's idea), each named by :meth:`discover`, largest first; a
        list of :class:`~.slices.Slice`. ``settings``: see :func:`~.slices.find_slices`."""
        from ..concepts.slices import find_slices

        if task != "misclassification":
            raise SemheatError(f"slices are found for task 'misclassification', not {task!r}")
        phrases = self.phrase_embeddings(vocabulary, vlm=vlm, cache_dir=cache_dir)
        return find_slices(self, phrases.without(self.classes), **settings)

    def phrase_embeddings(self, vocabulary=None, *, vlm=None, cache_dir=None):
        """A vocabulary embedded by the bundle's VLM (remembered on the bundle)."""
        return open_vocabulary.phrase_embeddings(self, vocabulary, vlm, cache_dir)

    def compare(self, other: "Bundle"):
        """This bundle (before a fix) against ``other`` (after it), on the same inputs: a
        :class:`~.compare.Comparison` (accuracy, flipped inputs, heatmap deltas)."""
        from ..reports.compare import compare

        if not isinstance(other, Bundle):
            raise SemheatTypeError(f"compare needs another Bundle (use Bundle.load(path) for a "
                                   f"folder), got {type(other).__name__}")
        return compare(self, other)

    def __repr__(self) -> str:
        where = f" at {self.path}" if self.path else ""
        return (f"<Bundle {self.name!r}: {self.n} records, {len(self.classes)} classes, "
                f"{len(self.concept_names)} concepts{where}>")

