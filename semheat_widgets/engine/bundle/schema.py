"""The bundle format, declared once, and the one place that checks a bundle on load.

:data:`MANIFEST_SCHEMA` (a JSON Schema document, the one declaration of the format) declares
``manifest.json``. It is checked by :func:`~.json_schema.validate_json`, a small interpreter of
the JSON Schema keywords the package's schemas use (no import of ``jsonschema``, whose format
checkers take seconds to import; a test checks it agrees with ``jsonschema`` on damaged
manifests); :func:`validate_bundle` then checks what a schema cannot see: that
names are unique, that every array, record column and piece of fitted state agrees with the
manifest in length, shape, dtype and range, and that every number is finite. Each problem is
one :class:`~semheat_widgets.errors.SemheatError` line naming the file and the field, so a
damaged bundle never ends in a traceback or, worse, in a silently wrong heatmap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ...errors import SemheatError
from .json_schema import validate_json

FORMAT = "semheat-bundle"
SCHEMA_VERSION = 2  # 2: records say `perturbation` (was `kind`); detectors under `detector.`
SPLITS = ("fit", "calib", "eval")
ARRAY_DTYPES = ("float16", "float32", "float64", "uint8", "int8", "int16", "int32", "int64",
                "bool")
NAME_PATTERN = "^[A-Za-z0-9_]+$"  # array files live in arrays/<name>.npy, nowhere else

_text = {"type": "string", "minLength": 1}
_count = {"type": "integer", "minimum": 0}
_unit = {"type": "number", "minimum": 0, "maximum": 1}

MANIFEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "semheat bundle manifest",
    "type": "object",
    "required": ["format", "schema_version", "classes", "concepts", "n_records", "arrays"],
    "properties": {
        "format": {"const": FORMAT},
        "schema_version": {"type": "integer"},
        "name": {"type": "string"},
        "created": {"type": "string"},
        "classes": {"type": "array", "minItems": 1, "items": _text},
        "concepts": {"type": "array", "items": {
            "type": "object", "required": ["name", "prompts"],
            "properties": {"name": _text, "prompts": {"type": "array", "items": _text}}}},
        "n_records": _count,
        "models": {"type": "object", "properties": {"classifier": {"type": "string"},
                                                    "vlm": {"type": "string"}}},
        "class_prompts": {"type": "object",
                          "additionalProperties": {"type": "array", "items": _text}},
        "arrays": {"type": "object", "propertyNames": {"pattern": NAME_PATTERN},
                   "additionalProperties": {
                       "type": "object", "required": ["shape", "dtype"],
                       "properties": {"shape": {"type": "array", "minItems": 1,
                                                "items": _count},
                                      "dtype": {"enum": list(ARRAY_DTYPES)}}}},
        "splits": {"type": "object", "additionalProperties": _count},
        "accuracy": _unit,
        "monitor": {"type": "object", "additionalProperties": {
            "type": "object", "properties": {
                "available": {"type": "boolean"}, "target_fpr": _unit,
                "monitor": _text,
                "similarity": {"enum": ["cosine", "euclidean"]},
                "per_class": {"type": "boolean"}}}},
        "attacks": {"type": "array", "items": {
            "type": "object", "required": ["method", "eps"],
            "properties": {"method": _text, "eps": {"type": "number", "minimum": 0},
                           "steps": {"type": "integer", "minimum": 1}}}},
    },
}


def check_manifest(manifest, file) -> None:
    """The manifest against the schema, then unique names."""
    if not isinstance(manifest, dict):
        raise SemheatError(f"{file}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise SemheatError(f"{file}: field format: not a {FORMAT} "
                           f"(format {manifest.get('format')!r})")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        from ...errors import SchemaVersionError

        raise SchemaVersionError(f"{file}: bundle schema version {version!r}; this "
                                 f"semheat_widgets reads version {SCHEMA_VERSION} (rebuild the "
                                 f"bundle or change semheat_widgets)")
    validate_json(manifest, MANIFEST_SCHEMA, file)
    _unique(manifest["classes"], file, "classes")
    _unique([c["name"] for c in manifest["concepts"]], file, "concepts[].name")


def _unique(names, file, field) -> None:
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise SemheatError(f"{file}: field {field}: {name!r} appears twice (entry {i})")
        seen.add(name)


# -- records ---------------------------------------------------------------------------------
def column_values(col) -> np.ndarray:
    """An Arrow column as a NumPy array (strings as objects), read from its buffers: pyarrow's
    own ``to_numpy`` imports pandas (seconds), which a bundle reader does not need."""
    if isinstance(col, pa.ChunkedArray):
        if col.num_chunks == 1:
            return column_values(col.chunk(0))
        if col.num_chunks == 0 or col.null_count:
            return col.to_numpy(zero_copy_only=False)
        return np.concatenate([column_values(c) for c in col.chunks])
    typ = col.type
    if col.null_count:
        return col.to_numpy(zero_copy_only=False)
    if pa.types.is_dictionary(typ):
        return column_values(col.dictionary)[column_values(col.indices)]
    if pa.types.is_boolean(typ):
        bits = np.frombuffer(col.buffers()[1], np.uint8)
        return np.unpackbits(bits, bitorder="little")[col.offset:col.offset + len(col)].astype(
            bool)
    if pa.types.is_integer(typ) or pa.types.is_floating(typ):
        dtype = np.dtype(typ.to_pandas_dtype())
        return np.frombuffer(col.buffers()[1], dtype, count=len(col),
                             offset=col.offset * dtype.itemsize)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return np.array(col.to_pylist(), dtype=object)
    return col.to_numpy(zero_copy_only=False)


def _checked(table: pa.Table, name: str, file, kind: str):
    """Column ``name`` of ``table``, refused (one line) if it holds nulls or is not ``kind``."""
    col = table.column(name)
    if col.null_count:
        raise SemheatError(f"{file}: column {name}: {col.null_count} null value(s)")
    typ = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    ok = {"int": pa.types.is_integer, "bool": pa.types.is_boolean,
          "str": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
          "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)}[kind](typ)
    if not ok:
        raise SemheatError(f"{file}: column {name}: type {typ}, expected {kind}")
    return col


def _column(table: pa.Table, name: str, file, kind: str) -> np.ndarray:
    return column_values(_checked(table, name, file, kind))


def _distinct_strings(col) -> list:
    """The values a string column's dictionary holds (its distinct values, perhaps with some
    no record uses), compared once each instead of once per record."""
    if len(col) == 0:
        return []
    enc = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if not pa.types.is_dictionary(enc.type):
        enc = enc.dictionary_encode()
    return enc.dictionary.to_pylist()


FLOAT_COLUMNS = ("confidence", "msp", "energy", "mahalanobis")


def check_records(table: pa.Table, manifest: dict, file) -> None:
    n = manifest["n_records"]
    K = len(manifest["classes"])
    if table.num_rows != n:
        raise SemheatError(f"{file}: holds {table.num_rows} records, the manifest says "
                           f"n_records {n}")
    required = {"id": "int", "split": "str", "perturbation": "str", "source_id": "int",
                "label": "int", "prediction": "int", "correct": "bool"}
    for name, kind in required.items():
        if name not in table.column_names:
            raise SemheatError(f"{file}: column {name} is missing")
    cols = {name: _checked(table, name, file, kind) if kind == "str" else
            _column(table, name, file, kind) for name, kind in required.items()}
    for name in ("label", "prediction"):
        bad = (cols[name] < 0) | (cols[name] >= K)
        if bad.any():
            raise SemheatError(f"{file}: column {name}: value {int(cols[name][bad][0])} is not a "
                               f"class index 0..{K - 1} ({int(bad.sum())} record(s))")
    if any(v not in SPLITS for v in _distinct_strings(cols["split"])):  # then find the first
        values = column_values(cols["split"])
        bad = ~np.isin(values, SPLITS)
        if bad.any():
            raise SemheatError(f"{file}: column split: unknown split {values[bad][0]!r}; "
                               f"expected one of {list(SPLITS)}")
    bad = (cols["source_id"] < 0) | (cols["source_id"] >= max(n, 1))
    if bad.any():
        raise SemheatError(f"{file}: column source_id: {int(cols['source_id'][bad][0])} is not a "
                           f"record index")
    contradict = cols["correct"] != (cols["label"] == cols["prediction"])
    if contradict.any():
        i = int(np.flatnonzero(contradict)[0])
        raise SemheatError(f"{file}: column correct contradicts label == prediction at record "
                           f"{i} ({int(contradict.sum())} record(s))")
    for name in table.column_names:
        if name in FLOAT_COLUMNS or name.startswith(("misclf_", "adv_")) and not \
                name.endswith("_flag"):
            values = _column(table, name, file, "float").astype(np.float64)
            if not np.isfinite(values).all():
                raise SemheatError(f"{file}: column {name}: NaN or inf values")


# -- arrays ----------------------------------------------------------------------------------
# Loading reads the arrays' headers only (dtype, shape, size: O(1) per array). Their values are
# checked for NaN/inf when they are written (:func:`check_finite`, by ``Bundle.write_files``)
# and in full by :func:`verify_bundle` (``semheat verify``), never on every load.
FINITE_ARRAYS = ("scores", "logits")  # checked when written even when built in place


def check_finite(name: str, arr: np.ndarray, file, rows=None) -> None:
    """One line naming the file if ``arr`` (or its ``rows``, a slice) holds NaN or inf."""
    if arr.dtype.kind != "f":
        return
    block = arr if rows is None else arr[rows]
    if not np.isfinite(block).all():
        raise SemheatError(f"{file}: NaN or inf values")


def check_array(name: str, arr: np.ndarray, manifest: dict, file) -> None:
    spec = manifest["arrays"][name]
    shape, dtype = tuple(spec["shape"]), spec["dtype"]
    if arr.dtype != np.dtype(dtype):
        raise SemheatError(f"{file}: dtype {arr.dtype}, the manifest says arrays.{name}.dtype "
                           f"{dtype}")
    if tuple(arr.shape) != shape:
        raise SemheatError(f"{file}: shape {tuple(arr.shape)}, the manifest says "
                           f"arrays.{name}.shape {list(shape)}")
    if shape[0] != manifest["n_records"]:
        raise SemheatError(f"{file}: {shape[0]} rows for n_records {manifest['n_records']}")
    if name == "scores" and (arr.ndim != 2 or shape[1] != len(manifest["concepts"])):
        raise SemheatError(f"{file}: {shape[1] if arr.ndim == 2 else '?'} score columns for "
                           f"{len(manifest['concepts'])} concepts")
    if name == "thumbs" and (arr.ndim != 4 or shape[3] != 3 or arr.dtype != np.uint8):
        raise SemheatError(f"{file}: thumbnails must be uint8 N x H x W x 3, got "
                           f"{arr.dtype} {list(shape)}")


# -- fitted state ----------------------------------------------------------------------------
def check_state(state: dict, manifest: dict, arrays: dict, file) -> None:
    """Shapes that must agree with the manifest, and finite values everywhere."""
    C, K = len(manifest["concepts"]), len(manifest["classes"])
    for key in ("standardizer.mean", "standardizer.std", "concept_embeddings"):
        if key not in state:
            raise SemheatError(f"{file}: tensor {key} is missing")
    for key, value in state.items():
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise SemheatError(f"{file}: tensor {key}: NaN or inf values")
    expect = {"standardizer.mean": (C,), "standardizer.std": (C,)}
    m = state["concept_embeddings"].shape[-1]
    expect["concept_embeddings"] = (C, m)
    if "class_embeddings" in state:
        expect["class_embeddings"] = (K, m)
    if "aligner.W" in state:
        expect["aligner.b"] = (m,)
        if "features" in arrays:
            expect["aligner.W"] = (arrays["features"].shape[1], m)
    if "map_aligner.W" in state:  # the finer concept maps' aligner (optional)
        for key in ("map_aligner.b", "map_aligner.fit_aligned"):
            if key not in state:
                raise SemheatError(f"{file}: tensor {key} is missing")
        for key in ("map_aligner.W", "map_aligner.fit_aligned"):
            if state[key].ndim != 2:
                raise SemheatError(f"{file}: tensor {key} must be a matrix, got shape "
                                   f"{list(state[key].shape)}")
        expect["map_aligner.b"] = (m,)
        expect["map_aligner.W"] = (state["map_aligner.W"].shape[0], m)
        expect["map_aligner.fit_aligned"] = (state["map_aligner.fit_aligned"].shape[0], m)
    for key, shape in expect.items():
        if key in state and tuple(state[key].shape) != shape:
            raise SemheatError(f"{file}: tensor {key} has shape {list(state[key].shape)}, "
                               f"expected {list(shape)}")
    if (state["standardizer.std"] <= 0).any():
        j = int(np.flatnonzero(state["standardizer.std"] <= 0)[0])
        raise SemheatError(f"{file}: tensor standardizer.std: concept "
                           f"{manifest['concepts'][j]['name']!r} has zero spread")
    for key, value in state.items():
        if key.startswith("detector.") and key.endswith(("_rows", "thresholds", "_counts")):
            if value.shape[0] != K:
                raise SemheatError(f"{file}: tensor {key} has {value.shape[0]} rows for {K} "
                                   f"classes")
            if key.endswith("_rows") and value.shape[1] > C:
                raise SemheatError(f"{file}: tensor {key} has {value.shape[1]} columns for {C} "
                                   f"concepts")


REQUIRED_COLUMNS = ("id", "split", "perturbation", "source_id", "label", "prediction",
                    "correct")


def check_parts(manifest: dict, records: pa.Table, arrays: dict) -> None:
    """What every bundle, built in memory or loaded, must hold together: the required record
    columns, and as many records and array rows as the manifest says."""
    missing = [c for c in REQUIRED_COLUMNS if c not in records.column_names]
    if missing:
        raise SemheatError(f"bundle records lack columns {missing}")
    n = records.num_rows
    if manifest.get("n_records", n) != n:
        raise SemheatError(f"manifest says {manifest['n_records']} records, "
                           f"records hold {n}")
    for key, arr in arrays.items():
        if len(arr) != n:
            raise SemheatError(f"array {key!r} has {len(arr)} rows, expected {n}")
    if "scores" in arrays and arrays["scores"].shape[1] != len(manifest["concepts"]):
        raise SemheatError("the score matrix and the concept list disagree")


def validate_bundle(manifest: dict, records: pa.Table, arrays: dict, state: dict,
                    path: Path) -> None:
    """Every cross-file check of a loaded bundle (the manifest itself was checked first)."""
    check_records(records, manifest, path / "records.parquet")
    if "scores" not in manifest["arrays"]:
        raise SemheatError(f"{path / 'manifest.json'}: field arrays.scores is missing")
    for name, arr in arrays.items():
        check_array(name, arr, manifest, path / "arrays" / f"{name}.npy")
    check_state(state, manifest, arrays, path / "state.safetensors")


def verify_bundle(bundle, progress: bool = False) -> dict:
    """The full check of a loaded bundle: every value of every array (NaN/inf in the float
    ones), read chunk by chunk in bounded memory. Returns what was checked; one
    :class:`SemheatError` line naming the file otherwise. (Loading checks headers only.)"""
    from .store import array_chunks, release

    checked, n_bytes = [], 0
    for name, arr in bundle.arrays.items():
        file = bundle.path / "arrays" / f"{name}.npy" if bundle.path else f"array {name}"
        if arr.dtype.kind == "f":
            for rows in array_chunks(arr):
                check_finite(name, arr, file, rows)
                release(arr)
        n_bytes += arr.nbytes
        checked.append(name)
    return {"arrays": checked, "bytes_checked": int(n_bytes)}
