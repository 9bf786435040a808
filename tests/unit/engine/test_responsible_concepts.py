"""Responsible concepts read from the image (issue 24), and verdicts that know their confidence:
small planted faults where today's ranking (aligned features) names the wrong concept."""

import numpy as np

from semheat_widgets.engine.localize import (DECIDE_AT, FaultLocalizer, concept_ranking,
                                             responsibility)

# two classes, two concepts: 0 = "horns" (the tie: typical of class 1 in its training data, rare
# in class 0), 1 = "floppy ears" (class 1's own part; class 0 never shows it)
GT = np.array([[-1.0, -1.0], [1.0, 2.0]])


def _encoder_fault_rows(n=40, seed=0):
    """Inputs of class 0 called class 1 by an encoder that makes them look like class 1 in
    every concept (aligned scores = class 1's row), while the images show horns only."""
    rng = np.random.default_rng(seed)
    aligned = GT[1] + 0.1 * rng.standard_normal((n, 2))
    shown = np.array([1.0, -1.0]) + 0.1 * rng.standard_normal((n, 2))
    return aligned, shown, np.zeros(n, int), np.ones(n, int)


def test_aligned_reading_credits_the_predicted_class_own_part():
    aligned, _, y, yh = _encoder_fault_rows()
    ranking = concept_ranking(responsibility(aligned, GT, y, yh), ["horns", "floppy ears"])
    assert ranking[0][0] == "floppy ears"  # today's ranking: the wrong concept first


def test_the_image_witness_names_the_tied_concept():
    aligned, shown, y, yh = _encoder_fault_rows()
    r = responsibility(aligned, GT, y, yh, shown, GT)
    ranking = concept_ranking(r, ["horns", "floppy ears"])
    assert ranking[0][0] == "horns"
    assert ranking[0][1] > ranking[1][1] + 1.0  # by a wide margin, not a rounding


def test_the_localizer_uses_the_image_scores_when_given():
    aligned, shown, y, yh = _encoder_fault_rows(10)
    loc = FaultLocalizer(np.eye(2), GT, rule="paper", shown_truth=GT)
    emb = np.tile([0.0, 1.0], (10, 1))
    with_pixels = loc.localize(emb, aligned, y, yh, shown_std=shown)
    without = loc.localize(emb, aligned, y, yh)
    assert (with_pixels.top_concepts(["horns", "ears"], 1) == [["horns"]] * 10)
    assert (without.top_concepts(["horns", "ears"], 1) == [["ears"]] * 10)


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
