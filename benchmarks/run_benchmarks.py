"""Run the performance benchmarks and save their figures (ratios measured side by side).

    python benchmarks/run_benchmarks.py [--records N] [--out benchmarks/results.json]

The same figures print from `semheat bench --json`; see semheat_widgets/bench.py for what
each ratio compares and its goal.
"""

import argparse
import json
from pathlib import Path

from semheat_widgets.bench.suite import run_benchmarks

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args()
    result = run_benchmarks(records=args.records, quick=args.quick)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
