"""Checks for the debugging exercises (``notebooks/04_debugging_exercises.ipynb``).

Each check compares a student's answer with the toy world's known answers and prints a short
verdict; it returns ``True`` or ``False`` so that a notebook can also assert it.
:func:`solution` prints the worked solution of an exercise, for when a student is stuck.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..engine.bundle import Bundle
from ..engine.metrics import detection_summary
from ..engine.reports.monitors import detector_scores
from ..engine.tasks import task_named
from ..errors import SemheatError


def _world_info(world) -> dict:
    return json.loads((Path(world) / "world.json").read_text())


def _say(ok: bool, text: str) -> bool:
    print(("✅ " if ok else "❌ ") + text)
    return ok


def check_spurious_concept(answer: str, world) -> bool:
    """Exercise 1: the concept spuriously tied to a class in the encoder-fault classifier."""
    truth = _world_info(world)["encoder_fault"]["concept"]
    given = str(answer).strip().lower()
    if given == truth:
        return _say(True, f"Right: '{truth}' is the concept behind the encoder fault.")
    return _say(False, f"Not '{answer}'. Look at the responsible concepts of the encoder-fault "
                       "bundle's misclassified inputs, or at what the offending images share.")


@dataclass(frozen=True)
class QuizItem:
    """One misclassified input of the fault quiz; its classifier stays hidden."""

    number: int
    bundle: str = field(repr=False)
    index: int = field(repr=False)


def fault_quiz(world, n: int = 6, seed: int = 0) -> list[QuizItem]:
    """Exercise 2: ``n`` misclassified inputs with known culprits, half from each faulty
    classifier, shuffled; which classifier each comes from is not shown."""
    rng = np.random.default_rng(seed)
    picks = []
    for name in ("encoder_fault", "head_fault"):
        b = Bundle.load(Path(world) / name)
        known = np.flatnonzero((b.column("gt_fault") != "") & b.mask(perturbation="natural"))
        if len(known) == 0:
            raise SemheatError(f"the {name} bundle has no inputs with a known culprit")
        chosen = rng.choice(known, size=min(n // 2, len(known)), replace=False)
        picks += [(name, int(i)) for i in chosen]
    order = rng.permutation(len(picks))
    return [QuizItem(k + 1, *picks[j]) for k, j in enumerate(order)]


def quiz_card(world, item: QuizItem):
    """What a student may look at for a quiz item: the image, its true and predicted labels,
    and what the VLM sees in the image and in the classifier's aligned features — without the
    tool's own verdict."""
    import html

    import ipywidgets as widgets

    from .detail import detail_facts

    b = Bundle.load(Path(world) / item.bundle)
    f = detail_facts(b, item.index)
    zs = lambda pairs: ", ".join(f"{html.escape(c)} {p:.0%}" for c, p in pairs)  # noqa: E731
    text = (f"<b>item {item.number}</b>: true <b>{html.escape(f['label'])}</b> → predicted "
            f"<b>{html.escape(f['prediction'])}</b><br>VLM on the image: "
            f"{zs(f['vlm_zero_shot'])}<br>VLM on the classifier's aligned features: "
            f"{zs(f['aligned_zero_shot'])}")
    image = widgets.Image(value=b.thumbnail_png(item.index), format="png",
                          layout=widgets.Layout(width="96px", height="96px"))
    return widgets.HBox([image, widgets.HTML(text)])


def check_fault_kinds(answers, quiz: list[QuizItem], world) -> bool:
    """Exercise 2: one answer per quiz item, in order: ``"encoder"`` or ``"head"``."""
    answers = list(answers)
    if len(answers) != len(quiz):
        return _say(False, f"give {len(quiz)} answers, one per quiz item (got {len(answers)})")
    right = 0
    for item, answer in zip(quiz, answers):
        truth = str(Bundle.load(Path(world) / item.bundle).column("gt_fault")[item.index])
        if str(answer).strip().lower() == truth:
            right += 1
        else:
            print(f"   item {item.number}: you said {answer!r}; the culprit is the {truth}")
    return _say(right == len(quiz), f"{right} of {len(quiz)} culprits right.")


def check_threshold(threshold: float, bundle, *, task: str = "adversarial", attack="pgd",
                    max_fpr: float = 0.05, min_tpr: float = 0.5) -> bool:
    """Exercise 3: a heatmap-monitor threshold with at most ``max_fpr`` false alarms and at
    least ``min_tpr`` of the (``attack``) defects caught, on the held-out ``eval`` split."""
    b = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
    scores = detector_scores(b, task)["heatmap"]
    member, positive = task_named(task).masks(b, "eval",
                                              attack if task == "adversarial" else None)
    d = detection_summary(scores[member], positive[member], float(threshold))
    ok = d["fpr"] <= max_fpr and d["tpr"] >= min_tpr
    return _say(ok, f"threshold {threshold:.3f}: {d['caught']} caught, {d['missed']} missed, "
                    f"{d['false_alarms']} false alarms (TPR {d['tpr']:.2f}, FPR {d['fpr']:.3f}; "
                    f"asked: FPR ≤ {max_fpr}, TPR ≥ {min_tpr})")


SOLUTIONS = {
    1: "Open Explorer on the encoder_fault bundle, pick the differential heatmap and the row "
       "'ship'. Its misclassified inputs are trucks, cars, frogs and birds on water; their "
       "responsible concepts (detail view, or localization_report(...)['ground_truth']) rank "
       "'wet' first. Answer: 'wet'.",
    2: "For each input, compare the zero-shot class of the aligned features (oracle) with the "
       "true and the predicted label: if the aligned features still say the true class, the "
       "head is at fault; if they already say the predicted class, the encoder is. The detail "
       "view shows both ('oracle on A z says ...').",
    3: "On the calib split, take the smallest threshold whose false-alarm rate on correct "
       "inputs is at most 5% (engine.metrics.threshold_at_fpr); the bundle's calibrated "
       "threshold (MonitorPanel's slider default) is exactly that. Check it on eval.",
}


def solution(exercise: int) -> None:
    """Print the worked solution of an exercise (1, 2 or 3)."""
    if exercise not in SOLUTIONS:
        raise SemheatError(f"no exercise {exercise}; choose from {sorted(SOLUTIONS)}")
    print(SOLUTIONS[exercise])
