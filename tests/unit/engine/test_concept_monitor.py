"""The concept-space monitor on a synthetic world whose defects are known by construction.

Features are class prototypes plus noise; the aligner is a fixed linear map, the concepts and
class texts fixed directions in its space. Misclassifications come from a faulty head (some
class-0 inputs confidently called class 1: the features, hence CLIP space, still say class 0)
and from inputs near a class boundary. Attacked copies carry another class's features scaled
up: their concept profile is exactly that of a natural input of the predicted class (the bias
of the aligner is zero), so only the size of ``A z`` gives them away.
"""

import json
from functools import lru_cache
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors.numpy import load as load_arrays
from safetensors.numpy import save as save_arrays

from semheat_widgets.engine.detect import concept_monitor as cm
from semheat_widgets.engine.detect.baselines import MaxSoftmax
from semheat_widgets.engine.detect.concept_monitor import ConceptMonitor, top_reasons
from semheat_widgets.engine.detect.heatmap_monitor import HeatmapMonitor
from semheat_widgets.engine.detect.protocol import Evidence, RowView
from semheat_widgets.engine.detect.registry import detector_class, detector_labels, pack, unpack
from semheat_widgets.engine.metrics import auroc
from semheat_widgets.engine.tasks import ADVERSARIAL
from semheat_widgets.errors import SemheatError

K, D, M, C = 4, 12, 8, 6  # classes, feature dims, CLIP dims, concepts


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@lru_cache(maxsize=None)
def _world(seed=0, n=900, n_attack=300):
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(K, D))
    W, b = rng.normal(size=(D, M)) / np.sqrt(D), np.zeros(M)
    T, E = _unit(rng.normal(size=(C, M))), _unit(protos @ W)

    def head(z):  # nearest prototype
        return z @ protos.T - 0.5 * (protos ** 2).sum(1)

    y = np.arange(n) % K
    z = protos[y] + 0.8 * rng.normal(size=(n, D))
    logits = head(z)
    faulty = (y == 0) & (rng.random(n) < 0.3)
    logits[faulty, 1] = logits[faulty].max(1) + 8.0  # wrong and sure of it
    correct = logits.argmax(1) == y
    src = rng.choice(np.flatnonzero(correct), n_attack, replace=False)
    target = (y[src] + rng.integers(1, K, n_attack)) % K
    za = rng.uniform(3, 5, (n_attack, 1)) * (protos[target] + 0.8 * rng.normal(size=(n_attack, D)))
    Z, L = np.r_[z, za], np.r_[logits, head(za)]
    natural = np.r_[np.ones(n, bool), np.zeros(n_attack, bool)]
    source = np.r_[np.arange(n), src]
    raw = _unit(Z @ W + b) @ T.T
    fit = natural & (source % 3 == 0)
    return dict(Z=Z, L=L, y=np.r_[y, y[src]], source=source, natural=natural,
                split=np.array(["fit", "calib", "eval"])[source % 3], raw=raw, W=W, b=b, T=T,
                E=E, mean=raw[fit].mean(0), std=raw[fit].std(0))


def _evidence(w):
    return Evidence(w["L"], w["Z"], w["raw"], w["y"])


def _task(w, task, split):
    """``(member, defect)`` masks of a task on a split, as in :mod:`.tasks`."""
    correct = w["L"].argmax(1) == w["y"]
    here = w["split"] == split
    if task == "misclassification":
        member = w["natural"] & here
        return member, member & ~correct
    positive = ~w["natural"] & ~correct & correct[w["source"]] & here
    return (w["natural"] & correct & here) | positive, positive


def _monitor(w, similarity="cosine"):
    return ConceptMonitor(w["W"], w["b"], w["T"], w["E"], w["mean"], w["std"], similarity)


def _fit(w, task, similarity="cosine", groups=True, calib=True):
    ev = _evidence(w)
    mf, pf = _task(w, task, "fit")
    mc, pc = _task(w, task, "calib")
    ref = w["natural"] & (w["split"] == "fit")
    return _monitor(w, similarity).fit(
        ev.take(mf), pf[mf], reference=ev.take(ref),
        groups=w["source"][mf] if groups else None,
        reference_groups=w["source"][ref] if groups else None,
        calib=(ev.take(mc), pc[mc]) if calib else None)


