"""Error slices: the mistakes grouped into coherent slices in CLIP space, each named by
concept discovery and summarised.

The idea is Domino's (Eyuboglu et al., "Domino: Discovering Systematic Errors with Cross-Modal
Embeddings", ICLR 2022): fit a mixture model over the inputs' cross-modal embeddings *together
with* whether the model erred, so that components gather inputs that are alike in the image
*and* in error, then name each component with text embeddings in the same space. This is this
project's own version of it:

- inputs are taken per predicted class ``k`` (an error slice leads the model to one class), all
  natural inputs predicted ``k``, right or wrong;
- each input is described by its image embedding *minus the mean image embedding of the correct
  inputs of its true class* (what is unusual about it for what it is), reduced by PCA, and by
  its error (1 wrong, 0 right) times ``gamma`` (the error awareness);
- a diagonal Gaussian mixture (scikit-learn) is fit with 1..``max_components`` components, the
  number chosen by BIC; a component whose inputs are mostly wrong, with at least ``min_size``
  mistakes, is a slice: its mistakes, its accuracy (share right among the component's inputs);
- confident slices of one predicted class that share their explanation (the name of one is
  among the other's top phrases) are merged into one;
- each slice is named by :func:`~.discover.discover` against the correct inputs of the slice's
  true classes (``reference="true"``), in the image space; a slice named with confidence
  (below) keeps the component's mistakes that show its name (``show`` reference SDs above their
  true class's mean on that phrase), B2T's check of a keyword against the images (Kim et al.,
  "Discovering and Mitigating Visual Biases through Keyword Explanation", CVPR 2024).

**False discoveries.** A slice is *named with confidence* only when its top phrase passes two
tests: a Benjamini-Hochberg correction at level ``fdr`` over every (slice, phrase) pair's
one-sided z-test of ``d > 0`` (``z = d / se``), and a minimal effect, the lower end of the
phrase's 95 % interval above ``min_effect`` (2.5 by default). Mistakes always
differ somewhat from correct inputs, so the significance test alone would name nearly every
slice; the minimal effect asks for a concept that sets the slice clearly apart. Both levels
were chosen on the development bundles of the fault family (see docs/discovery.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...errors import SemheatError
from .discover import PhraseEmbeddings, discover

GAMMA = 3.0
MAX_COMPONENTS = 5
MIN_SIZE = 10
PCA_DIMS = 16
FDR = 0.05
MIN_EFFECT = 2.5  # chosen on the development tie wet-ship (docs/discovery.md)
SHOW = 1.0  # a named slice keeps the mistakes that show its name by this many reference SDs


def _phrase_z(emb, idx, labels, reference, vector) -> np.ndarray:
    """Each record's score on one phrase, as a z-score among the correct inputs of its true
    class."""
    z = np.zeros(len(idx))
    score = np.asarray(emb[idx], np.float32) @ vector
    for c in np.unique(labels[idx]):
        ref = np.asarray(emb[np.flatnonzero(reference & (labels == c))], np.float32) @ vector
        mine = labels[idx] == c
        if len(ref) > 1:
            z[mine] = (score[mine] - ref.mean()) / max(float(ref.std()), 1e-9)
    return z


@dataclass
class Slice:
    indices: np.ndarray  # the slice's mistakes (record indices)
    predicted: str
    classes: dict  # true class -> count
    accuracy: float  # share right among the component's inputs
    n_component: int
    verdict: dict  # verdict -> share of the slice's mistakes
    name: str  # the top phrase
    effect: float
    effect_low: float
    q_value: float
    confident: bool
    phrases: list = field(default_factory=list)  # the top few, with both spaces

    def to_dict(self) -> dict:
        return {"name": self.name, "confident": self.confident, "size": int(len(self.indices)),
                "predicted": self.predicted, "classes": self.classes,
                "accuracy": round(self.accuracy, 4), "inputs_in_component": self.n_component,
                "verdict": self.verdict, "effect": round(self.effect, 4),
                "effect_low": round(self.effect_low, 4), "q_value": float(f"{self.q_value:.3g}"),
                "phrases": self.phrases, "indices": self.indices.tolist()}


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values)."""
    p = np.asarray(p, np.float64).ravel()
    n = len(p)
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


def _residuals(emb: np.ndarray, rows: np.ndarray, labels: np.ndarray, correct: np.ndarray,
               n_classes: int) -> np.ndarray:
    """Image embeddings minus the mean embedding of the correct inputs of their true class."""
    means = np.zeros((n_classes, emb.shape[1]), np.float32)
    for c in range(n_classes):
        m = correct & (labels == c)
        if m.any():
            means[c] = np.asarray(emb[np.flatnonzero(m)]).mean(0)
    return np.asarray(emb[rows], np.float32) - means[labels[rows]]


