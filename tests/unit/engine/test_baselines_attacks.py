import numpy as np
import pytest
import torch
import torch.nn.functional as F

from semheat_widgets.engine.extract.attacks import Attack
from semheat_widgets.engine.detect.baselines import (Combination, Energy, Mahalanobis,
                                                     MaxSoftmax, best_baseline)
from semheat_widgets.engine.detect.protocol import Evidence
from semheat_widgets.engine.detect.registry import detector_class, detector_labels, pack, unpack
from semheat_widgets.engine.metrics import auroc
from semheat_widgets.engine.tasks import MISCLASSIFICATION
from semheat_widgets.errors import SemheatError


def _evidence(features, labels, n_classes):
    return Evidence(np.eye(n_classes)[labels], np.asarray(features), labels=np.asarray(labels))


def test_msp_and_energy_follow_their_formulas():
    logits = np.array([[2.0, 0.0, -1.0], [0.1, 0.0, 0.05]])
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    msp = MaxSoftmax().score_samples(Evidence(logits))
    assert np.allclose(msp, -p.max(1), atol=1e-6)
    assert np.allclose(Energy().score_samples(Evidence(logits)),
                       -np.log(np.exp(logits).sum(1)), atol=1e-6)
    assert msp[1] > msp[0]  # the unsure input scores higher


def test_mahalanobis_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    z = np.r_[rng.normal(0, 1, (100, 3)), rng.normal(4, 1, (100, 3))]
    y = np.r_[np.zeros(100, int), np.ones(100, int)]
    m = Mahalanobis().fit(_evidence(z, y, 2))
    mu = np.stack([z[y == k].mean(0) for k in range(2)])
    cov = sum((z[y == k] - mu[k]).T @ (z[y == k] - mu[k]) for k in range(2))
    cov = cov + 1e-6 * np.eye(3)  # pytorch-ood's own ridge ...
    prec = np.linalg.inv(cov + 1e-3 * np.trace(cov) / 3 * np.eye(3))  # ... and ours
    q = np.array([[0.0, 0, 0], [2.0, 2, 2], [10.0, -10, 10]])
    d = np.stack([np.einsum("ij,jk,ik->i", q - mu[k], prec, q - mu[k]) for k in range(2)], 1)
    query = Evidence(np.zeros((3, 2)), q)
    assert np.allclose(m.score_samples(query), 0.5 * d.min(1), rtol=1e-4)
    again = unpack("mahalanobis", pack(m, None), None)  # through the bundle's state layout
    assert np.allclose(again.score_samples(query), m.score_samples(query))


def test_mahalanobis_stays_a_distance_with_fewer_inputs_than_dims():
    rng = np.random.default_rng(0)
    z = np.maximum(rng.normal(size=(100, 512)), 0).astype(np.float32)  # ReLU-like, n < d
    y = np.arange(100) % 4
    m = Mahalanobis().fit(_evidence(z, y, 4))
    scores = m.score_samples(Evidence(np.zeros((50, 4)),
                                      np.maximum(rng.normal(size=(50, 512)), 0)))
    assert np.isfinite(scores).all() and (scores >= 0).all()
    assert scores.max() < 1e6


def test_mahalanobis_needs_every_class():
    with pytest.raises(SemheatError, match="class indices \\[2\\]"):
        Mahalanobis().fit(Evidence(np.zeros((4, 3)), np.zeros((4, 2)),
                                   labels=np.array([0, 1, 0, 1])))


def test_combination_beats_each_part_on_complementary_signals():
    rng = np.random.default_rng(1)
    n = 4000
    y = rng.random(n) < 0.3
    a = y + rng.normal(0, 1, n)
    b = y + rng.normal(0, 1, n)
    ev = Evidence(np.zeros((n, 2)), extra={"heatmap": a, "msp": b})
    comb = Combination(("heatmap", "msp")).fit(ev.take(slice(0, 2000)), y[:2000])
    c = comb.score_samples(ev.take(slice(2000, None)))
    ya = y[2000:]
    assert auroc(c, ya) > max(auroc(a[2000:], ya), auroc(b[2000:], ya)) + 0.03
    again = unpack("combined", pack(comb, MISCLASSIFICATION), MISCLASSIFICATION,
                   {"inputs": ["heatmap", "msp"]})
    assert np.allclose(again.score_samples(ev), comb.score_samples(ev))
    assert best_baseline({"msp": a, "energy": b - 5 * y, "mahalanobis": -a}, y) == "msp"


def test_one_registry_names_and_labels_every_detector():
    labels = detector_labels()
    assert list(labels)[0] == "heatmap" and list(labels)[-1] == "combined"
    assert {"msp", "energy", "mahalanobis"} <= set(labels)
    for name in labels:
        assert detector_class(name).name == name
    with pytest.raises(SemheatError, match="unknown detector"):
        detector_class("oracle of delphi")


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 5))


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_attacks_stay_in_the_eps_ball_and_raise_the_loss(method):
    model = _model()
    x = torch.rand(16, 3, 8, 8)
    y = model(x).argmax(1)
    attack = Attack(method, eps=4 / 255, steps=5)
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
