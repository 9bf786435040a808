"""Concept discovery and error slices on small synthetic bundles with a planted answer."""

import numpy as np
import pytest

from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.engine.concepts.discover import (PhraseEmbeddings, Vocabulary,
                                                      effect_sizes, phrase_embeddings,
                                                      weights_digest)
from semheat_widgets.errors import SemheatError

DIM, N_PHRASES, K = 24, 40, 4


def _unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def planted(seed=0, n=2400, slice_size=120, plant=True, aligned_only=None):
    """Natural inputs of K classes; ``slice_size`` inputs of classes 1..3 are predicted 0 and
    (with ``plant``) show phrase 7 in the image (and the aligned space). Phrase
    ``aligned_only`` shows in the aligned embeddings of the slice, not in its images."""
    rng = np.random.default_rng(seed)
    phrases = _unit(rng.standard_normal((N_PHRASES, DIM)))
    centres = _unit(rng.standard_normal((K, DIM))) * 2.0
    labels = rng.integers(0, K, n)
    image = centres[labels] + 0.5 * rng.standard_normal((n, DIM))
    preds = labels.copy()
    noise = rng.random(n) < 0.06  # scattered mistakes everywhere, no concept behind them
    preds[noise] = (labels[noise] + rng.integers(1, K, noise.sum())) % K
    cand = np.flatnonzero((labels != 0) & ~noise)
    tied = rng.choice(cand, slice_size, replace=False)
    preds[tied] = 0
    if plant:
        image[tied] += 1.5 * phrases[7]
    aligned = image + 0.3 * rng.standard_normal((n, DIM))
    if aligned_only is not None:
        aligned[tied] += 1.5 * phrases[aligned_only]
    image, aligned = _unit(image), _unit(aligned)
    split = np.array(["fit", "calib", "eval"])[rng.integers(0, 3, n)]
    columns = {"id": np.arange(n), "split": split, "perturbation": np.full(n, "natural"),
               "source_id": np.arange(n), "label": labels.astype(np.int16),
               "prediction": preds.astype(np.int16), "correct": labels == preds,
               "fault": np.where(labels == preds, "", "encoder")}
    scores = aligned @ phrases[:3].T
    bundle = Bundle.create(name="planted", classes=[f"c{k}" for k in range(K)],
                           concepts=[{"name": f"k{j}", "prompts": [f"k{j}"]} for j in range(3)],
                           columns=columns, arrays={"aligned": aligned, "image_emb": image,
                                                    "scores": scores},
                           state={"concept_embeddings": phrases[:3],
                                  "standardizer.mean": scores.mean(0),
                                  "standardizer.std": scores.std(0)})
    voc = Vocabulary.from_phrases([f"phrase {j}" for j in range(N_PHRASES)])
    truth = np.zeros(n, bool)
    truth[tied] = True
    return bundle, PhraseEmbeddings(voc, phrases), truth


def test_discover_ranks_the_planted_phrase_first_in_both_spaces():
    bundle, phrases, truth = planted(aligned_only=12)
    d = bundle.discover(truth, phrases, k=5, reference="true")
    assert d.n_selection == truth.sum()
    assert d.rank_of("phrase 7", "image") == 1
    assert d.rank_of("phrase 7", "aligned") <= 2
    # the classifier's own association: high in the aligned space only
    assert d.rank_of("phrase 12", "aligned") <= 2
    assert d.rank_of("phrase 12", "image") > 10
    top = d.top(3)
    assert top[0]["phrase"] == "phrase 7" and top[0]["effect_image"] > 1.0
    assert top[0]["se_image"] > 0 and top[0]["prompts"] == ["phrase 7"]
    # against the predicted class (class 0's correct inputs) the true classes compete
    assert bundle.discover(truth, phrases, reference="predicted").rank_of("phrase 7") <= 3


def test_discover_finds_nothing_large_in_a_random_selection():
    bundle, phrases, truth = planted()
    rng = np.random.default_rng(3)
    correct = np.flatnonzero(bundle.column("correct"))
    d = bundle.discover(rng.choice(correct, 100, replace=False), phrases)
    assert np.abs(d.effect["image"]).max() < 0.6