def find_slices(bundle, phrases: PhraseEmbeddings, *, gamma: float = GAMMA,
                max_components: int = MAX_COMPONENTS, min_size: int = MIN_SIZE,
                fdr: float = FDR, min_effect: float = MIN_EFFECT, show: float = SHOW,
                perturbation="natural",
                top_phrases: int = 5, seed: int = 0) -> list[Slice]:
    """The error slices of the misclassification task (see the module docstring), largest
    first."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    from threadpoolctl import threadpool_limits

    if "image_emb" not in bundle.arrays:
        raise SemheatError("the bundle has no image embeddings: cannot find slices")
    natural = bundle.mask(perturbation=perturbation)
    labels = np.asarray(bundle.column("label")).astype(np.int64)
    preds = np.asarray(bundle.column("prediction")).astype(np.int64)
    correct = np.asarray(bundle.column("correct"), bool)
    fault = (np.asarray(bundle.column("fault")).astype(str) if bundle.has_column("fault")
             else np.full(bundle.n, "", dtype=str))
    emb = bundle.arrays["image_emb"]
    K = len(bundle.classes)
    found = []
    for k in range(K):
        rows = np.flatnonzero(natural & (preds == k))
        wrong = ~correct[rows]
        if wrong.sum() < min_size:
            continue
        resid = _residuals(emb, rows, labels, natural & correct, K)
        dims = int(min(PCA_DIMS, len(rows) - 1, resid.shape[1]))
        x = PCA(dims, random_state=seed).fit_transform(resid)
        x /= max(float(x[:, 0].std()), 1e-9)  # first component at unit spread
        x = np.c_[x, gamma * wrong]
        best = None
        for c in range(1, max_components + 1):
            if c > len(rows) // max(min_size, 2):
                break
            with threadpool_limits(1):  # tiny fits: threads only spin on a busy machine
                gm = GaussianMixture(c, covariance_type="diag", random_state=seed,
                                     reg_covar=1e-4, n_init=2, init_params="k-means++").fit(x)
            bic = gm.bic(x)
            if best is None or bic < best[0]:
                best = (bic, gm)
        assign = best[1].predict(x)
        for comp in np.unique(assign):
            members = assign == comp
            mistakes = members & wrong
            if mistakes.sum() < min_size or mistakes.sum() <= members.sum() / 2:
                continue
            idx = rows[mistakes]
            true, counts = np.unique(labels[idx], return_counts=True)
            verdicts, vc = np.unique(fault[idx], return_counts=True)
            found.append({"indices": idx, "k": k, "n_component": int(members.sum()),
                          "accuracy": float(1 - mistakes.sum() / members.sum()),
                          "classes": {bundle.classes[t]: int(n) for t, n in
                                      sorted(zip(true, counts), key=lambda a: -a[1])},
                          "verdict": {str(v): round(float(n / len(idx)), 4)
                                      for v, n in zip(verdicts, vc) if str(v)}})
    if not found:
        return []
    from scipy.stats import norm

    named = []
    for f in found:
        try:
            d = discover(bundle, f["indices"], phrases, reference="true", order_by="image",
                         perturbation=perturbation)
        except SemheatError:
            d = None
        named.append(d)
    pvals = np.concatenate([norm.sf(d.effect["image"] / d.se["image"]) for d in named
                            if d is not None]) if any(d is not None for d in named) else []
    q_all = _bh(pvals) if len(pvals) else []
    out, offset = [], 0
    for f, d in zip(found, named):
        if d is None:
            out.append(Slice(f["indices"], bundle.classes[f["k"]], f["classes"], f["accuracy"],
                             f["n_component"], f["verdict"], "", 0.0, 0.0, 1.0, False))
            continue
        P = len(d.phrases)
        q = q_all[offset:offset + P]
        offset += P
        top = int(np.argmin(d.rank["image"]))
        eff, se = float(d.effect["image"][top]), float(d.se["image"][top])
        low = eff - 1.96 * se
        confident = bool(q[top] < fdr and low > min_effect)
        idx = f["indices"]
        if confident:  # the named slice: the component's mistakes that show its name
            z = _phrase_z(emb, idx, labels, natural & correct, phrases.vectors[top])
            if (z > show).sum() >= min_size:
                idx = idx[z > show]
        out.append(Slice(idx, bundle.classes[f["k"]], f["classes"], f["accuracy"],
                         f["n_component"], f["verdict"], d.phrases[top], eff, low,
                         float(q[top]), confident, d.top(top_phrases, "image")))
    out = _merge_same_name(bundle, out, phrases, labels, natural & correct, emb, perturbation,
                           top_phrases, show, min_size)
    out.sort(key=lambda s: -len(s.indices))
    return out


def _merge_same_name(bundle, slices, phrases, labels, reference, emb, perturbation, top_phrases,
                     show, min_size):
    """Confident slices of one predicted class that share their explanation (the name of one
    is among the other's top phrases) are one slice: merged, and named again."""
    done = False
    while not done:
        done = True
        for a in range(len(slices)):
            for b in range(a + 1, len(slices)):
                x, y = slices[a], slices[b]
                if not (x.confident and y.confident and x.predicted == y.predicted):
                    continue
                if x.name not in {p["phrase"] for p in y.phrases} and \
                        y.name not in {p["phrase"] for p in x.phrases}:
                    continue
                idx = np.union1d(x.indices, y.indices)
                d = discover(bundle, idx, phrases, reference="true", order_by="image",
                             perturbation=perturbation)
                top = int(np.argmin(d.rank["image"]))
                eff, se = float(d.effect["image"][top]), float(d.se["image"][top])
                classes: dict = {}
                for c in labels[idx]:
                    classes[bundle.classes[c]] = classes.get(bundle.classes[c], 0) + 1
                n_comp = x.n_component + y.n_component
                right = x.accuracy * x.n_component + y.accuracy * y.n_component
                verdict = {k: round((x.verdict.get(k, 0) * len(x.indices)
                                     + y.verdict.get(k, 0) * len(y.indices)) / len(idx), 4)
                           for k in set(x.verdict) | set(y.verdict)}
                slices[a] = Slice(idx, x.predicted, dict(sorted(classes.items(),
                                                                key=lambda kv: -kv[1])),
                                  right / n_comp, n_comp, verdict, d.phrases[top], eff,
                                  eff - 1.96 * se, max(x.q_value, y.q_value), True,
                                  d.top(top_phrases, "image"))
                del slices[b]
                done = False
                break
            if not done:
                break
    return slices
