import numpy as np
import pytest

from semheat_widgets.engine.heatmaps import (KINDS, ConfusionSums, Standardizer, all_heatmaps,
                                             heatmap, single_heatmap)
from semheat_widgets.errors import SemheatError

K, C = 4, 5
ROWS = [f"class{k}" for k in range(K)]
COLS = [f"concept{j}" for j in range(C)]


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    p = np.where(rng.random(n) < 0.7, y, rng.integers(0, K, n))
    p[y == 3] = np.where(rng.random((y == 3).sum()) < 0.5, 3, 0)
    s = rng.normal(size=(n, C)).astype(np.float32)
    return s, y, p


def _brute(s, y, p, kind):
    """Row k of a group heatmap by brute force."""
    sel = {
        "ground_truth": lambda k: y == k, "output": lambda k: p == k,
        "correct": lambda k: (p == k) & (y == p), "incorrect": lambda k: (p == k) & (y != p),
        "misclassified_from": lambda k: (y == k) & (y != p),
    }[kind]
    vals = np.full((K, C), np.nan)
    counts = np.zeros(K, int)
    for k in range(K):
        m = sel(k)
        counts[k] = m.sum()
        if m.any():
            vals[k] = s[m].astype(np.float64).mean(0)
    return vals, counts


@pytest.mark.parametrize("kind", ["ground_truth", "output", "correct", "incorrect",
                                  "misclassified_from"])
def test_group_heatmaps_equal_brute_force_means(kind):
    s, y, p = _data()
    stats = ConfusionSums.from_scores(s, y, p, K, chunk_size=37)  # many chunks
    hm = heatmap(kind, stats, ROWS, COLS)
    vals, counts = _brute(s, y, p, kind)
    assert np.array_equal(hm.counts, counts)
    assert np.allclose(hm.values, vals, equal_nan=True, rtol=1e-10, atol=1e-12)
    assert hm.values.shape == (K, C) and hm.rows == ROWS and hm.columns == COLS


def test_differentials_are_differences_of_group_heatmaps():
    s, y, p = _data(seed=1)
    maps = all_heatmaps(s, y, p, ROWS, COLS)
    assert set(maps) == set(KINDS)
    d = maps["differential"]
    assert np.allclose(d.values, maps["correct"].values - maps["incorrect"].values,
                       equal_nan=True)
    assert np.array_equal(d.counts, maps["correct"].counts)
    assert np.array_equal(d.counts_other, maps["incorrect"].counts)
    g = maps["gt_minus_output"]
    assert np.allclose(g.values, maps["ground_truth"].values - maps["output"].values,
                       equal_nan=True)


def test_empty_cells_are_nan_with_count_zero():
    s, y, p = _data(seed=2)
    p[y == 2] = 2  # class 2 is never misclassified ...
    p[(y != 2) & (p == 2)] = 1  # ... and nothing else is predicted as 2
    y[y == 1] = 0  # class 1 has no examples at all
    maps = all_heatmaps(s, y, p, ROWS, COLS)
    assert maps["ground_truth"].counts[1] == 0 and np.isnan(maps["ground_truth"].values[1]).all()
    assert maps["incorrect"].counts[2] == 0 and np.isnan(maps["incorrect"].values[2]).all()
    assert np.isnan(maps["differential"].values[2]).all()  # empty side -> empty difference
    assert not np.isnan(maps["correct"].values[2]).any()
    cells = maps["incorrect"].to_rows()
    empty = [c for c in cells if c["row"] == "class2"]
    assert all(c["value"] is None and c["n"] == 0 for c in empty)


def test_standardised_values_are_z_scores_of_group_means():
    s, y, p = _data(seed=3)
    st = Standardizer.fit(s[:200])
    mu, sd = s[:200].astype(np.float64).mean(0), s[:200].astype(np.float64).std(0)
    stats = ConfusionSums.from_scores(s, y, p, K)
    raw = heatmap("output", stats, ROWS, COLS).values
    std = heatmap("output", stats, ROWS, COLS, st)
    assert std.standardized
    assert np.allclose(std.values, (raw - mu) / sd)
    diff_raw = heatmap("differential", stats, ROWS, COLS).values
    diff_std = heatmap("differential", stats, ROWS, COLS, st).values
    assert np.allclose(diff_std, diff_raw / sd, equal_nan=True)


def test_binarize_top_k_and_threshold():
    s, y, p = _data(seed=4)
    hm = all_heatmaps(s, y, p, ROWS, COLS)["ground_truth"]
    b = hm.binarize(top_k=2)
    assert b.kind == "binarized_ground_truth"
    assert (np.nansum(b.values, axis=1) == 2).all()
    for i in range(K):
        assert set(np.flatnonzero(b.values[i] == 1)) == set(np.argsort(-hm.values[i])[:2])
    t = hm.binarize(threshold=0.0)
    assert np.array_equal(t.values, (hm.values > 0).astype(float))
    with pytest.raises(SemheatError):
        hm.binarize()
    with pytest.raises(SemheatError):
        hm.binarize(top_k=C + 1)


def test_single_input_heatmap_is_the_score_row():
    row = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    st = Standardizer(np.full(C, 0.3), np.full(C, 0.1))
    hm = single_heatmap(row, COLS, "class0", st)
    assert hm.shape == (1, C)
    assert np.allclose(hm.values[0], (row - 0.3) / 0.1)


def test_mismatched_inputs_are_clear_errors():
    s, y, p = _data()
    with pytest.raises(SemheatError, match="do not match"):
        ConfusionSums.from_scores(s[:-1], y, p, K)
    with pytest.raises(SemheatError, match="labels must lie"):
        ConfusionSums.from_scores(s, y + K, p, K)
    stats = ConfusionSums.from_scores(s, y, p, K)
    with pytest.raises(SemheatError, match="unknown heatmap kind"):
        heatmap("nonsense", stats, ROWS, COLS)
