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
