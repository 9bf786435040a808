import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semheat_widgets.engine.attacks import Attack
from semheat_widgets.engine.baselines import (LogisticCombiner, MahalanobisBaseline,
                                              best_baseline, energy_score, msp_score)
from semheat_widgets.engine.metrics import auroc
from semheat_widgets.errors import SemheatError


def test_msp_and_energy_follow_their_formulas():
    logits = np.array([[2.0, 0.0, -1.0], [0.1, 0.0, 0.05]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert np.allclose(msp_score(logits), -p.max(1), atol=1e-6)
    assert np.allclose(energy_score(logits), -np.log(np.exp(logits).sum(1)), atol=1e-6)
    assert msp_score(logits)[1] > msp_score(logits)[0]  # the unsure input scores higher


def test_mahalanobis_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    z = np.r_[rng.normal(0, 1, (100, 3)), rng.normal(4, 1, (100, 3))]
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    m = MahalanobisBaseline().fit(z, y, 2)
    mu = np.stack([z[y == k].mean(0) for k in range(2)])
    cov = sum((z[y == k] - mu[k]).T @ (z[y == k] - mu[k]) for k in range(2))
    cov = cov + 1e-6 * np.eye(3)  # pytorch-ood's own ridge ...
    prec = np.linalg.inv(cov + 1e-3 * np.trace(cov) / 3 * np.eye(3))  # ... and ours
    q = np.array([[0.0, 0, 0], [2.0, 2, 2], [10.0, -10, 10]])
    d = np.stack([np.einsum("ij,jk,ik->i", q - mu[k], prec, q - mu[k]) for k in range(2)], 1)
    assert np.allclose(m.score(q), 0.5 * d.min(1), rtol=1e-4)
    again = MahalanobisBaseline.from_state(m.state())
    assert np.allclose(again.score(q), m.score(q))


def test_mahalanobis_stays_a_distance_with_fewer_inputs_than_dims():
    rng = np.random.default_rng(0)
    z = np.maximum(rng.normal(size=(100, 512)), 0).astype(np.float32)  # ReLU-like, n < d
    y = np.arange(100) % 4
    scores = MahalanobisBaseline().fit(z, y, 4).score(np.maximum(rng.normal(size=(50, 512)), 0))
    assert np.isfinite(scores).all() and (scores >= 0).all()
    assert scores.max() < 1e6


def test_mahalanobis_needs_every_class():
    with pytest.raises(SemheatError, match="class indices \\[2\\]"):
        MahalanobisBaseline().fit(np.zeros((4, 2)), [0, 1, 0, 1], 3)


def test_combination_beats_each_part_on_complementary_signals():
    rng = np.random.default_rng(1)
    n = 4000
    y = rng.random(n) < 0.3
    a = y + rng.normal(0, 1, n)
    b = y + rng.normal(0, 1, n)
    comb = LogisticCombiner().fit(np.c_[a, b][:2000], y[:2000])
    c = comb.decision_function(np.c_[a, b][2000:])
    ya = y[2000:]
    assert auroc(c, ya) > max(auroc(a[2000:], ya), auroc(b[2000:], ya)) + 0.03
    assert best_baseline({"msp": a, "energy": b - 5 * y, "mahalanobis": -a}, y) == "msp"


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))


@pytest.mark.parametrize("kind", ["fgsm", "pgd"])
def test_attacks_stay_in_the_eps_ball_and_raise_the_loss(kind):
    model = _model()
    x = torch.rand(16, 3, 8, 8)
    y = model(x).argmax(1)
    attack = Attack(kind, eps=4 / 255, steps=5)
    adv = attack(model, x, y)
    assert adv.shape == x.shape
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)


def test_pgd_is_at_least_as_strong_as_fgsm_and_deterministic():
    model = _model()
    x = torch.rand(64, 3, 8, 8)
    y = model(x).argmax(1)
    eps = 8 / 255
    with torch.no_grad():
        loss_f = F.cross_entropy(model(Attack("fgsm", eps)(model, x, y)), y)
        pgd = Attack("pgd", eps, steps=10)
        loss_p = F.cross_entropy(model(pgd(model, x, y)), y)
    assert loss_p >= loss_f - 1e-4
    assert torch.equal(pgd(model, x, y), pgd(model, x, y))


def test_bad_attack_settings():
    with pytest.raises(SemheatError):
        Attack("cw")
    with pytest.raises(SemheatError):
        Attack("pgd", eps=0)
