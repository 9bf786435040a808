"""A small interpreter of the JSON Schema (draft 2020-12) keywords the package's schemas use:
the bundle manifest's (:data:`.schema.MANIFEST_SCHEMA`), a toy world's ``world.json`` and a
fault family's ``family.json``. It stands in for ``jsonschema``, whose format checkers take
seconds to import; a test checks the two agree on damaged manifests."""

from __future__ import annotations

from ...errors import SemheatError


def validate_json(obj, schema: dict, file) -> None:
    """Check ``obj`` against ``schema``; the first problem becomes one line naming ``file``
    and the field (``classes[3]``, ``arrays.scores.shape``)."""
    problem = _first_problem(obj, schema, ())
    if problem is None:
        return
    path, message = problem
    field = _field(path) or "(top level)"
    message = message if len(message) <= 160 else message[:157] + "..."
    raise SemheatError(f"{file}: field {field}: {message}")


# The JSON Schema (draft 2020-12) keywords validate_json knows, with their meaning below; a
# schema using any other keyword is refused (so a new keyword cannot be silently ignored).
_ANNOTATIONS = {"$schema", "title", "description"}
_KEYWORDS = _ANNOTATIONS | {
    "type", "const", "enum", "required", "properties", "additionalProperties", "propertyNames",
    "items", "minItems", "uniqueItems", "minLength", "pattern", "minimum", "maximum"}
_TYPES = {
    "object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
}


def _same(a, b) -> bool:
    """JSON equality: ``true`` is not ``1``, ``[1]`` equals ``[1.0]``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if _TYPES["number"](a) and _TYPES["number"](b):
        return a == b
    return type(a) is type(b) and a == b


def _first_problem(value, schema: dict, path: tuple):
    """``(path, message)`` of the first place ``value`` breaks ``schema``; None if it fits."""
    import re

    unknown = set(schema) - _KEYWORDS
    if unknown:
        raise SemheatError(f"schema uses unsupported keyword(s) {sorted(unknown)}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_TYPES[t](value) for t in types):
            return path, f"{value!r} is not of type {', '.join(repr(t) for t in types)}"
    if "const" in schema and not _same(value, schema["const"]):
        return path, f"{schema['const']!r} was expected"
    if "enum" in schema and not any(_same(value, e) for e in schema["enum"]):
        return path, f"{value!r} is not one of {schema['enum']!r}"
    if _TYPES["number"](value):
        if "minimum" in schema and value < schema["minimum"]:
            return path, f"{value!r} is less than the minimum of {schema['minimum']!r}"
        if "maximum" in schema and value > schema["maximum"]:
            return path, f"{value!r} is greater than the maximum of {schema['maximum']!r}"
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            return path, f"{value!r} is too short" if value else f"{value!r} should be non-empty"
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return path, f"{value!r} does not match {schema['pattern']!r}"
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            return path, f"{value!r} is too short" if value else f"{value!r} should be non-empty"
        if schema.get("uniqueItems") and any(_same(a, b) for i, a in enumerate(value)
                                             for b in value[i + 1:]):
            return path, f"{value!r} has non-unique elements"
        if "items" in schema:
            for i, item in enumerate(value):
                found = _first_problem(item, schema["items"], path + (i,))
                if found:
                    return found
    if isinstance(value, dict):
        for name in schema.get("required", ()):
            if name not in value:
                return path, f"{name!r} is a required property"
        if "propertyNames" in schema:
            for name in value:
                found = _first_problem(name, schema["propertyNames"], path)
                if found:
                    return found
        props = schema.get("properties", {})
        for name, item in value.items():
            sub = props.get(name, schema.get("additionalProperties"))
            if sub is False:
                return path, f"additional property {name!r} is not allowed"
            if isinstance(sub, dict):
                found = _first_problem(item, sub, path + (name,))
                if found:
                    return found
    return None


def _field(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
