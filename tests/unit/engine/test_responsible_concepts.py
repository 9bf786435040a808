"""Responsible concepts read from the image against the true class's correct inputs (issue 24),
and verdicts that know their confidence: small planted faults where the earlier rankings name
the wrong concept."""

import numpy as np

from semheat_widgets.engine.localize import (DECIDE_AT, FaultLocalizer, class_reference,
                                             concept_ranking, responsibility)

NAMES = ["horns", "floppy ears"]


def _reference(n=200, seed=1):
    """Correct reference inputs of two classes, two concepts: 0 = "horns" (the tie: in the
    training data only class 1 shows it), 1 = "floppy ears" (class 1's own part)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    centres = np.array([[-1.0, -1.0], [1.0, 2.0]])
    return centres[labels] + 0.3 * rng.standard_normal((n, 2)), labels


def _encoder_fault_rows(n=40, seed=0):
    """Inputs of class 0 called class 1 by an encoder that makes them look like class 1 in
    every concept (aligned scores = class 1's row), while the images show horns only."""
    rng = np.random.default_rng(seed)
    aligned = np.array([1.0, 2.0]) + 0.1 * rng.standard_normal((n, 2))
    shown = np.array([1.0, -1.0]) + 0.1 * rng.standard_normal((n, 2))
    return aligned, shown, np.zeros(n, int), np.ones(n, int)


def _old_score(values, gt, y, yh):
    """The earlier ranking: shown unusually for the true class *and* typical of the
    prediction, min(v - GT[y], GT[yh] - GT[y])."""
    return np.minimum(values - gt[y], gt[yh] - gt[y])


def test_the_aligned_reading_credits_the_predicted_class_own_part():
    aligned, _, y, _ = _encoder_fault_rows()
    reference = class_reference(*_reference(), 2)
    ranking = concept_ranking(responsibility(aligned, y, reference), NAMES)
    assert ranking[0][0] == "floppy ears"  # the features look like class 1 in everything


def test_the_image_witness_names_the_tied_concept():
    _, shown, y, _ = _encoder_fault_rows()
    ranking = concept_ranking(responsibility(shown, y, class_reference(*_reference(), 2)), NAMES)
    assert ranking[0][0] == "horns"
    assert ranking[0][1] > ranking[1][1] + 3.0  # by a wide margin, not a rounding


def test_a_tie_the_vlm_barely_sees_in_the_predicted_class_is_still_named():
    """The predicted class's own reference images show the tied concept only a little (the VLM
    barely sees metallic on a dog) while they show another concept far more; the mistakes show
    the tie plainly. The earlier score, which asked the concept to be typical of the
    prediction, named the other concept; the contrast with the true class names the tie."""
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 100)
    centres = np.array([[0.0, 0.0], [0.2, 2.0]])  # the tie barely shows in class 1's images
    reference = centres[labels] + 0.3 * rng.standard_normal((200, 2))
    mistakes = np.array([2.0, 0.5]) + 0.1 * rng.standard_normal((40, 2))  # tie shown plainly
    y, yh = np.zeros(40, int), np.ones(40, int)
    old = concept_ranking(_old_score(mistakes, centres, y, yh), NAMES)
    new = concept_ranking(responsibility(mistakes, y, class_reference(reference, labels, 2)),
                          NAMES)
    assert old[0][0] == "floppy ears" and new[0][0] == "horns"


def test_a_class_without_enough_correct_inputs_takes_the_pooled_reference():
    values = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    mean, sd = class_reference(values, np.array([0, 0, 1]), 3)
    assert np.allclose(mean[0], [1.0, 2.0]) and np.allclose(mean[1], values.mean(0))
    assert np.allclose(mean[2], values.mean(0)) and (sd > 0).all()


