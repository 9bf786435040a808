"""How responsible concepts were chosen for round 2 of the fault family (issue 24): candidate
rankings on round 1, every bundle of which is development for round 2.

    python benchmarks/responsible_dev.py FAMILY_DIR [--out benchmarks/responsible_dev.json]

FAMILY_DIR is round 1 (``semheat toy family DIR``). For every encoder tie with at least 30 known
faults, the rank of the tied concept among the bank's concepts when the known faults' per-input
scores are averaged, for each candidate. ``v``: what the images show (the VLM's standardised
concept scores of their pixels); ``GT``: the ground-truth heatmap of ``v`` on the reference
(``fit``) inputs; ``m, s``: per true class, the mean and spread of ``v`` over the correctly
classified reference inputs; ``y`` the true and ``ŷ`` the predicted class.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.engine.localize import class_reference
from semheat_widgets.engine.reports.localization import shown_scores
from semheat_widgets.zoo.family_build import MIN_TIED
from semheat_widgets.zoo.family_file import read_family


def candidates(v, truth, m, s, y, yh) -> dict[str, np.ndarray]:
    d = truth[yh] - truth[y]  # how much more the predicted class shows it than the true one
    return {
        "min(v - GT[y], GT[ŷ] - GT[y]) (round 1's)": np.minimum(v - truth[y], d),
        "(v - m[y]) / s[y] (chosen)": (v - m[y]) / s[y],
        "v - m[y]": v - m[y],
        "min((v - m[y]) / s[y], d / s[y])": np.minimum((v - m[y]) / s[y], d / s[y]),
        "v - m[y] where GT[ŷ] > GT[y]": np.where(d > 0, v - m[y], np.nan),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("family")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    info = read_family(args.family)
    ties = {}
    for name, meta in info["bundles"].items():
        if meta["fault"] != "encoder":
            continue
        b = Bundle.load(Path(args.family) / name)
        known = np.flatnonzero((b.column("gt_fault").astype(str) == "encoder")
                               & b.mask(split="eval") & ~b.column("correct").astype(bool))
        if len(known) < MIN_TIED:
            continue
        labels = b.column("label").astype(int)
        fit = np.flatnonzero(b.mask(perturbation="natural", split="fit"))
        v_fit, (m, s) = shown_scores(b, fit)
        right = b.column("correct").astype(bool)[fit]
        truth = np.zeros((len(b.classes), len(b.concept_names)))
        for k in range(len(b.classes)):
            rows = labels[fit] == k
            truth[k] = v_fit[rows].mean(0) if rows.any() else 0.0
        assert np.allclose((m, s), class_reference(v_fit[right], labels[fit][right],
                                                   len(b.classes)))
        v, _ = shown_scores(b, known)
        y, yh = labels[known], b.column("prediction").astype(int)[known]
        j = b.concept_names.index(meta["concept"])
        ranks = {}
        for key, r in candidates(v, truth, m, s, y, yh).items():
            with np.errstate(all="ignore"):
                mean = np.nanmean(r, 0)
            order = np.argsort(-np.nan_to_num(mean, nan=-np.inf), kind="stable")
            ranks[key] = int(np.flatnonzero(order == j)[0]) + 1
        ties[name] = {"known_faults": int(len(known)), "ranks": ranks}
        print(name, ranks, flush=True)
    keys = next(iter(ties.values()))["ranks"]
    summary = {k: {"ties": len(ties), "rank_1": sum(t["ranks"][k] == 1 for t in ties.values()),
                   "top_3": sum(t["ranks"][k] <= 3 for t in ties.values()),
                   "mean_rank": round(float(np.mean([t["ranks"][k] for t in ties.values()])), 2)}
               for k in keys}
    print(json.dumps(summary, indent=1, ensure_ascii=False))
    if args.out:
        Path(args.out).write_text(json.dumps({"ties": ties, "summary": summary}, indent=1,
                                             ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