@lru_cache(maxsize=None)
def _fitted(task, similarity="cosine"):
    w = _world()
    return w, _fit(w, task, similarity)


def test_it_is_a_registered_per_task_detector():
    assert detector_class("concept") is ConceptMonitor
    assert ConceptMonitor.per_task
    names = list(detector_labels())
    assert names.index("heatmap") < names.index("concept") < names.index("msp")


def test_catches_misclassifications_the_softmax_cannot_see():
    w, mon = _fitted("misclassification")
    me, pe = _task(w, "misclassification", "eval")
    ev = _evidence(w).take(me)
    mine = auroc(mon.score_samples(ev), pe[me])
    msp = auroc(MaxSoftmax().score_samples(ev), pe[me])
    assert mine > 0.85
    assert mine > msp + 0.2  # the faulty head is confident: the softmax is fooled


def test_catches_scaled_up_attacks_the_heatmap_monitor_cannot_see():
    w, mon = _fitted("adversarial")
    ev = _evidence(w)
    mf, pf = _task(w, "adversarial", "fit")
    me, pe = _task(w, "adversarial", "eval")
    paper = HeatmapMonitor("cosine", w["mean"], w["std"]).fit(ev.take(mf), pf[mf])
    mine = auroc(mon.score_samples(ev.take(me)), pe[me])
    theirs = auroc(paper.score_samples(ev.take(me)), pe[me])
    assert mine > 0.97
    assert theirs < 0.7  # the concept profiles carry nothing here
    assert mon.info()["weights"]["maha_az"] > 0


@pytest.mark.parametrize("task,similarity", [("misclassification", "cosine"),
                                             ("adversarial", "cosine"),
                                             ("misclassification", "euclidean")])
def test_the_explanation_adds_up_to_the_score(task, similarity):
    w, mon = _fitted(task, similarity)
    ev = _evidence(w).take(w["split"] == "eval")
    ex = mon.explain(ev)
    assert isinstance(ex.base, float)
    assert ex.concepts.shape == (len(ev), C)
    assert {"zero-shot prefers another class", "CLIP probe prefers another class",
            "A z atypical for the predicted class", "A z nearer defective references"} <= set(
        ex.named)
    assert np.allclose(ex.total(), mon.score_samples(ev), rtol=0, atol=1e-6)
    names = [f"concept {c}" for c in range(C)]
    reasons = top_reasons(ex, names, 0, n=4)
    assert len(reasons) == 4
    assert [r[1] for r in reasons] == sorted((r[1] for r in reasons), reverse=True)
    everything = dict(zip(names, ex.concepts[0])) | {k: v[0] for k, v in ex.named.items()}
    assert reasons[0][1] == pytest.approx(max(everything.values()))
    with pytest.raises(SemheatError, match="concept names"):
        top_reasons(ex, names[:-1], 0)


def test_attacks_are_explained_by_the_size_of_a_z():
    w, mon = _fitted("adversarial")
    me, pe = _task(w, "adversarial", "eval")
    rows = np.flatnonzero(me & pe)
    ex = mon.explain(_evidence(w).take(rows))
    top = [top_reasons(ex, [f"c{c}" for c in range(C)], i, 1)[0][0] for i in range(len(rows))]
    assert np.mean([t == "A z atypical for the predicted class" for t in top]) > 0.5


def test_both_tasks_are_scored_in_one_reading_of_the_inputs():
    """score_together gives each monitor's own score_samples, bit for bit, reading the inputs
    once where the monitors read them alike (the two tasks of one analysis), and falls back
    to one pass each where they do not."""
    w, mis = _fitted("misclassification")
    _, adv = _fitted("adversarial")
    ev = _evidence(w)
    together = ConceptMonitor.score_together([mis, adv], ev)
    assert mis.reads_like(adv)
    assert np.array_equal(together[0], mis.score_samples(ev))
    assert np.array_equal(together[1], adv.score_samples(ev))
    _, euclid = _fitted("misclassification", "euclidean")
    other = ConceptMonitor.from_state(mis.state(), {})
    other.std = other.std * 2  # another standardiser: not read alike
    assert not mis.reads_like(other)
    apart = ConceptMonitor.score_together([mis, other], ev)
    assert np.array_equal(apart[1], other.score_samples(ev))
    assert len(ConceptMonitor.score_together([euclid], ev)[0]) == len(ev)


