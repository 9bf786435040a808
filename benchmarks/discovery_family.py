"""Concept discovery and error slices on the fault family, the tied concept out of the bank.

    PYTHONPATH=. python benchmarks/discovery_family.py FAMILY_DIR [--out results.json]

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
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
