"""The exercise checks accept right answers and reject wrong ones."""

import numpy as np

from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.engine.metrics import threshold_at_fpr
from semheat_widgets.engine.reports.monitors import detector_scores
from semheat_widgets.engine.tasks import task_named
from semheat_widgets.widgets.teaching import (check_fault_kinds, check_spurious_concept,
                                      check_threshold, fault_quiz, quiz_card)


def test_spurious_concept_check(mini_world, capsys):
    assert check_spurious_concept("Wet ", mini_world)
    assert not check_spurious_concept("wheels", mini_world)
    assert "❌" in capsys.readouterr().out


def test_fault_quiz_and_check(mini_world):
    quiz = fault_quiz(mini_world, n=6)
    assert {item.bundle for item in quiz} == {"encoder_fault", "head_fault"}
    assert "bundle" not in repr(quiz[0]) and "fault" not in repr(quiz[0])  # hidden
    right = [str(Bundle.load(mini_world / q.bundle).column("gt_fault")[q.index]) for q in quiz]
    assert set(right) == {"encoder", "head"}
    assert check_fault_kinds(right, quiz, mini_world)
    flipped = ["head" if v == "encoder" else "encoder" for v in right]
    assert not check_fault_kinds(flipped, quiz, mini_world)
    assert not check_fault_kinds(right[:-1], quiz, mini_world)
    card = quiz_card(mini_world, quiz[0])
    text = card.children[1].value
    assert "VLM on the image" in text and "encoder" not in text and "head" not in text


def test_threshold_check(mini_world):
    b = Bundle.load(mini_world / "clean")
    score = detector_scores(b, "adversarial")["heatmap"]
    cal, pos = task_named("adversarial").masks(b, "calib", "pgd")
    calibrated = threshold_at_fpr(score[cal & ~pos], 0.02)
    assert not check_threshold(float(np.min(score)) - 1, b, max_fpr=0.05, min_tpr=0.0)
    assert check_threshold(float(np.max(score)) + 1, b, max_fpr=0.05, min_tpr=0.0)
    assert not check_threshold(float(np.max(score)) + 1, b, max_fpr=0.05, min_tpr=0.5)
    # a threshold calibrated for 2% false alarms on calib keeps eval false alarms well under 10%
    assert check_threshold(calibrated, b, max_fpr=0.10, min_tpr=0.0)