def test_the_localizer_uses_the_image_scores_when_given():
    aligned, shown, y, yh = _encoder_fault_rows(10)
    reference = class_reference(*_reference(), 2)
    gt = np.array([[-1.0, -1.0], [1.0, 2.0]])
    loc = FaultLocalizer(np.eye(2), gt, rule="paper", shown_reference=reference)
    emb = np.tile([0.0, 1.0], (10, 1))
    ref_scores, ref_labels = _reference(20)
    scores = np.r_[aligned, ref_scores]  # the correct inputs give the aligned reading's reference
    labels, preds = np.r_[y, ref_labels], np.r_[yh, ref_labels]
    emb = np.r_[emb, np.eye(2)[ref_labels]]
    with_pixels = loc.localize(emb, scores, labels, preds,
                               shown_std=np.r_[shown, ref_scores])
    without = loc.localize(emb, scores, labels, preds)
    assert with_pixels.top_concepts(NAMES, 1)[:10] == [["horns"]] * 10
    assert without.top_concepts(NAMES, 1)[:10] == [["floppy ears"]] * 10


def _fitted_localizer(seed=0):
    """Three well-separated classes in concept space, a concept probe and an oracle on them."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3) * 3
    labels = np.repeat(np.arange(3), 60)
    scores = centres[labels] + 0.5 * rng.standard_normal((180, 3))
    loc = FaultLocalizer(np.eye(3), centres).fit_probe(scores[::2], labels[::2], scores[1::2],
                                                       labels[1::2])
    loc.fit_oracle_scale(centres[labels] + 0.3 * rng.standard_normal((180, 3)), labels)
    return loc, centres


def test_confidence_is_high_where_the_readers_agree_and_undecided_between():
    loc, centres = _fitted_localizer()
    # three inputs of class 0 called class 1: the features (oracle and concept profile) look
    # like class 1 (encoder), like class 0 (head), or sit halfway (undecided)
    profiles = np.array([centres[1], centres[0], (centres[0] + centres[1]) / 2])
    out = loc.localize(profiles, profiles, [0, 0, 0], [1, 1, 1])
    assert out.decided.tolist() == ["encoder", "head", "undecided"]
    assert out.confidence[0] > 0.9 and out.confidence[1] > 0.9
    assert out.confidence[2] < DECIDE_AT
    assert 0 <= out.p_head[0] < 0.1 < 0.9 < out.p_head[1] <= 1
    # a correct input has no verdict and no confidence
    right = loc.localize(centres[:1], centres[:1], [0], [0])
    assert right.decided.tolist() == [""] and right.confidence.tolist() == [0.0]


def test_the_oracle_temperature_is_chosen_by_calibration_log_loss():
    loc, _ = _fitted_localizer()
    from semheat_widgets.engine.localize import ORACLE_SCALES

    assert loc.oracle_scale_ in ORACLE_SCALES
    # noisier calibration inputs call for a cooler (smaller) scale, never a hotter one
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 60)
    noisy = FaultLocalizer(np.eye(3), np.eye(3)).fit_oracle_scale(
        np.eye(3)[labels] + 1.0 * rng.standard_normal((180, 3)), labels)
    assert noisy.oracle_scale_ <= loc.oracle_scale_


def test_a_weak_classifier_still_gets_a_reference():
    # one epoch on a small dataset: almost nothing correct — the reference falls back to the
    # pool of every input, then to the standardised scale, and never raises
    values = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 7.0]])
    labels, none_right = np.array([0, 1, 2]), np.zeros(3, bool)
    mean, sd = class_reference(values, labels, 3, none_right)
    assert np.allclose(mean, values.mean(0)) and np.allclose(sd[0], values.std(0))
    mean, sd = class_reference(values[:1], labels[:1], 3, none_right[:1])
    assert mean.shape == (3, 2) and np.allclose(mean, 0.0) and np.allclose(sd, 1.0)
    one_right = np.array([True, False, False])
    mean, _ = class_reference(values, labels, 3, one_right)  # one correct: not a pool either
    assert np.allclose(mean, values.mean(0))
