import numpy as np
import pytest

from semheat_widgets.engine.localize import (FaultLocalizer, concept_ranking, responsibility,
                                             verdict_counts)
from semheat_widgets.engine.vectors import zero_shot


from semheat_widgets.errors import SemheatError

# Three classes with orthogonal text embeddings in a 4-d VLM space.
CLASS_EMB = np.eye(4)[:3]
# Ground-truth heatmap rows (standardised) over 3 concepts: each class has "its" concept.
GT = np.array([[2.0, -1.0, -1.0], [-1.0, 2.0, -1.0], [-1.0, -1.0, 2.0]])


def _case(aligned_class, scores, label, pred):
    aligned = CLASS_EMB[aligned_class][None] + 0.01
    return aligned, np.asarray(scores, float)[None], np.array([label]), np.array([pred])


def test_oracle_matching_the_true_class_blames_the_head():
    loc = FaultLocalizer(CLASS_EMB, GT, "paper").localize(*_case(0, [2, -1, -1], label=0, pred=1))
    assert loc.oracle_pred[0] == 0
    assert loc.oracle_verdict[0] == "head" and loc.verdict[0] == "head"
    assert loc.heatmap_verdict[0] == "head"  # the scores look like class 0 too


def test_oracle_matching_the_prediction_blames_the_encoder():
    loc = FaultLocalizer(CLASS_EMB, GT, "paper").localize(*_case(1, [-1, 2, -1], label=0, pred=1))
    assert loc.oracle_verdict[0] == "encoder" and loc.verdict[0] == "encoder"
    assert loc.heatmap_verdict[0] == "encoder"


def test_undecided_oracle_defers_to_the_heatmap_vote():
    # The oracle sees class 2 (neither y=0 nor ŷ=1); the scores resemble ŷ's row.
    loc = FaultLocalizer(CLASS_EMB, GT, "paper").localize(*_case(2, [-1, 1.5, -0.5], label=0,
                                                                pred=1))
    assert loc.oracle_verdict[0] == "undecided"
    assert loc.heatmap_verdict[0] == "encoder" and loc.verdict[0] == "encoder"


def test_heatmap_vote_abstains_without_reference_rows():
    gt = GT.copy()
    gt[1] = np.nan  # no held-out examples of class 1
    loc = FaultLocalizer(CLASS_EMB, gt, "paper").localize(*_case(2, [-1, 2, -1], label=0, pred=1))
    assert loc.heatmap_verdict[0] == "undecided" and loc.verdict[0] == "undecided"


def test_correct_inputs_get_no_verdict():
    loc = FaultLocalizer(CLASS_EMB, GT, "paper").localize(*_case(0, [2, -1, -1], label=0, pred=0))
    assert loc.verdict[0] == "" and np.isnan(loc.responsibility[0]).all()


def test_responsible_concepts_are_what_an_input_shows_beyond_its_true_class():
    # True class 0, predicted 2: the input shows concept 2 far more than class 0 does.
    scores = [[1.5, -1.0, 2.5]]
    spread = np.full_like(GT, 0.5)
    r = responsibility(np.array(scores), [0], (GT, spread))
    assert r.shape == (1, 3)
    assert np.argmax(r[0]) == 2
    assert r[0, 2] == pytest.approx((2.5 - (-1.0)) / 0.5)
    loc = FaultLocalizer(CLASS_EMB, GT, "paper").localize(*_case(2, scores[0], label=0, pred=2))
    assert loc.top_concepts(["a", "b", "c"], k=1) == [["c"]]
    ranking = concept_ranking(loc.responsibility, ["a", "b", "c"])
    assert ranking[0][0] == "c"


def test_zero_shot_and_counts():
    assert zero_shot(np.array([[0.1, 0.9, 0, 0], [1, 0, 0, 0]]), CLASS_EMB).tolist() == [1, 0]
    assert verdict_counts(["head", "head", "encoder", "", "undecided"]) == {
        "encoder": 1, "head": 2, "undecided": 1}


def test_mismatched_shapes_are_errors():
    with pytest.raises(SemheatError):
        FaultLocalizer(CLASS_EMB[:2], GT)
    with pytest.raises(SemheatError, match="differ in length"):
        FaultLocalizer(CLASS_EMB, GT, "paper").localize(np.zeros((2, 4)), np.zeros((1, 3)), [0],
                                                        [1])


def test_consensus_blames_the_head_only_when_oracle_and_concept_probe_agree():
    rng = np.random.default_rng(0)
    # reference profiles: class k shows concept k
    labels = np.arange(300) % 3
    ref = np.eye(3)[labels] * 2 + rng.normal(0, 0.3, (300, 3))
    loc = FaultLocalizer(CLASS_EMB, GT).fit_probe(ref[:200], labels[:200], ref[200:],
                                                  labels[200:])
    assert loc.probe_strength_ in (0.01, 0.1, 1.0, 10.0, 100.0)
    # true 0, predicted 1; the aligned embedding says 0 (oracle: head) ...
    aligned = np.repeat(CLASS_EMB[[0]], 2, axis=0)
    # ... the first profile still looks like class 0, the second like class 1
    scores = np.array([[2.0, 0, 0], [0, 2.0, 0]])
    out = loc.localize(aligned, scores, [0, 0], [1, 1])
    assert out.oracle_verdict.tolist() == ["head", "head"]
    assert out.probe_verdict.tolist() == ["head", "encoder"]
    assert out.verdict.tolist() == ["head", "encoder"]  # both must agree on the head
    assert out.paper_verdict.tolist() == ["head", "head"]  # the paper's rule, kept beside
