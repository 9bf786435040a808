"""A bundle's open vocabulary: concepts added after it was built, and phrases embedded by its VLM.

An added concept is scored from the cached aligned embeddings and kept beside the built score
matrix (``bundle._extra``: name, prompts, unit vector, scores, reference mean and spread) until
the bundle is saved, when it is folded into the arrays, the concept list and the state. The
phrase embeddings are what :meth:`.core.Bundle.discover` and :meth:`.core.Bundle.slices` rank.
"""

from __future__ import annotations

import numpy as np

from ...errors import SemheatError, SemheatTypeError
from ..vectors import SCORE_CHUNK


def add_concept(bundle, name, prompts, vlm, vector) -> int:
    """:meth:`.core.Bundle.add_concept` (see there): the new column's index."""
    from ..concepts.bank import ConceptBank

    bank = ConceptBank()
    concept = bank.add(name, prompts)
    if concept.name in bundle.concept_names:
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
    aligned = bundle.arrays["aligned"]
    if vector.shape[0] != aligned.shape[1]:
        raise SemheatError(f"concept vector has {vector.shape[0]} dims, the aligned "
                           f"embeddings {aligned.shape[1]}")
    scores = np.empty(bundle.n, np.float32)
    for s in range(0, bundle.n, SCORE_CHUNK):
        scores[s:s + SCORE_CHUNK] = aligned[s:s + SCORE_CHUNK] @ vector
    if not np.isfinite(scores).all():
        raise SemheatError(f"the bundle's aligned embeddings hold NaN or inf: cannot score "
                           f"{concept.name!r} (the arrays/aligned.npy file is damaged)")
    ref = scores[bundle.mask(perturbation="natural", split="fit")].astype(np.float64)
    if len(ref) < 2:
        raise SemheatError("the bundle has too few natural 'fit' records to standardise")
    if not ref.std() > 0:
        raise SemheatError(f"concept {concept.name!r} scores the same on every reference "
                           f"input: its z-scores would be meaningless")
    bundle._extra.append({"name": concept.name, "prompts": list(concept.prompts),
                          "vector": vector, "scores": scores,
                          "mean": ref.mean(), "std": ref.std()})
    return len(bundle.concept_names) - 1


def concept_scores(bundle, j: int, rows):
    """The raw scores of concept ``j`` (built or added) at ``rows`` (a memory-map read)."""
    c0 = bundle.arrays["scores"].shape[1]
    return bundle.arrays["scores"][rows, j] if j < c0 else bundle._extra[j - c0]["scores"][rows]


def all_scores(bundle, rows):
    """The score matrix at ``rows`` (all if None) with the added concepts' columns."""
    base = bundle.arrays["scores"]
    block = base if rows is None else base[rows]
    if not bundle._extra:
        return block
    extra = np.stack([e["scores"] if rows is None else e["scores"][rows]
                      for e in bundle._extra], axis=1)
    return np.concatenate([np.asarray(block), extra], axis=1)


def all_embeddings(bundle) -> np.ndarray:
    """The concepts' unit text embeddings, the added ones' vectors included."""
    base = np.asarray(bundle.state["concept_embeddings"])
    if not bundle._extra:
        return base
    return np.concatenate([base, np.stack([e["vector"] for e in bundle._extra])])


def standardizer_arrays(bundle) -> tuple[np.ndarray, np.ndarray]:
    """The standardiser's mean and spread, the added concepts' included (float32)."""
    mean = np.r_[bundle.state["standardizer.mean"], [e["mean"] for e in bundle._extra]]
    std = np.r_[bundle.state["standardizer.std"], [e["std"] for e in bundle._extra]]
    return mean.astype(np.float32), std.astype(np.float32)


def merged_for_save(bundle):
    """Arrays, concept list and state with the added concepts folded in."""
    arrays = dict(bundle.arrays)
    concepts = list(bundle.manifest["concepts"])
    state = dict(bundle.state)
    if bundle._extra:
        extra_scores = np.stack([e["scores"] for e in bundle._extra], axis=1)
        arrays["scores"] = np.concatenate([np.asarray(bundle.arrays["scores"]),
                                           extra_scores.astype(np.float32)], axis=1)
        concepts += [{"name": e["name"], "prompts": e["prompts"]} for e in bundle._extra]
        state["concept_embeddings"] = all_embeddings(bundle)
        state["standardizer.mean"], state["standardizer.std"] = standardizer_arrays(bundle)
    return arrays, concepts, state


def phrase_embeddings(bundle, vocabulary, vlm, cache_dir):
    """:meth:`.core.Bundle.phrase_embeddings` (remembered on the bundle, per vocabulary)."""
    from ..concepts.discover import PhraseEmbeddings, vocabulary_for
    from ..concepts.discover import phrase_embeddings as embed
    from ..models.registry import load_vlm

    if isinstance(vocabulary, PhraseEmbeddings):
        return vocabulary
    key = id(vocabulary) if vocabulary is not None else None
    memo = bundle.__dict__.setdefault("_phrases", {})
    if key in memo and (vocabulary is None or memo[key][0] is vocabulary):
        return memo[key][1]
    voc = vocabulary if vocabulary is not None else vocabulary_for(bundle.models.vlm)
    vlm = vlm if vlm is not None else load_vlm(bundle.models.vlm)
    out = embed(vlm, voc, cache_dir=cache_dir, progress=True)
    memo[key] = (vocabulary, out)
    return out

