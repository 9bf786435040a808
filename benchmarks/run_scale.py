"""Analysis at scale: wall time and peak memory of the post-extraction analysis of N synthetic
inputs (a seeded extractor stands in for the forward passes), each size in a fresh process.

    python benchmarks/run_scale.py [--scale 100000 --scale 1000000] [--out FILE]

The same figures print from `semheat bench --scale N --json`; see semheat_widgets/bench/scale.py
for what is measured and the goals.
"""

import argparse
import json
from pathlib import Path

from semheat_widgets.bench.scale import scale_benchmarks

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, action="append", default=None,
                    help="inputs to analyse (repeat for several sizes)")
    ap.add_argument("--work", default=None, help="where the temporary bundles go")
    ap.add_argument("--out", default=str(Path(__file__).with_name("scale_results.json")))
    args = ap.parse_args()
    result = scale_benchmarks(args.scale or [100_000, 1_000_000], work=args.work)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
