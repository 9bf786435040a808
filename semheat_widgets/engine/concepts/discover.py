"""Concept discovery: which phrases of an open vocabulary separate a set of inputs from its
reference, in the classifier's aligned space and in the VLM's image space.

For a selection ``S`` of records (a heatmap cell, a class's mistakes, a slice, a mask) and a
reference ``R`` (by default the correct inputs of the same *predicted* class; ``"true"``: the
correct inputs of the same true class), every phrase ``p`` of a vocabulary, with its unit text
embedding ``t_p``, gets a class-matched standardised mean difference in each space::

    s_ip = cos(e_i, t_p)                 e_i = A z_i (aligned) or the image embedding
    d_p  = mean_{i in S} (s_ip - mu_{c(i), p}) / sigma_p

where ``mu_{c,p}`` is the mean score of the reference inputs of record ``i``'s class ``c``
(predicted or true, as the reference says) and ``sigma_p`` the pooled spread of the
selection's residuals and the reference's within-class scores. Because a mean of scores is the
score of the mean embedding, the mean difference is exact at the cost of one pass of column
sums over the embeddings and one small matmul, whatever the sizes; the spreads are quadratic
forms of the residual embeddings' second moments, estimated from at most
:data:`REFERENCE_SAMPLE` rows of the selection and of the reference. The
uncertainty is the analytic standard error of Cohen's d,
``sqrt(1/n_S + 1/n_R + d^2 / (2 (n_S + n_R)))`` (Hedges and Olkin 1985).

A phrase high in the aligned space and not in the image space is the *classifier's own
association*: what its features read into the input, not what the image shows.

Text embeddings of a vocabulary are computed once per VLM and kept in the user cache, keyed on
a digest of the VLM's weights and of the prompts (:func:`phrase_embeddings`); a vocabulary is
found for a bundle's VLM through a registry, like the models (:func:`register_vocabulary`).
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ...errors import SemheatError
from ..vectors import unit_rows

REFERENCE_SAMPLE = 4000  # reference rows whose scores estimate the within-class spread
REFERENCES = ("predicted", "true")
SPACES = ("aligned", "image")
_ARRAY = {"aligned": "aligned", "image": "image_emb"}
CHUNK = 65536


@dataclass(frozen=True)
class Vocabulary:
    """Named phrases, each with the prompts that embed it, and where the words came from."""

    names: tuple[str, ...]
    prompts: tuple[tuple[str, ...], ...]
    source: str = ""

    def __post_init__(self):
        if len(self.names) != len(self.prompts):
            raise SemheatError("a vocabulary needs one prompt list per phrase")
        if len(set(self.names)) != len(self.names):
            raise SemheatError("a vocabulary's phrases must be distinct")
        if not self.names:
            raise SemheatError("the vocabulary is empty")

    @classmethod
    def from_phrases(cls, phrases: Sequence[str], templates: Sequence[str] = ("{}",),
                     source: str = "") -> "Vocabulary":
        seen, names = set(), []
        for p in phrases:
            p = p.strip() if isinstance(p, str) else ""
            if p and p not in seen:
                seen.add(p)
                names.append(p)
        return cls(tuple(names), tuple(tuple(t.format(p) for t in templates) for p in names),
                   source)

    def without(self, drop) -> "Vocabulary":
        """The vocabulary less some phrases (e.g. the class names)."""
        drop = {d.lower() for d in drop}
        keep = [i for i, n in enumerate(self.names) if n.lower() not in drop]
        return Vocabulary(tuple(self.names[i] for i in keep),
                          tuple(self.prompts[i] for i in keep), self.source)

    def __len__(self) -> int:
        return len(self.names)


@dataclass
class PhraseEmbeddings:
    """A vocabulary embedded by one VLM: ``P x m`` unit vectors, one per phrase."""

    vocabulary: Vocabulary
    vectors: np.ndarray

    def __post_init__(self):
        self.vectors = np.ascontiguousarray(self.vectors, dtype=np.float32)
        if self.vectors.shape[0] != len(self.vocabulary):
            raise SemheatError("one vector per phrase expected")

    def without(self, drop) -> "PhraseEmbeddings":
        drop = {d.lower() for d in drop}
        keep = [i for i, n in enumerate(self.vocabulary.names) if n.lower() not in drop]
        voc = self.vocabulary
        return PhraseEmbeddings(Vocabulary(tuple(voc.names[i] for i in keep),
                                           tuple(voc.prompts[i] for i in keep), voc.source),
                                self.vectors[keep])


# -- vocabulary registry ------------------------------------------------------------------
_vocabularies: dict[str, Callable] = {}


def register_vocabulary(prefix: str, loader: Callable) -> None:
    """``loader(parts: tuple[str, ...]) -> Vocabulary``: the default vocabulary of the VLMs
    with ids ``prefix:...`` (the toy zoo registers ``toy:`` and ``open_clip:``)."""
    _vocabularies[prefix] = loader


def vocabulary_for(vlm_id: str) -> Vocabulary:
    """The registered default vocabulary of a VLM id."""
    from ..models import registry as models

    parsed = models.ModelId.parse(vlm_id)
    if parsed.prefix not in _vocabularies:
        models._load_plugins()
    if parsed.prefix not in _vocabularies:
        raise SemheatError(f"no vocabulary registered for VLM {vlm_id!r}; pass vocabulary=")
    return _vocabularies[parsed.prefix](parsed.parts)


# -- text embeddings, cached -----------------------------------------------------------------
def text_cache_dir() -> Path:
    env = os.environ.get("SEMHEAT_TEXT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "semheat_widgets" / "text_embeddings"


def weights_digest(vlm) -> str:
    """A digest of the VLM's weights (computed once per VLM object)."""
    cached = getattr(vlm, "_semheat_weights_digest", None)
    if cached:
        return cached
    h = hashlib.sha256(str(getattr(vlm, "name", "")).encode())
    for key, value in sorted(vlm.model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    digest = h.hexdigest()[:32]
    try:
        vlm._semheat_weights_digest = digest
    except AttributeError:
        pass
    return digest


def _prompts_digest(vocabulary: Vocabulary) -> str:
    h = hashlib.sha256()
    for name, prompts in zip(vocabulary.names, vocabulary.prompts):
        h.update(name.encode() + b"\x00" + b"\x01".join(p.encode() for p in prompts) + b"\x02")
    return h.hexdigest()[:32]


def phrase_embeddings(vlm, vocabulary: Vocabulary, cache_dir=None,
                      progress: bool = False) -> PhraseEmbeddings:
    """Embed every phrase, ``t_p = norm(mean_prompts norm(g_T(prompt)))``; read from the user
    cache when this VLM (same weights) embedded the same prompts before, else computed and
    written there atomically."""
    from ...safe_io import atomic_write

    folder = Path(cache_dir) if cache_dir is not None else text_cache_dir()
    path = folder / f"{weights_digest(vlm)}-{_prompts_digest(vocabulary)}.npy"
    if path.is_file():
        try:
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape[0] == len(vocabulary):
                return PhraseEmbeddings(vocabulary, vectors)
        except (OSError, ValueError):
            pass  # a damaged cache entry is recomputed and replaced
    flat = [p for prompts in vocabulary.prompts for p in prompts]
    owner = np.repeat(np.arange(len(vocabulary)), [len(p) for p in vocabulary.prompts])
    out = np.zeros((len(vocabulary), vlm.embed_dim), np.float64)
    step = 4096
    chunks = range(0, len(flat), step)
    if progress and len(flat) > step:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="embedding the vocabulary", unit="chunk")
    for s in chunks:
        emb = vlm.encode_texts(flat[s:s + step]).numpy()
        np.add.at(out, owner[s:s + step], emb)
    vectors = unit_rows(out).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, vectors, allow_pickle=False)
    atomic_write(path, buf.getvalue())
    return PhraseEmbeddings(vocabulary, vectors)


