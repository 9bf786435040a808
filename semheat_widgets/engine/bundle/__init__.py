"""The bundle: one analysis of a (classifier, VLM, dataset) triple, saved as a directory.

Layout (schema version 2)::

    manifest.json        format, schema version, classes, concepts, models, splits, figures
    records.parquet      one row per input: id, split, perturbation, source_id, label,
                         prediction, correct, detector scores, verdicts, ...
    arrays/<name>.npy    dense arrays (features, logits, image_emb, aligned, scores, thumbs, ...)
                         loaded as read-only memory maps
    state.safetensors    fitted state: aligner, concept and class embeddings, standardiser,
                         detectors (``detector.[task.]name.*``, see :mod:`..detect.protocol`)

Fitted state is read through typed accessors (:attr:`Bundle.aligner`, :meth:`Bundle.monitor`,
:meth:`Bundle.detector`, :attr:`Bundle.class_embeddings`, :attr:`Bundle.models`), never
through string keys in callers.

Nothing is ever unpickled: NumPy arrays load with ``allow_pickle=False``, state with
safetensors, records with Arrow. Saving writes a hidden sibling directory first and renames it
into place, so a crash leaves either the old bundle or the new one, never half of one.

The query API answers what the widgets ask ("inputs predicted k that are wrong, sorted by
concept j") from a few cached integer columns and the memory-mapped score matrix, without
turning records into Python objects.

The stage package, by what each module holds:

- :mod:`.core` — the :class:`Bundle` class, the public face of the modules below;
- :mod:`.schema` — the declared format (``MANIFEST_SCHEMA``) and every check of a bundle, on
  load and in full (``verify``); :mod:`.json_schema` — the small JSON Schema interpreter the
  manifest (and a toy world's ``world.json``, a family's ``family.json``) is checked with;
- :mod:`.files` — the directory on disk: one handle per version, the readers and writers of
  parquet, ``.npy`` and safetensors, the retried load and the atomic save;
- :mod:`.store` — :class:`~.store.ArrayStore`, per-record arrays in bounded memory (chunked
  memory maps), which the pipeline builds a bundle's arrays in;
- :mod:`.queries` — masks, sorted and paged queries (:class:`Selection`), heatmap cells,
  category codes;
- :mod:`.monitors` — the fitted detectors and monitors, by task;
- :mod:`.open_vocabulary` — concepts added after the build, phrases embedded by the VLM;
- :mod:`.images` — thumbnails and their PNG encoding.

Modules import downward only: ``json_schema`` <- ``schema`` <- ``files``, ``queries`` and the
others <- ``core``; none of them imports ``core``.
"""

from ..lazy import lazy_names

# Names load on first use (PEP 562), as in the engine's namespace: importing the format or the
# array store (the pipeline and the detectors do) does not import the Bundle class.
_LAZY = {
    "Bundle": "core", "REQUIRED_COLUMNS": "schema", "CATEGORICAL": "queries",
    "Selection": "queries", "png_bytes": "images",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
