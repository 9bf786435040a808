"""L∞ adversarial attacks on the classifier, batched, in 0..1 pixel space.

FGSM (Goodfellow et al., ICLR 2015) takes one signed-gradient step of size ε; PGD (Madry et
al., ICLR 2018) takes ``steps`` steps of size ``step_size`` from a random start inside the
ε-ball, projecting back after each. Both maximise the cross-entropy of the true label. The
random start is seeded (``seed``), so attacks are reproducible; every batch gets the same
start pattern.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import SemheatError
from ..pixels import to_float01
from ..tasks import METHODS  # (the attack names; tasks holds them, torch-free)

PGD_STEP_FACTOR = 2.5  # PGD's default step: 2.5 ε / steps (Madry et al.)


@dataclass(frozen=True)
class Attack:
    method: str = "pgd"
    eps: float = 8 / 255
    steps: int = 10
    step_size: float | None = None  # default PGD_STEP_FACTOR x ε / steps
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise SemheatError(f"unknown attack {self.method!r}; choose from {METHODS}")
        if not 0 < self.eps <= 1:
            raise SemheatError(f"eps must be in (0, 1], got {self.eps}")
        if self.method == "pgd" and self.steps < 1:
            raise SemheatError(f"PGD needs at least one step, got {self.steps}")

    def describe(self) -> dict:
        """What the manifest records of this attack."""
        return {"method": self.method, "eps": self.eps,
                "steps": self.steps if self.method == "pgd" else 1}

    def __call__(self, model, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Adversarial versions of ``images`` (float 0..1, same shape) against ``model``."""
        x = to_float01(images).detach()
        labels = labels.to(x.device)
        was_training = model.training
        model.eval()
        try:
            if self.method == "fgsm":
                return _step(model, x, x, labels, self.eps, self.eps)
            gen = torch.Generator(device=x.device).manual_seed(self.seed)
            noise = torch.rand(x.shape, generator=gen, device=x.device) * 2 - 1
            adv = (x + self.eps * noise).clamp(0, 1)
            size = self.step_size or PGD_STEP_FACTOR * self.eps / self.steps
            for _ in range(self.steps):
                adv = _step(model, x, adv, labels, size, self.eps)
            return adv
        finally:
            model.train(was_training)


def _step(model, clean, adv, labels, size, eps):
    adv = adv.clone().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(model(adv), labels)
        (grad,) = torch.autograd.grad(loss, adv)
    adv = adv.detach() + size * grad.sign()
    return torch.min(torch.max(adv, clean - eps), clean + eps).clamp(0, 1)
