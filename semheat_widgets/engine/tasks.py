"""The two defects a runtime monitor looks for, named once.

- **misclassification**: natural inputs; the defective ones are those classified wrongly.
- **adversarial**: correctly classified natural inputs (not defective) against attacked copies
  whose attack succeeded (defective): the copy is wrong although its source was right.

A task also names the record columns of its scores (``misclf_…`` / ``adv_…``) and how the
reference rows of its defective inputs are called in the views.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import SemheatError

NATURAL = "natural"
METHODS = ("fgsm", "pgd")  # the attacks (engine.extract.attacks; here for readers without torch)


@dataclass(frozen=True)
class Task:
    name: str  # "misclassification" / "adversarial"
    prefix: str  # record columns: f"{prefix}_{what}"
    defect_word: str  # what its defective reference inputs are called: "incorrect" / ...

    def column(self, what: str) -> str:
        """The record column ``what`` of this task (``score``, ``flag``, a detector name)."""
        return f"{self.prefix}_{what}"

    def masks(self, bundle, split: str | None, attack: str | None = None):
        """``(member, positive)`` masks over the bundle's records on ``split``: the inputs the
        task scores, and the defective ones among them (optionally of one ``attack`` only)."""
        natural = bundle.mask(perturbation=NATURAL)
        correct = bundle.column("correct").astype(bool)
        in_split = bundle.mask(split=split)
        if self is MISCLASSIFICATION:
            member = natural & in_split
            return member, member & ~correct
        attacked = ~natural if attack is None else bundle.mask(perturbation=attack)
        positive = attacked & ~correct & bundle.column("source_correct").astype(bool) & in_split
        return (natural & correct & in_split) | positive, positive


MISCLASSIFICATION = Task("misclassification", "misclf", "incorrect")
ADVERSARIAL = Task("adversarial", "adv", "adversarial")
TASKS = {t.name: t for t in (MISCLASSIFICATION, ADVERSARIAL)}


def task_named(name: str) -> Task:
    if name not in TASKS:
        raise SemheatError(f"unknown task {name!r}; choose from {list(TASKS)}")
    return TASKS[name]


def task_of(perturbation: str) -> Task:
    """The task that judges an input of this perturbation (natural or an attack)."""
    return MISCLASSIFICATION if perturbation == NATURAL else ADVERSARIAL


def task_sets(perturbation: np.ndarray, correct: np.ndarray, source_correct: np.ndarray
              ) -> dict[Task, tuple[np.ndarray, np.ndarray]]:
    """``{task: (member, positive)}`` over all records, from their columns (as the pipeline
    has them before a bundle exists)."""
    natural = perturbation == NATURAL
    adversarial = ~natural & ~correct & source_correct
    return {MISCLASSIFICATION: (natural, natural & ~correct),
            ADVERSARIAL: ((natural & correct) | adversarial, adversarial)}
