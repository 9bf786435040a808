import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve as sk_roc_curve

from semheat_widgets.engine.metrics import (auroc, detection_summary, roc_curve,
                                            threshold_at_fpr)
from semheat_widgets.errors import SemheatError


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_scikit_learn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    s = np.round(rng.normal(size=300) + y, 1)  # rounding creates many ties
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


def test_auroc_extremes_and_empty_class():
    assert auroc([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0
    assert auroc([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == 0.0
    assert auroc([1, 1, 1, 1], [0, 1, 0, 1]) == 0.5
    assert np.isnan(auroc([0.1, 0.2], [0, 0]))


def test_auroc_rejects_bad_input():
    with pytest.raises(SemheatError, match="differ in length"):
        auroc([0.1, 0.2], [1])
    with pytest.raises(SemheatError, match="NaN"):
        auroc([np.nan, 0.2], [1, 0])


def test_roc_curve_agrees_with_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.random(200) < 0.4
    s = rng.normal(size=200) + y
    fpr, tpr, _ = roc_curve(s, y, max_points=10_000)
    sk_fpr, sk_tpr, _ = sk_roc_curve(y, s, drop_intermediate=False)
    assert np.allclose(np.trapezoid(tpr, fpr), roc_auc_score(y, s))
    assert np.allclose(fpr, sk_fpr) and np.allclose(tpr, sk_tpr)


def _labelled(rng, n, decimals):
    """Scores rounded to ``decimals`` (None: no rounding) and labels with both classes."""
    y = rng.random(n) < rng.uniform(0.05, 0.95)
    y[:2] = [True, False]
    s = rng.normal(size=n) + y
    return (s if decimals is None else np.round(s, decimals)), rng.permutation(y)


CASES = [(2, None), (2, 0), (3, 0), (7, 1), (50, 0), (300, 1), (1000, 2), (5000, None),
         (200_000, 2), (1_000_000, 1)]


@pytest.mark.parametrize("n,decimals", CASES)
def test_auroc_and_roc_curve_match_scikit_learn(n, decimals):
    """Both are NumPy now: the same figures as scikit-learn (random data, many ties or none,
    n from 2 to a million), AUROC to 1e-12 and the curve's points and thresholds exactly."""
    rng = np.random.default_rng(n)
    s, y = _labelled(rng, n, decimals)
    assert auroc(s, y) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    fpr, tpr, thr = roc_curve(s, y, max_points=n + 2)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, drop_intermediate=False)
    assert thr[0] == np.inf and np.all(np.diff(thr) < 0)
    np.testing.assert_allclose(fpr, sk_fpr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(tpr, sk_tpr, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(thr, sk_thr)


@pytest.mark.parametrize("n", [2, 3, 10, 1000])
def test_all_tied_scores_match_scikit_learn(n):
    y = np.arange(n) % 2 == 0
    s = np.full(n, 0.3)
    assert auroc(s, y) == roc_auc_score(y, s) == 0.5
    fpr, tpr, thr = roc_curve(s, y)
    sk = sk_roc_curve(y, s, drop_intermediate=False)
    for ours, theirs in zip((fpr, tpr, thr), sk):
        np.testing.assert_array_equal(ours, theirs)
    assert list(thr) == [np.inf, 0.3] and list(fpr) == [0.0, 1.0]


def test_roc_curve_thins_to_max_points_keeping_both_ends():
    rng = np.random.default_rng(3)
    s, y = _labelled(rng, 5000, None)
    fpr, tpr, thr = roc_curve(s, y, max_points=64)
    sk_fpr, sk_tpr, sk_thr = sk_roc_curve(y, s, drop_intermediate=False)
    assert 2 <= fpr.size <= 64 and fpr.size == tpr.size == thr.size
    assert (fpr[0], tpr[0], thr[0]) == (0.0, 0.0, np.inf) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert set(thr) <= set(sk_thr)  # the points kept are scikit-learn's
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_empty_class_gives_nan_and_a_diagonal():
    for y in ([0, 0, 0], [1, 1, 1]):
        assert np.isnan(auroc([0.1, 0.5, 0.2], y))
        fpr, tpr, thr = roc_curve([0.1, 0.5, 0.2], y)
        assert list(fpr) == list(tpr) == [0.0, 1.0] and list(thr) == [np.inf, -np.inf]


def test_metrics_import_no_scikit_learn():
    import subprocess
    import sys

    code = ("import sys\nfrom semheat_widgets.engine.metrics import auroc, roc_curve\n"
            "auroc([0.1, 0.2, 0.2], [0, 1, 0]); roc_curve([0.1, 0.2, 0.2], [0, 1, 0])\n"
            "print([m for m in ('sklearn', 'scipy', 'pandas') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    assert done.stdout.strip() == "[]"


def test_threshold_at_fpr_bounds_false_alarms():
    neg = np.arange(100, dtype=float)
    thr = threshold_at_fpr(neg, 0.05)
    assert (neg > thr).mean() <= 0.05
    assert (neg > thr - 1).mean() > 0.05  # the smallest such threshold
    assert threshold_at_fpr(neg, 1.0) == -np.inf
    with pytest.raises(SemheatError):
        threshold_at_fpr([], 0.05)


def test_detection_summary_counts():
    s = np.array([0.9, 0.8, 0.2, 0.1, 0.7])
    y = np.array([1, 1, 1, 0, 0], bool)
    d = detection_summary(s, y, 0.5)
    assert (d["caught"], d["missed"], d["false_alarms"], d["passed"]) == (2, 1, 1, 1)
    assert d["accuracy"] == pytest.approx(3 / 5)
    assert d["tpr"] == pytest.approx(2 / 3) and d["fpr"] == pytest.approx(0.5)
