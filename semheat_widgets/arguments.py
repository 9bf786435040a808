"""Checks for the arguments of public entry points: one :class:`~.errors.SemheatError` line
naming the argument, before any work is done.

Names (concepts, classes) are normalised before they are compared or stored
(:func:`clean_name`): Unicode NFC, and no invisible format characters — zero-width spaces and
joiners, the byte-order mark, bidirectional embeddings, overrides and isolates — so ``"wet\\u200b"``
is the concept ``"wet"``, a name of zero-width characters only is empty, and no right-to-left
override ever reaches a report.
"""

from __future__ import annotations

import os
import unicodedata
from numbers import Integral
from typing import TYPE_CHECKING

from .errors import SemheatIndexError, SemheatTypeError, SemheatValueError

if TYPE_CHECKING:
    import numpy as np


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def as_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int (bools refused), optionally within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SemheatTypeError(f"{name} must be an integer, got {_short(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise SemheatValueError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SemheatValueError(f"{name} must be at most {maximum}, got {value}")
    return value


def as_index(value, n: int, name: str = "index") -> int:
    """A record index ``0 <= value < n``; negative indices are refused, not wrapped."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SemheatTypeError(f"{name} must be an integer record index, got {_short(value)}")
    value = int(value)
    if not 0 <= value < n:
        raise SemheatIndexError(f"{name} {value} is outside the bundle's records 0..{n - 1}")
    return value


def as_indices(values, n: int, name: str = "indices") -> np.ndarray:
    """A 1-D array of record indices, each ``0 <= i < n``."""
    import numpy as np  # here, not at import: the job options (``..jobs``) check with this module

    if isinstance(values, (str, bytes)) or values is None:
        raise SemheatTypeError(f"{name} must be a sequence of record indices, got "
                               f"{_short(values)}")
    if isinstance(values, Integral) and not isinstance(values, bool):
        values = [values]
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError):
        raise SemheatTypeError(f"{name} must be a sequence of record indices") from None
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise SemheatTypeError(f"{name} must be a flat sequence of integers, got "
                               f"{_short(values)}")
    arr = arr.astype(np.int64)
    bad = arr[(arr < 0) | (arr >= n)]
    if len(bad):
        raise SemheatIndexError(f"{name}: record {int(bad[0])} is outside the bundle's records "
                                f"0..{n - 1}")
    return arr


def as_path(value, name: str = "path") -> str:
    """A file-system path given as ``str`` or ``os.PathLike``."""
    if not isinstance(value, (str, os.PathLike)) or (isinstance(value, str) and not value):
        raise SemheatTypeError(f"{name} must be a path (str or os.PathLike), got "
                               f"{_short(value)}")
    path = os.fspath(value)
    if "\x00" in (path if isinstance(path, str) else path.decode(errors="replace")):
        raise SemheatValueError(f"{name} must not contain a NUL character, got {_short(value)}")
    return path


def choice(value, options, name: str):
    """``value`` if it is one of ``options``; otherwise a line listing them."""
    options = list(options)
    try:
        ok = value in options
    except TypeError:
        ok = False
    if not ok:
        raise SemheatValueError(f"unknown {name} {_short(value)}; choose one of {options}")
    return value


def clean_name(text, what: str = "name") -> str:
    """``text`` as a stored name: NFC, invisible format characters removed, whitespace
    collapsed; a one-line error if nothing visible is left."""
    if not isinstance(text, str):
        raise SemheatTypeError(f"{what} must be a string, got {_short(text)}")
    text = unicodedata.normalize("NFC", text)
    text = "".join(ch for ch in text if unicodedata.category(ch) not in ("Cf", "Cc", "Cs")
                   or ch in "\t\n")
    text = " ".join(text.split())
    if not text:
        raise SemheatValueError(f"{what} must hold visible characters, got {_short(text)}")
    return text