# -- discovery -------------------------------------------------------------------------------
@dataclass
class Discovery:
    """Phrases ranked by effect, both spaces side by side (see the module docstring)."""

    phrases: list[str]
    prompts: list[list[str]]
    effect: dict[str, np.ndarray]  # space -> P float (Cohen's d, class-matched)
    se: dict[str, np.ndarray]  # space -> P float
    rank: dict[str, np.ndarray]  # space -> P int (1 = strongest)
    n_selection: int
    n_reference: int
    reference: str
    order_by: str
    k: int
    meta: dict = field(default_factory=dict)

    def top(self, k: int | None = None, space: str | None = None) -> list[dict]:
        space = space or self.order_by
        k = self.k if k is None else k
        order = np.argsort(self.rank[space], kind="stable")[:k]
        return [self.row(i) for i in order]

    def row(self, i: int) -> dict:
        out = {"phrase": self.phrases[i], "prompts": list(self.prompts[i])}
        for s in self.effect:
            out[f"effect_{s}"] = round(float(self.effect[s][i]), 4)
            out[f"se_{s}"] = round(float(self.se[s][i]), 4)
            out[f"rank_{s}"] = int(self.rank[s][i])
        return out

    def rank_of(self, phrase: str, space: str | None = None) -> int:
        return int(self.rank[space or self.order_by][self.phrases.index(phrase)])

    def to_dict(self, k: int | None = None) -> dict:
        return {"n_selection": self.n_selection, "n_reference": self.n_reference,
                "reference": self.reference, "order_by": self.order_by,
                "n_phrases": len(self.phrases), **self.meta, "phrases": self.top(k)}


