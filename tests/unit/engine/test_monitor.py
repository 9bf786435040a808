import numpy as np
import pytest
import torch

from semheat_widgets.engine.models.aligner import LinearAligner
from semheat_widgets.engine.detect.heatmap_monitor import (HeatmapMonitor, RuntimeMonitor,
                                                           defect_score)
from semheat_widgets.engine.detect.protocol import Evidence
from semheat_widgets.engine.detect.registry import pack, unpack
from semheat_widgets.engine.tasks import ADVERSARIAL
from semheat_widgets.errors import SemheatError


def _evidence(scores, predictions, n_classes):
    return Evidence(np.eye(n_classes)[np.asarray(predictions)], concept_scores=np.asarray(scores))


def _monitor(similarity="cosine", n_concepts=3):
    """A monitor that leaves its scores as they are (mean 0, std 1)."""
    return HeatmapMonitor(similarity, np.zeros(n_concepts), np.ones(n_concepts))


def _references():
    """Two classes, 3 concepts. Correct class-0 inputs look like (1,0,0), wrong ones (0,0,1)."""
    scores = np.array([[1, 0, 0], [1.2, 0.1, 0], [0, 0, 1], [0.1, 0, 1.1],
                       [0, 1, 0], [0, 1.1, 0.1], [1, 0, 1]], float)
    preds = np.array([0, 0, 0, 0, 1, 1, 1])
    defect = np.array([0, 0, 1, 1, 0, 0, 1], bool)
    return scores, preds, defect


def test_reference_rows_are_group_means_with_fallback():
    s, p, d = _references()
    mon = _monitor().fit(_evidence(s, p, 3), d)
    assert np.allclose(mon.correct_rows_[0], [1.1, 0.05, 0])
    assert np.allclose(mon.incorrect_rows_[0], [0.05, 0, 1.05])
    assert np.allclose(mon.incorrect_rows_[1], [1, 0, 1])
    # class 2 was never predicted: it falls back to the mean over all classes
    assert np.allclose(mon.correct_rows_[2], s[~d].mean(0))
    assert np.allclose(mon.incorrect_rows_[2], s[d].mean(0))


def test_defect_score_follows_the_rule():
    s, p, d = _references()
    mon = _monitor().fit(_evidence(s, p, 2), d)
    x = np.array([[0.2, 0.0, 0.9]])
    cos = lambda a, b: a @ b / np.linalg.norm(a) / np.linalg.norm(b)
    expect = cos(x[0], mon.incorrect_rows_[0]) - cos(x[0], mon.correct_rows_[0])
    assert mon.score_samples(_evidence(x, [0], 2))[0] == pytest.approx(expect)
    assert mon.score_samples(_evidence(x, [0], 2))[0] > 0 > mon.score_samples(
        _evidence([[1.0, 0.1, 0.0]], [0], 2))[0]
    euc = _monitor("euclidean").fit(_evidence(s, p, 2), d)
    assert euc.score_samples(_evidence(x, [0], 2))[0] == pytest.approx(
        np.linalg.norm(x[0] - euc.correct_rows_[0]) - np.linalg.norm(x[0] - euc.incorrect_rows_[0]))


def test_one_formula_for_arrays_and_tensors():
    rng = np.random.default_rng(3)
    s, ok, bad = (rng.normal(size=(20, 5)) for _ in range(3))
    for similarity in ("cosine", "euclidean"):
        a = defect_score(s, ok, bad, similarity)
        t = defect_score(*(torch.as_tensor(v) for v in (s, ok, bad)), similarity)
        assert np.allclose(a, t.numpy())


