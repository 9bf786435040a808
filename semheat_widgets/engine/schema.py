"""The bundle format, declared once, and the one place that checks a bundle on load.

:data:`MANIFEST_SCHEMA` (JSON Schema, checked with the maintained ``jsonschema`` library)
declares ``manifest.json``; :func:`validate_bundle` then checks what a schema cannot see: that
names are unique, that every array, record column and piece of fitted state agrees with the
manifest in length, shape, dtype and range, and that every number is finite. Each problem is
one :class:`~semheat_widgets.errors.SemheatError` line naming the file and the field, so a
damaged bundle never ends in a traceback or, worse, in a silently wrong heatmap.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import SemheatError

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


def validate_json(obj, schema: dict, file) -> None:
    """Check ``obj`` against ``schema``; the first problem becomes one line naming ``file``
    and the field (``classes[3]``, ``arrays.scores.shape``)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(obj))
    if error is None:
        return
    field = _field(error.absolute_path) or "(top level)"
    message = error.message if len(error.message) <= 160 else error.message[:157] + "..."
    raise SemheatError(f"{file}: field {field}: {message}")


def _field(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def check_manifest(manifest, file) -> None:
    """The manifest against the schema, then unique names."""
    if not isinstance(manifest, dict):
        raise SemheatError(f"{file}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise SemheatError(f"{file}: field format: not a {FORMAT} "
                           f"(format {manifest.get('format')!r})")
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        from ..errors import SchemaVersionError

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
def _column(table: pa.Table, name: str, file, kind: str) -> np.ndarray:
    col = table.column(name)
    if col.null_count:
        raise SemheatError(f"{file}: column {name}: {col.null_count} null value(s)")
    typ = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
    ok = {"int": pa.types.is_integer, "bool": pa.types.is_boolean,
          "str": lambda t: pa.types.is_string(t) or pa.types.is_large_string(t),
          "float": lambda t: pa.types.is_floating(t) or pa.types.is_integer(t)}[kind](typ)
    if not ok:
        raise SemheatError(f"{file}: column {name}: type {typ}, expected {kind}")
    if pa.types.is_dictionary(col.type):
        col = col.cast(typ)
    return col.to_numpy(zero_copy_only=False)


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
    cols = {name: _column(table, name, file, kind) for name, kind in required.items()}
    for name in ("label", "prediction"):
        bad = (cols[name] < 0) | (cols[name] >= K)
        if bad.any():
            raise SemheatError(f"{file}: column {name}: value {int(cols[name][bad][0])} is not a "
                               f"class index 0..{K - 1} ({int(bad.sum())} record(s))")
    bad = ~np.isin(cols["split"], SPLITS)
    if bad.any():
        raise SemheatError(f"{file}: column split: unknown split {cols['split'][bad][0]!r}; "
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
# Arrays whose values are checked for NaN/inf on load; the large embedding arrays are checked
# where they are used (a full pass over gigabytes on every load would be too slow).
FINITE_ARRAYS = ("scores", "logits")


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
    if name in FINITE_ARRAYS and arr.dtype.kind == "f" and not _all_finite(arr):
        raise SemheatError(f"{file}: NaN or inf values")


def _all_finite(arr: np.ndarray, chunk: int = 1 << 18) -> bool:
    return all(np.isfinite(arr[s:s + chunk]).all() for s in range(0, len(arr), chunk))


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


def validate_bundle(manifest: dict, records: pa.Table, arrays: dict, state: dict,
                    path: Path) -> None:
    """Every cross-file check of a loaded bundle (the manifest itself was checked first)."""
    check_records(records, manifest, path / "records.parquet")
    if "scores" not in manifest["arrays"]:
        raise SemheatError(f"{path / 'manifest.json'}: field arrays.scores is missing")
    for name, arr in arrays.items():
        check_array(name, arr, manifest, path / "arrays" / f"{name}.npy")
    check_state(state, manifest, arrays, path / "state.safetensors")


def category_values(table: pa.Table, name: str) -> list[str]:
    """The distinct values of a string column (cheap on dictionary-encoded columns)."""
    col = table.column(name)
    return sorted(str(v) for v in pc.unique(col).to_pylist() if v is not None)