def as_indices(n: int, selection) -> np.ndarray:
    """Record indices of a selection: a boolean mask, indices, or a query ``Selection``."""
    if hasattr(selection, "indices") and hasattr(selection, "total"):
        selection = selection.indices
    sel = np.asarray(selection)
    if sel.dtype == bool:
        if sel.shape != (n,):
            raise SemheatError(f"a selection mask needs {n} values, got {sel.shape}")
        return np.flatnonzero(sel)
    if sel.size and sel.dtype.kind not in "iu":
        raise SemheatError("a selection is a boolean mask or record indices")
    sel = np.unique(sel.astype(np.int64).ravel())
    if sel.size and (sel[0] < 0 or sel[-1] >= n):
        raise SemheatError(f"selection indices must be in 0..{n - 1}")
    return sel


def _class_means(emb, rows: np.ndarray, cls: np.ndarray, n_classes: int) -> np.ndarray:
    """``K x m`` mean embedding of the rows of each class (one pass of column sums)."""
    sums = np.zeros((n_classes, emb.shape[1]), np.float64)
    for s in range(0, len(rows), CHUNK):
        r = rows[s:s + CHUNK]
        block = np.asarray(emb[r], dtype=np.float32)
        c = cls[s:s + CHUNK]
        for k in np.unique(c):
            sums[k] += block[c == k].sum(0, dtype=np.float64)
    counts = np.bincount(cls, minlength=n_classes)
    return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32), counts


def effect_sizes(emb, sel: np.ndarray, sel_cls: np.ndarray, ref: np.ndarray,
                 ref_cls: np.ndarray, vectors: np.ndarray, n_classes: int,
                 sample: int = REFERENCE_SAMPLE, seed: int = 0):
    """Class-matched Cohen's d of every phrase (columns of ``vectors.T``), and its SE.

    No ``n x P`` product anywhere. The mean difference is exact: the mean of the scores is the
    score of the mean embedding. The spreads too are read in embedding space: the variance of
    phrase ``p``'s residual scores over some rows is ``t_p' M t_p``, with ``M`` the second
    moment of those rows' residual *embeddings* (``e_i - mean_{c(i)}``), estimated from at most
    ``sample`` rows of the selection (about its own mean) and of the reference (about each
    class's mean). That is two ``sample x m x m`` products and one ``P x m x m`` whatever the
    selection, against ``sample x m x P`` per spread read phrase by phrase — 10k phrases cost
    what 512 did."""
    means, _ = _class_means(emb, ref, ref_cls, n_classes)
    sel_mean, _ = _class_means(emb, sel, np.zeros(len(sel), np.int64), 1)
    weights = np.bincount(sel_cls, minlength=n_classes) / len(sel)
    diff = (sel_mean[0] - weights @ means) @ vectors.T  # P: mean_i (s_ip - mu_{c(i),p})
    rng = np.random.default_rng(seed)

    def moment(rows, cls, about_own_mean: bool):  # m x m second moment of residual embeddings
        pick = np.sort(rng.choice(len(rows), size=min(sample, len(rows)), replace=False))
        r = np.asarray(emb[rows[pick]], dtype=np.float64) - means[cls[pick]]
        if about_own_mean:
            r -= r.mean(0)
        return r.T @ r / len(r)

    # the selection's spread about its own mean, the reference's about each class's mean
    m = ((moment(sel, sel_cls, True) + moment(ref, ref_cls, False)) / 2).astype(np.float32)
    var = np.einsum("pm,pm->p", vectors @ m, vectors, dtype=np.float64)
    d = diff / np.sqrt(np.maximum(var, 1e-12))
    n1, n2 = len(sel), len(ref)
    se = np.sqrt(1 / n1 + 1 / n2 + d ** 2 / (2 * (n1 + n2)))
    return d, se


