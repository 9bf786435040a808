import numpy as np
import pytest
import torch

from semheat_widgets.engine.aligner import LinearAligner
from semheat_widgets.engine.heatmaps import Standardizer
from semheat_widgets.engine.monitor import HeatmapMonitor, RuntimeMonitor
from semheat_widgets.errors import SemheatError


def _references():
    """Two classes, 3 concepts. Correct class-0 inputs look like (1,0,0), wrong ones (0,0,1)."""
    scores = np.array([[1, 0, 0], [1.2, 0.1, 0], [0, 0, 1], [0.1, 0, 1.1],
                       [0, 1, 0], [0, 1.1, 0.1], [1, 0, 1]], float)
    preds = np.array([0, 0, 0, 0, 1, 1, 1])
    defect = np.array([0, 0, 1, 1, 0, 0, 1], bool)
    return scores, preds, defect


def test_reference_rows_are_group_means_with_fallback():
    s, p, d = _references()
    mon = HeatmapMonitor().fit(s, p, d, n_classes=3)
    assert np.allclose(mon.correct_rows_[0], [1.1, 0.05, 0])
    assert np.allclose(mon.incorrect_rows_[0], [0.05, 0, 1.05])
    assert np.allclose(mon.incorrect_rows_[1], [1, 0, 1])
    # class 2 was never predicted: it falls back to the mean over all classes
    assert np.allclose(mon.correct_rows_[2], s[~d].mean(0))
    assert np.allclose(mon.incorrect_rows_[2], s[d].mean(0))


def test_defect_score_follows_the_rule():
    s, p, d = _references()
    mon = HeatmapMonitor().fit(s, p, d, n_classes=2)
    x = np.array([[0.2, 0.0, 0.9]])
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    expect = cos(x[0], mon.incorrect_rows_[0]) - cos(x[0], mon.correct_rows_[0])
    assert mon.score(x, [0])[0] == pytest.approx(expect)
    assert mon.score(x, [0])[0] > 0 > mon.score(np.array([[1.0, 0.1, 0.0]]), [0])[0]
    euc = HeatmapMonitor("euclidean").fit(s, p, d, n_classes=2)
    assert euc.score(x, [0])[0] == pytest.approx(
        np.linalg.norm(x[0] - euc.correct_rows_[0]) - np.linalg.norm(x[0] - euc.incorrect_rows_[0]))


def test_calibration_meets_the_target_false_alarm_rate():
    rng = np.random.default_rng(0)
    n = 2000
    p = rng.integers(0, 2, n)
    d = rng.random(n) < 0.2
    s = rng.normal(size=(n, 3)) + np.where(d[:, None], [0, 0, 1.0], [1.0, 0, 0])
    mon = HeatmapMonitor().fit(s[:1000], p[:1000], d[:1000], 2)
    mon.calibrate(s[1000:], p[1000:], d[1000:], target_fpr=0.1)
    flags = mon.predict(s[1000:], p[1000:])
    assert flags[~d[1000:]].mean() <= 0.1 + 1e-9
    assert flags[d[1000:]].mean() > 0.5  # and it catches most defects
    mon.calibrate(s[1000:], p[1000:], d[1000:], target_fpr=0.1, per_class=True)
    per_class_flags = mon.predict(s[1000:], p[1000:])
    assert mon.thresholds_[0] != mon.thresholds_[1]  # really one threshold per class
    for k in range(2):
        m = (p[1000:] == k) & ~d[1000:]
        assert per_class_flags[m].mean() <= 0.1 + 1e-9


def test_fit_needs_both_kinds_and_finite_scores():
    s, p, d = _references()
    with pytest.raises(SemheatError, match="both defective and correct"):
        HeatmapMonitor().fit(s, p, np.zeros_like(d), 2)
    s[0, 0] = np.nan
    with pytest.raises(SemheatError, match="NaN"):
        HeatmapMonitor().fit(s, p, d, 2)
    with pytest.raises(SemheatError, match="not fitted"):
        HeatmapMonitor().score(s, p)


def test_state_round_trip():
    s, p, d = _references()
    mon = HeatmapMonitor().fit(s, p, d, 2).calibrate(s, p, d, 0.2)
    again = HeatmapMonitor.from_state(mon.state("m"), "m")
    assert np.allclose(again.score(s, p), mon.score(s, p))
    assert np.allclose(again.thresholds_, mon.thresholds_)


@pytest.mark.parametrize("similarity", ["cosine", "euclidean"])
def test_runtime_monitor_equals_the_offline_pipeline(tiny_split, colour_dataset, similarity):
    images = colour_dataset.tensors[0][:24]
    with torch.no_grad():
        z, logits = tiny_split.features_and_logits(images)
    z, logits = z.numpy(), logits.numpy()
    rng = np.random.default_rng(0)
    al = LinearAligner().fit(z, rng.normal(size=(24, 8)))
    T = rng.normal(size=(5, 8)).astype(np.float32)
    T /= np.linalg.norm(T, axis=1, keepdims=True)
    a = al.transform(z)
    raw = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ T.T
    st = Standardizer.fit(raw)
    preds = logits.argmax(1)
    defect = np.arange(24) % 3 == 0
    mon = HeatmapMonitor(similarity).fit(st(raw), preds, defect, 4).calibrate(
        st(raw), preds, defect, 0.2)
    rt = RuntimeMonitor(tiny_split, al, T, st, mon)
    out_logits, score, flag = rt(images)
    assert np.allclose(out_logits.numpy(), logits, atol=1e-5)
    offline = mon.score(st(raw), preds)
    assert np.allclose(score.numpy(), offline, atol=1e-4)
    # The threshold was calibrated on these very inputs, so one of them sits exactly on it and
    # its flag depends on float32 (torch) vs float64 (NumPy) rounding. Check the flag rule on
    # the runtime scores themselves, and agreement with the offline flags away from the edge.
    thr = mon.thresholds_[preds]
    assert np.array_equal(flag.numpy(), score.numpy() > thr.astype(np.float32))
    clear = np.abs(offline - thr) > 1e-3
    assert clear.sum() >= 20
    assert np.array_equal(flag.numpy()[clear], mon.predict(st(raw), preds)[clear])
