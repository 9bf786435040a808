"""Concept discovery and error slices on the fault family, the tied concept out of the bank.

    python benchmarks/discovery_family.py FAMILY_DIR [--out benchmarks/discovery_family.json]

For every tie bundle: the rank of the tied concept (any of its phrasings, or a word of them)
among the discovered phrases for the tied mistakes (construction truth ``gt_fault``), for both
references and both spaces; the error slice that overlaps them most (precision, recall, its
name, whether named with confidence). For the head-fault bundles: how many slices, how many
named with confidence. Neither discovery nor slicing reads the bundle's concept bank (scores
and concept embeddings): they use the toy CLIP's training vocabulary, in which the tied
concept stays; the bank is where the concept is "removed". Development ties are marked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from semheat_widgets.data.toy.captions import ATTRIBUTE_PHRASES
from semheat_widgets.data.vocab import TOY_STOPWORDS
from semheat_widgets.engine.bundle import Bundle
from semheat_widgets.zoo.family_build import read_family


def matches(concept: str) -> set[str]:
    forms = set(ATTRIBUTE_PHRASES[concept])
    return forms | {w for f in forms for w in f.split() if w not in TOY_STOPWORDS}


def concept_rank(found, concept: str, space: str) -> int:
    names = matches(concept)
    return min(int(found.rank[space][i]) for i, p in enumerate(found.phrases) if p in names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("family")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    info = read_family(args.family)
    out = {}
    for name, meta in info["bundles"].items():
        path = Path(args.family) / name
        if not path.is_dir():
            continue
        t0 = time.time()
        b = Bundle.load(path)
        entry = {"role": meta["role"], "fault": meta["fault"]}
        slices = b.slices()
        entry["n_slices"] = len(slices)
        entry["n_confident"] = sum(s.confident for s in slices)
        entry["slices"] = [{k: v for k, v in s.to_dict().items() if k != "indices"}
                           for s in slices]
        if meta["fault"] == "encoder":
            concept = meta["concept"]
            truth = np.asarray(b.column("gt_fault")) == "encoder"
            entry["n_tied_mistakes"] = int(truth.sum())
            ranks = {}
            for ref in ("true", "predicted"):
                found = b.discover(truth, reference=ref)
                for space in ("image", "aligned"):
                    ranks[f"{ref}/{space}"] = concept_rank(found, concept, space)
                if ref == "true":
                    entry["top3_true_image"] = [p["phrase"] for p in found.top(3, "image")]
            entry["concept_rank"] = ranks
            tidx = np.flatnonzero(truth)
            if slices:
                best = max(slices, key=lambda s: np.isin(s.indices, tidx).sum())
                hit = int(np.isin(best.indices, tidx).sum())
                entry["slice"] = {"size": len(best.indices),
                                  "precision": round(hit / max(len(best.indices), 1), 4),
                                  "recall": round(hit / max(len(tidx), 1), 4),
                                  "name": best.name, "confident": best.confident,
                                  "named_correctly": best.name in matches(concept)}
        entry["seconds"] = round(time.time() - t0, 1)
        out[name] = entry
        print(name, json.dumps({k: v for k, v in entry.items() if k != "slices"}), flush=True)
    result = {"bundles": out, "summary": summarise(out)}
    print(json.dumps(result["summary"], indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


def summarise(out: dict) -> dict:
    """Per role (ties with fewer than MIN_TIED tied mistakes apart, as in the localization
    report): how many ties find the tied concept at rank 1 / in the top 3 (true-class
    reference, image space: the setting chosen on the development ties), how many come out as
    one slice with precision and recall >= 0.8 named correctly, and the slices named with
    confidence on the head faults, where no concept was planted."""
    from semheat_widgets.zoo.family_build import MIN_TIED

    groups: dict = {}
    for name, e in out.items():
        if e["fault"] == "head":
            g = groups.setdefault(f"head_{e['role'].replace(' ', '_')}",
                                  {"bundles": 0, "slices": 0, "confident_slices": 0})
            g["bundles"] += 1
            g["slices"] += e["n_slices"]
            g["confident_slices"] += e["n_confident"]
            continue
        role = e["role"] if e["n_tied_mistakes"] >= MIN_TIED else "barely takes"
        g = groups.setdefault(f"encoder_{role.replace(' ', '_')}",
                              {"ties": 0, "rank_1": 0, "top_3": 0, "slice_found_and_named": 0})
        rank = e["concept_rank"]["true/image"]
        sl = e.get("slice", {})
        g["ties"] += 1
        g["rank_1"] += rank == 1
        g["top_3"] += rank <= 3
        g["slice_found_and_named"] += bool(sl and sl["precision"] >= 0.8 and sl["recall"] >= 0.8
                                           and sl["named_correctly"])
    return groups


if __name__ == "__main__":
    sys.exit(main())