def test_effect_sizes_equal_cohens_d_over_every_score():
    # spreads read from the residual embeddings' second moments are the spreads of the scores
    # themselves, phrase by phrase (every row used: no sampling)
    rng = np.random.default_rng(3)
    emb = rng.standard_normal((300, DIM)).astype(np.float32)
    vectors = _unit(rng.standard_normal((N_PHRASES, DIM)))
    sel, ref = np.arange(0, 60), np.arange(60, 300)
    sel_cls, ref_cls = rng.integers(0, 3, 60), rng.integers(0, 3, 240)
    d, se = effect_sizes(emb, sel, sel_cls, ref, ref_cls, vectors, 3, sample=10_000)
    scores = emb.astype(np.float64) @ vectors.T.astype(np.float64)
    mu = np.stack([scores[ref][ref_cls == k].mean(0) for k in range(3)])
    res_sel, res_ref = scores[sel] - mu[sel_cls], scores[ref] - mu[ref_cls]
    expected = res_sel.mean(0) / np.sqrt((res_sel.var(0) + (res_ref ** 2).mean(0)) / 2)
    assert np.allclose(d, expected, rtol=1e-4, atol=1e-5)
    assert np.allclose(se, np.sqrt(1 / 60 + 1 / 240 + expected ** 2 / 600), rtol=1e-4)


def test_discover_rejects_bad_selections():
    bundle, phrases, truth = planted()
    with pytest.raises(SemheatError, match="at least 2"):
        bundle.discover(np.array([3]), phrases)
    with pytest.raises(SemheatError, match="reference is one of"):
        bundle.discover(truth, phrases, reference="other")
    with pytest.raises(SemheatError, match="mask needs"):
        bundle.discover(np.ones(5, bool), phrases)


def test_slices_recover_the_planted_slice_and_name_it():
    bundle, phrases, truth = planted()
    slices = bundle.slices(vocabulary=phrases, min_effect=1.0)
    best = max(slices, key=lambda s: np.isin(s.indices, np.flatnonzero(truth)).sum())
    hit = np.isin(best.indices, np.flatnonzero(truth)).sum()
    assert hit / len(best.indices) >= 0.8 and hit / truth.sum() >= 0.8
    assert best.name == "phrase 7" and best.confident
    assert best.predicted == "c0" and best.verdict == {"encoder": 1.0}
    assert [s for s in slices if s.confident] == [best]


def test_no_slice_named_with_confidence_where_nothing_was_planted():
    bundle, phrases, truth = planted(plant=False)
    assert not [s.to_dict() for s in bundle.slices(vocabulary=phrases, min_effect=1.0)
                if s.confident]


def test_text_embeddings_are_cached_per_weights(tmp_path, tiny_vlm):
    voc = Vocabulary.from_phrases(["red", "a dog", "water"], ("a photo of {}.", "{}"))
    first = phrase_embeddings(tiny_vlm, voc, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1 and files[0].name.startswith(weights_digest(tiny_vlm))
    np.testing.assert_allclose(np.linalg.norm(first.vectors, axis=1), 1, atol=1e-5)
    calls = []
    real = tiny_vlm.encode_texts
    tiny_vlm.encode_texts = lambda texts: calls.append(texts) or real(texts)
    try:
        again = phrase_embeddings(tiny_vlm, voc, cache_dir=tmp_path)
    finally:
        del tiny_vlm.encode_texts
    assert calls == [] and np.array_equal(again.vectors, first.vectors)


def test_vocabularies():
    from semheat_widgets.data.vocab import english_vocabulary, toy_vocabulary

    eng = english_vocabulary()
    assert len(eng) >= 10_000 and "long-snout" in eng.names and "on water" in eng.names
    toy = toy_vocabulary()
    assert {"wet", "water", "letters", "metal"} <= set(toy.names)
    assert "ship" not in toy.names