def test_the_monitor_standardises_and_ignores_later_concepts():
    rng = np.random.default_rng(4)
    raw = rng.normal(0.2, 0.05, size=(60, 3))
    p = np.arange(60) % 2
    d = np.arange(60) % 3 == 0
    mon = HeatmapMonitor("cosine", raw.mean(0), raw.std(0)).fit(_evidence(raw, p, 2), d)
    z = (raw - raw.mean(0)) / raw.std(0)
    plain = _monitor().fit(_evidence(z, p, 2), d)
    assert np.allclose(mon.score_samples(_evidence(raw, p, 2)),
                       plain.score_samples(_evidence(z, p, 2)))
    wider = np.c_[raw, rng.normal(size=(60, 2))]  # two concepts added after the fit
    assert np.allclose(mon.score_samples(_evidence(wider, p, 2)),
                       mon.score_samples(_evidence(raw, p, 2)))


def test_calibration_meets_the_target_false_alarm_rate():
    rng = np.random.default_rng(0)
    n = 2000
    p = rng.integers(0, 2, n)
    d = rng.random(n) < 0.2
    s = rng.normal(size=(n, 3)) + np.where(d[:, None], [0, 0, 1.0], [1.0, 0, 0])
    ref, cal = _evidence(s[:1000], p[:1000], 2), _evidence(s[1000:], p[1000:], 2)
    mon = _monitor().fit(ref, d[:1000])
    mon.calibrate(cal, d[1000:], target_fpr=0.1)
    flags = mon.predict(cal)
    assert flags[~d[1000:]].mean() <= 0.1 + 1e-9
    assert flags[d[1000:]].mean() > 0.5  # and it catches most defects
    mon.calibrate(cal, d[1000:], target_fpr=0.1, per_class=True)
    per_class_flags = mon.predict(cal)
    assert mon.thresholds_[0] != mon.thresholds_[1]  # really one threshold per class
    for k in range(2):
        m = (p[1000:] == k) & ~d[1000:]
        assert per_class_flags[m].mean() <= 0.1 + 1e-9


def test_fit_needs_both_kinds_and_finite_scores():
    s, p, d = _references()
    with pytest.raises(SemheatError, match="both defective and correct"):
        _monitor().fit(_evidence(s, p, 2), np.zeros_like(d))
    s[0, 0] = np.nan
    with pytest.raises(SemheatError, match="NaN"):
        _monitor().fit(_evidence(s, p, 2), d)
    with pytest.raises(SemheatError, match="not fitted"):
        _monitor().score_samples(_evidence(s, p, 2))


def test_state_round_trip():
    s, p, d = _references()
    ev = _evidence(s, p, 2)
    mon = _monitor("euclidean").fit(ev, d).calibrate(ev, d, 0.2)
    again = unpack("heatmap", pack(mon, ADVERSARIAL), ADVERSARIAL, {"similarity": "euclidean"})
    assert again.similarity == "euclidean"
    assert np.allclose(again.score_samples(ev), mon.score_samples(ev))
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
    preds = logits.argmax(1)
    defect = np.arange(24) % 3 == 0
    ev = Evidence(logits, concept_scores=raw)
    mon = HeatmapMonitor(similarity, raw.mean(0), raw.std(0)).fit(ev, defect).calibrate(
        ev, defect, 0.2)
    rt = RuntimeMonitor(tiny_split, al, T, mon)
    out_logits, score, flag = rt(images)
    assert np.allclose(out_logits.numpy(), logits, atol=1e-5)
    offline = mon.score_samples(ev)
    assert np.allclose(score.numpy(), offline, atol=1e-4)
    # The threshold was calibrated on these very inputs, so one of them sits exactly on it and
    # its flag depends on float32 (torch) vs float64 (NumPy) rounding. Check the flag rule on
    # the runtime scores themselves, and agreement with the offline flags away from the edge.
    thr = mon.thresholds_[preds]
    assert np.array_equal(flag.numpy(), score.numpy() > thr.astype(np.float32))
    clear = np.abs(offline - thr) > 1e-3
    assert clear.sum() >= 20
    assert np.array_equal(flag.numpy()[clear], mon.predict(ev)[clear])