def reference_rows(bundle, sel: np.ndarray, reference, perturbation="natural"):
    """Reference indices and the class each selected / reference record is matched on."""
    if isinstance(reference, str):
        if reference not in REFERENCES:
            raise SemheatError(f"reference is one of {list(REFERENCES)} or a mask, got "
                               f"{reference!r}")
        key = "prediction" if reference == "predicted" else "label"
        by = np.asarray(bundle.column(key)).astype(np.int64)
        m = bundle.mask(perturbation=perturbation) & np.asarray(bundle.column("correct"), bool)
        m[sel] = False
        m &= np.isin(by, np.unique(by[sel]))
        ref = np.flatnonzero(m)
        return ref, by[sel], by[ref], reference
    ref = as_indices(bundle.n, reference)
    ref = np.setdiff1d(ref, sel)
    return ref, np.zeros(len(sel), np.int64), np.zeros(len(ref), np.int64), "given"


def discover(bundle, selection, phrases: PhraseEmbeddings, *, k: int = 20,
             reference="predicted", order_by: str = "image", perturbation="natural",
             spaces: Sequence[str] = SPACES, sample: int = REFERENCE_SAMPLE) -> Discovery:
    """Rank every phrase by how strongly it separates ``selection`` from ``reference``."""
    sel = as_indices(bundle.n, selection)
    if len(sel) < 2:
        raise SemheatError(f"discovery needs at least 2 selected records, got {len(sel)}")
    spaces = [s for s in spaces if _ARRAY[s] in bundle.arrays]
    if not spaces:
        raise SemheatError("the bundle has neither aligned nor image embeddings")
    if order_by not in spaces:
        order_by = spaces[0]
    ref, sel_cls, ref_cls, ref_name = reference_rows(bundle, sel, reference, perturbation)
    if len(ref) < 2:
        raise SemheatError(f"the {ref_name} reference of this selection has {len(ref)} "
                           f"records: too few to compare against")
    vectors = phrases.vectors
    dims = {s: bundle.arrays[_ARRAY[s]].shape[1] for s in spaces}
    for s, m in dims.items():
        if m != vectors.shape[1]:
            raise SemheatError(f"the vocabulary's vectors have {vectors.shape[1]} dims, the "
                               f"bundle's {s} embeddings {m}: another VLM?")
    effect, se, rank = {}, {}, {}
    n_classes = max(len(bundle.classes), 1)
    for s in spaces:
        d, e = effect_sizes(bundle.arrays[_ARRAY[s]], sel, sel_cls, ref, ref_cls, vectors,
                            n_classes, sample)
        effect[s], se[s] = d, e
        r = np.empty(len(d), np.int64)
        r[np.argsort(-d, kind="stable")] = np.arange(1, len(d) + 1)
        rank[s] = r
    voc = phrases.vocabulary
    return Discovery(list(voc.names), [list(p) for p in voc.prompts], effect, se, rank,
                     len(sel), len(ref), ref_name, order_by, k,
                     {"vocabulary": voc.source})