def test_state_survives_safetensors_and_json():
    w, mon = _fitted("adversarial", "cosine")
    ev = _evidence(w)
    mc, pc = _task(w, "adversarial", "calib")
    mon.calibrate(ev.take(mc), pc[mc], 0.05)
    state = mon.state()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    info = json.loads(json.dumps(mon.info()))
    again = ConceptMonitor.from_state(load_arrays(save_arrays(state)), info)
    assert np.allclose(again.score_samples(ev), mon.score_samples(ev), rtol=0, atol=1e-12)
    assert np.array_equal(again.predict(ev), mon.predict(ev))
    assert np.allclose(again.explain(ev).concepts, mon.explain(ev).concepts, atol=1e-12)
    assert again.info()["hyper"] == info["hyper"]
    packed = unpack("concept", pack(mon, ADVERSARIAL), ADVERSARIAL, info)
    assert np.allclose(packed.score_samples(ev), mon.score_samples(ev), rtol=0, atol=1e-12)


def test_euclidean_heatmap_signal_survives_the_state():
    w, mon = _fitted("misclassification", "euclidean")
    ev = _evidence(w)
    again = ConceptMonitor.from_state(load_arrays(save_arrays(mon.state())), {})
    assert again.similarity == "euclidean"
    assert np.allclose(again.score_samples(ev), mon.score_samples(ev), rtol=0, atol=1e-12)


def test_thresholds_meet_the_target_false_alarm_rate():
    w, mon = _fitted("adversarial")
    ev = _evidence(w)
    mc, pc = _task(w, "adversarial", "calib")
    me, pe = _task(w, "adversarial", "eval")
    cal = ev.take(mc)
    tol = 1.0 / (~pc[mc]).sum()
    mon.calibrate(cal, pc[mc], target_fpr=0.05)
    assert mon.thresholds_.shape == (K,)
    flags = mon.predict(cal)
    assert flags[~pc[mc]].mean() <= 0.05 + tol
    assert mon.predict(ev.take(me))[pe[me]].mean() > 0.9  # and it catches the attacks
    mon.calibrate(cal, pc[mc], target_fpr=0.1, per_class=True)
    flags, pred = mon.predict(cal), cal.predictions
    for k in range(K):
        neg = (pred == k) & ~pc[mc]
        assert flags[neg].mean() <= 0.1 + 1.0 / neg.sum()
    # from scores already known (the pipeline scores every record once): the same thresholds
    scores = mon.score_samples(cal)
    before = mon.thresholds_.copy()
    mon.calibrate_scores(scores, pc[mc], cal.predictions, 0.1, per_class=True)
    assert np.array_equal(mon.thresholds_, before)
    mon.calibrate(cal, pc[mc], 0.05)  # leave the shared monitor as the other tests expect


def test_memory_maps_and_row_views_score_like_arrays(tmp_path, monkeypatch):
    w, mon = _fitted("misclassification")
    ev = _evidence(w)
    path = tmp_path / "features.npy"
    mapped = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=w["Z"].shape)
    mapped[:] = w["Z"]
    mapped.flush()
    on_disk = Evidence(w["L"], np.load(path, mmap_mode="r"))
    rows = np.flatnonzero(w["split"] == "eval")
    expected = mon.score_samples(ev.take(rows))
    monkeypatch.setattr(cm, "ROW_CHUNK", 37)  # several chunks, a ragged last one
    view = on_disk.take(rows)
    assert isinstance(view.features, RowView)
    assert np.allclose(mon.score_samples(view), expected, rtol=0, atol=1e-9)
    assert np.allclose(mon.score_samples(on_disk)[rows], expected, rtol=0, atol=1e-9)
    assert np.allclose(mon.score_features(w["Z"][rows], w["L"][rows]), expected, rtol=0,
                       atol=1e-9)
    assert np.allclose(mon.explain(view).total(), expected, rtol=0, atol=1e-6)


