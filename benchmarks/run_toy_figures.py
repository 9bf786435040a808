"""Measure the toy world's figures and keep them for the documentation's tables.

    python benchmarks/run_toy_figures.py WORLD [--out benchmarks/toy_figures.json]

WORLD is a toy world built by ``semheat toy build WORLD`` (default sizes). The file written holds
the JSON of ``semheat localize WORLD --json``, ``semheat monitor WORLD --json`` and ``semheat
ground WORLD/BUNDLE --json`` for each bundle, unchanged, so that ``docs/figures.md`` shows
exactly what those commands print.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def command_json(*argv: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", *argv], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("world")
    ap.add_argument("--out", default=str(Path(__file__).with_name("toy_figures.json")))
    args = ap.parse_args()
    figures = {"localize": command_json("localize", args.world, "--json"),
               "monitor": command_json("monitor", args.world, "--json"),
               "ground": {name: command_json("ground", str(Path(args.world) / name), "--json")
                          for name in ("clean", "encoder_fault", "head_fault")}}
    for report in (figures["localize"], figures["monitor"], *figures["ground"].values()):
        report.pop("world", None)  # a path of the measuring machine, not a figure
    tmp = Path(args.out).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(figures, indent=1) + "\n")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
