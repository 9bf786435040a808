"""Read small pickled ``dict[str, str | bytes]`` files without running any code in them.

A pickle can name any importable callable (``os.system``, ``builtins.eval`` …) and have the
unpickler call it. :class:`NoGlobalsUnpickler` refuses to look up *any* global, which is all a
pickle needs to run code; plain dicts, lists, tuples, strings, bytes (protocol 3+), numbers,
booleans and ``None`` need no globals, so data files made of those still load.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from ..errors import SemheatError

MAX_PICKLE_BYTES = 64 * 2**20


class NoGlobalsUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global and every persistent id."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused to load a persistent id")


def loads_str_dict(data: bytes, source="pickle") -> dict:
    """Unpickle ``data`` with :class:`NoGlobalsUnpickler`; it must hold a dict of
    ``str -> str | bytes``. Anything else raises a :class:`SemheatError` naming ``source``."""
    try:
        obj = NoGlobalsUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as exc:
        raise SemheatError(f"unsafe or invalid pickle {source}: {exc}") from None
    except Exception as exc:  # truncated or malformed data: no code can have run
        raise SemheatError(f"invalid pickle {source}: {type(exc).__name__}: {exc}") from None
    if not isinstance(obj, dict):
        raise SemheatError(f"pickle {source} holds a {type(obj).__name__}, expected a dict")
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, (str, bytes)):
            raise SemheatError(f"pickle {source} maps {type(key).__name__} -> "
                               f"{type(value).__name__}, expected str -> str or bytes")
    return obj


def load_str_dict(path) -> dict:
    """Read the pickle file ``path`` safely (see :func:`loads_str_dict`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PICKLE_BYTES:
            raise SemheatError(f"pickle {path} is {size} bytes, over the "
                               f"{MAX_PICKLE_BYTES}-byte limit")
        data = path.read_bytes()
    except FileNotFoundError:
        raise SemheatError(f"pickle file not found: {path}") from None
    except OSError as exc:
        raise SemheatError(f"cannot read pickle {path}: {exc}") from None
    return loads_str_dict(data, source=path)