def test_fallbacks_without_folds_calib_or_defects_of_a_class():
    w = _world()
    mon = _fit(w, "misclassification", groups=False, calib=False)
    info = mon.info()
    assert info["stack"]["calib_auroc"] is None and info["stack"]["C"] == 1.0
    assert info["hyper"] == {sig.key: sig.default for sig in cm.SIGNALS if sig.grid}
    assert info["stack"]["folds"] == 5  # every input its own group
    # one group only: no cross-fitting, still a working monitor
    ev = _evidence(w)
    mf, pf = _task(w, "misclassification", "fit")
    ref = w["natural"] & (w["split"] == "fit")
    one = _monitor(w).fit(ev.take(mf), pf[mf], reference=ev.take(ref),
                          groups=np.zeros(mf.sum()), reference_groups=np.zeros(ref.sum()))
    assert one.info()["stack"]["folds"] == 0
    assert np.isfinite(one.score_samples(ev)).all()
    # calib with one kind only: the defaults
    mc = _task(w, "misclassification", "calib")[0]
    same = _monitor(w).fit(ev.take(mf), pf[mf], reference=ev.take(ref),
                           calib=(ev.take(mc), np.zeros(mc.sum(), bool)))
    assert same.info()["stack"]["calib_auroc"] is None
    # classes without defective references use the mean of all defective ones
    only_1 = pf[mf] & (ev.predictions[mf] == 1)
    few = _monitor(w).fit(ev.take(mf), only_1, reference=ev.take(ref))
    bad_s = few._read(ev.take(mf)).s[only_1]
    for key, name in (("heatmap", "defect_rows"), ("mdiff_s", "defect_means")):
        rows = few.params_[key][name]
        assert np.allclose(rows[[0, 2, 3]], bad_s.mean(0))
    assert np.isfinite(few.score_samples(ev)).all()


def test_folds_keep_an_input_its_copies_and_its_reference_row_together():
    source = np.r_[np.arange(40), np.arange(0, 40, 2)]  # 40 inputs, 20 attacked copies
    data = SimpleNamespace(members=source, reference=np.arange(40))
    members, reference = ConceptMonitor._folds(data, source, np.arange(40), seed=3)
    assert set(members) == set(range(cm.N_FOLDS))
    assert np.array_equal(members[40:], members[:40:2])
    assert np.array_equal(reference, members[:40])
    assert ConceptMonitor._folds(data, np.zeros(60), np.zeros(40), seed=3) is None
    with pytest.raises(SemheatError, match="groups"):
        ConceptMonitor._folds(data, source[:-1], np.arange(40), seed=3)


def test_bad_input_is_a_one_line_error():
    w = _world()
    ev = _evidence(w)
    mf, pf = _task(w, "misclassification", "fit")
    ref = ev.take(w["natural"] & (w["split"] == "fit"))
    members = ev.take(mf)
    with pytest.raises(SemheatError, match="both defective and correct"):
        _monitor(w).fit(members, np.zeros(mf.sum(), bool), reference=ref)
    with pytest.raises(SemheatError, match="defect flags"):
        _monitor(w).fit(members, pf[mf][:-1], reference=ref)
    with pytest.raises(SemheatError, match="labels"):
        _monitor(w).fit(members, pf[mf], reference=Evidence(ref.logits, ref.features))
    one_class = ref.take(ref.labels == 0)
    with pytest.raises(SemheatError, match="two classes"):
        _monitor(w).fit(members, pf[mf], reference=one_class)
    with pytest.raises(SemheatError, match="features"):
        _monitor(w).fit(Evidence(members.logits), pf[mf], reference=ref)
    with pytest.raises(SemheatError, match="not fitted"):
        _monitor(w).score_samples(ev)
    with pytest.raises(SemheatError, match="similarity"):
        _monitor(w, "manhattan")
    with pytest.raises(SemheatError, match="concept embeddings"):
        ConceptMonitor(w["W"], w["b"], w["T"][:, :-1], w["E"], w["mean"], w["std"])
    _, mon = _fitted("misclassification")
    with pytest.raises(SemheatError, match="features must be"):
        mon.score_features(w["Z"][:5, :-1], w["L"][:5])
    bad = w["Z"][:5].copy()
    bad[0, 0] = np.nan
    with pytest.raises(SemheatError, match="NaN"):
        mon.score_features(bad, w["L"][:5])
    with pytest.raises(SemheatError, match="lacks"):
        ConceptMonitor.from_state({}, {})
