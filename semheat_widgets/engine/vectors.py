"""Small vector operations used across the engine, written once.

Each works on NumPy arrays and on torch tensors alike (only operators both understand), so
the offline pipeline and the runtime module compute the very same formulas.
"""

from __future__ import annotations

import numpy as np

CLIP_LOGIT_SCALE = 100.0  # CLIP's learnt temperature, fixed at its usual value for zero-shot
EPS = 1e-12  # guards a denominator that can be zero (an empty or constant input)
ROW_CHUNK = 16384  # rows a chunked pass over wide (memory-mapped) arrays reads at a time
CHUNK_BYTES = 32 * 2**20  # or, by size: what one chunk of any array holds at most
SCORE_CHUNK = 262144  # rows of a narrow N x C score matrix read at a time


def row_norms(x):
    """Euclidean norm of every row."""
    return ((x * x).sum(1)) ** 0.5


def unit_rows(x):
    """Rows scaled to unit length (an all-zero row stays zero)."""
    n = row_norms(x)
    return x / (n + (n == 0))[:, None]


def zero_shot(embeddings, class_embeddings) -> np.ndarray:
    """The zero-shot class of each embedding: the nearest class text embedding (cosine)."""
    e = unit_rows(np.asarray(embeddings, dtype=np.float64))
    c = unit_rows(np.asarray(class_embeddings, dtype=np.float64))
    if len(e) == 0:
        return np.zeros(0, dtype=np.int64)
    return (e @ c.T).argmax(axis=1)


def zero_shot_probabilities(embeddings, class_embeddings,
                            scale: float = CLIP_LOGIT_SCALE) -> np.ndarray:
    """CLIP's zero-shot class probabilities: softmax of ``scale`` x cosine, per row."""
    e = unit_rows(np.atleast_2d(np.asarray(embeddings, dtype=np.float64)))
    c = unit_rows(np.asarray(class_embeddings, dtype=np.float64))
    logits = scale * (e @ c.T)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)
