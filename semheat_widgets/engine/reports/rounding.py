"""How reports round their figures (one place)."""

from __future__ import annotations

import math

import numpy as np

DIGITS = 4  # figures are rounded to this many decimals in reports


def rounded(x: float | None, nd: int = DIGITS) -> float | None:
    """``x`` rounded to ``nd`` decimals; ``None`` for a missing or NaN figure."""
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def share(hits) -> float | None:
    """The share of true values in ``hits``, rounded; ``None`` when there are none."""
    hits = np.asarray(hits)
    return rounded(float(hits.mean())) if hits.size else None
