import numpy as np
import pytest

from semheat_widgets.engine.models.aligner import LinearAligner
from semheat_widgets.errors import SemheatError


def test_recovers_a_known_affine_map():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(20, 8))
    b = rng.normal(size=8)
    Z = rng.normal(size=(500, 20)) * rng.uniform(0.5, 3, size=20) + rng.normal(size=20)
    E = Z @ W + b
    al = LinearAligner(alpha=1e-9, chunk_size=64).fit(Z, E)  # chunks exercise accumulation
    assert np.allclose(al.W_, W, atol=1e-4)
    assert np.allclose(al.b_, b, atol=1e-4)
    fid = al.fidelity(Z, E)
    assert fid["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert fid["r2"] == pytest.approx(1.0, abs=1e-6)


def test_fidelity_metrics_match_their_definitions():
    rng = np.random.default_rng(1)
    Z = rng.normal(size=(300, 6))
    E = Z @ rng.normal(size=(6, 4)) + rng.normal(scale=0.5, size=(300, 4))
    al = LinearAligner().fit(Z, E)
    pred = al.transform(Z).astype(np.float64)
    cos = (pred * E).sum(1) / (np.linalg.norm(pred, axis=1) * np.linalg.norm(E, axis=1))
    r2 = 1 - ((E - pred) ** 2).sum() / ((E - E.mean(0)) ** 2).sum()
    fid = al.fidelity(Z, E)
    assert fid["mean_cosine"] == pytest.approx(cos.mean(), rel=1e-5)
    assert fid["r2"] == pytest.approx(r2, rel=1e-5)
    assert 0.5 < fid["r2"] < 1.0


def test_ridge_shrinks_with_alpha():
    rng = np.random.default_rng(2)
    Z = rng.normal(size=(50, 10))
    E = Z @ rng.normal(size=(10, 3))
    small = LinearAligner(alpha=1e-6).fit(Z, E).W_
    big = LinearAligner(alpha=10.0).fit(Z, E).W_
    assert np.linalg.norm(big) < 0.5 * np.linalg.norm(small)


def test_state_round_trip():
    rng = np.random.default_rng(3)
    Z, E = rng.normal(size=(40, 5)), rng.normal(size=(40, 3))
    al = LinearAligner().fit(Z, E)
    again = LinearAligner.from_state(al.state())
    assert np.array_equal(again.transform(Z), al.transform(Z))


@pytest.mark.parametrize("Z, E, message", [
    (np.zeros((10, 4)), np.zeros((9, 3)), "differ in number of records"),
    (np.full((10, 4), np.nan), np.zeros((10, 3)), "NaN or inf"),
    (np.r_[np.zeros((9, 4)), [[np.inf, 0, 0, 0]]], np.zeros((10, 3)), "NaN or inf"),
    (np.zeros((1, 4)), np.zeros((1, 3)), "at least 2 records"),
    (np.zeros(4), np.zeros((4, 3)), "2-D"),
])
def test_bad_input_is_a_clear_error(Z, E, message):
    with pytest.raises(SemheatError, match=message):
        LinearAligner().fit(Z, E)


def test_transform_checks_feature_size_and_fit_state():
    with pytest.raises(SemheatError, match="not fitted"):
        LinearAligner().transform(np.zeros((2, 3)))
    al = LinearAligner().fit(np.random.default_rng(0).normal(size=(10, 4)), np.zeros((10, 2)))
    with pytest.raises(SemheatError, match="5 dims but the aligner was fit on 4"):
        al.transform(np.zeros((3, 5)))
