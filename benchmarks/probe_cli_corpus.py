"""Probe every read-only command on the corpus of damaged bundles (issue 28's "corpus"
probe): each damage of ``tests/unit/engine/test_damaged_bundles.py`` (manifest, records,
arrays, state and folder damage) and of its value damages, times each command that reads a bundle.

Each probe runs the command line in-process (``cli.main``) and is classified as

- ``clean line``: exit status 2 and exactly one ``semheat: error:`` line on stderr;
- ``worked``: exit status 0 (expected only for damage that loading cannot see: values
  inside arrays, which ``semheat verify`` scans for);
- ``traceback``: any exception escaping, or an error of more than one line;
- ``hang``: over 60 s;
- ``lost``: the damaged copy changed or vanished (a reader must never write).

A sample also runs in a subprocess, to see deaths without a message (a signal, no stderr).
Run from the repository root: ``python benchmarks/probe_cli_corpus.py [--json OUT]``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TQDM_DISABLE", "1")


def _small_bundle(where: Path) -> Path:
    import torch
    from torch.utils.data import TensorDataset

    import open_clip
    from open_clip.model import CLIP

    from helpers.tiny import CLASSES, TINY_CLIP_CFG, colour_images, make_resnet
    from semheat_widgets.engine.extract.attacks import Attack
    from semheat_widgets.engine.models.classifier import ModelSplit
    from semheat_widgets.engine.concepts.bank import ConceptBank
    from semheat_widgets.engine.pipeline import AnalysisConfig, analyze

    from semheat_widgets.engine.models.vlm import VLM

    torch.manual_seed(0)
    vlm = VLM(CLIP(**TINY_CLIP_CFG), open_clip.tokenizer.SimpleTokenizer(context_length=16),
              image_size=32, name="test:tiny-clip", device="cpu")
    images, labels = colour_images(96)
    cfg = AnalysisConfig(attacks=(Attack("fgsm", 8 / 255),), attack_limit=16, batch_size=48,
                         thumb_size=8)
    b = analyze(ModelSplit(make_resnet(), input_size=32, name="test:resnet10"),
                vlm, TensorDataset(images, torch.from_numpy(labels)),
                classes=CLASSES, concepts=ConceptBank(["red", "green", "blue", "dark"]),
                config=cfg, name="small", progress=False)
    return b.save(where / "small")


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    for p in sorted(path.rglob("*")) if path.exists() else []:
        h.update(str(p.relative_to(path)).encode())
        if p.is_file() and not p.is_fifo():
            h.update(p.read_bytes())
    return h.hexdigest()


def _commands(path: Path, good: Path, out: Path) -> dict[str, list[str]]:
    return {"info": ["info", str(path), "--json"], "verify": ["verify", str(path), "--json"],
            "localize": ["localize", str(path), "--json"],
            "monitor": ["monitor", str(path), "--json"],
            "report": ["report", str(path), "--html", str(out / "r.html"), "--no-maps"],
            "compare": ["compare", str(good), str(path), "--json"]}


class _Timeout(Exception):
    pass


def _in_process(argv: list[str]) -> tuple[str, str]:
    from semheat_widgets import cli

    err = io.StringIO()

    def alarm(*_):
        raise _Timeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            rc = cli.main(argv)
    except _Timeout:
        return "hang", ""
    except BaseException as exc:  # noqa: BLE001 - anything escaping is the finding
        return "traceback", f"{type(exc).__name__}: {exc}"[:200]
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    text = err.getvalue().strip()
    if rc == 0:
        return "worked", ""
    if rc == 2 and text.count("\n") == 0 and text.startswith("semheat: error: "):
        return "clean line", text[:200]
    return "traceback", text[-200:]


def _subprocess(argv: list[str]) -> str:
    try:
        done = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", *argv],
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "hang"
    if done.returncode < 0 and not done.stderr.strip():
        return "death without message"
    if done.returncode == 0:
        return "worked"
    lines = done.stderr.strip().splitlines()
    return "clean line" if done.returncode == 2 and len(lines) == 1 else "traceback"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the per-probe outcomes here")
    parser.add_argument("--subprocess-every", type=int, default=10,
                        help="also run every Nth probe in a fresh process (default 10)")
    args = parser.parse_args()
    from test_damaged_bundles import DAMAGE, VALUE_DAMAGE, WORLD_DAMAGE

    rows, counts = [], Counter()
    with tempfile.TemporaryDirectory(prefix="semheat_corpus_") as tmp:
        tmp = Path(tmp)
        good = _small_bundle(tmp)
        started = time.time()
        n = 0
        for name, damage, *_ in [(d[0], d[1]) for d in DAMAGE + VALUE_DAMAGE]:
            for command in _commands(tmp / "x", good, tmp).keys():
                case = tmp / f"case-{n}"
                case.mkdir()
                path = case / "bundle"
                shutil.copytree(good, path)
                damage(path)
                before = _digest(path)
                argv = _commands(path, good, case)[command]
                outcome, detail = _in_process(argv)
                if outcome != "hang" and _digest(path) != before:
                    outcome = "lost"
                sub = _subprocess(argv) if n % args.subprocess_every == 0 else None
                if sub == "death without message":
                    outcome = sub
                rows.append({"damage": name, "command": command, "outcome": outcome,
                             "subprocess": sub, "detail": detail})
                counts[outcome] += 1
                n += 1
                shutil.rmtree(case, ignore_errors=True)
        for name, data, *_ in WORLD_DAMAGE:  # a toy world whose world.json is damaged
            for command in ("info", "localize", "monitor", "report"):
                world = tmp / f"world-{n}"
                world.mkdir()
                shutil.copytree(good, world / "good")
                (world / "world.json").write_bytes(data)
                before = _digest(world)
                argv = _commands(world, good, world)[command]
                outcome, detail = _in_process(argv)
                if outcome != "hang" and _digest(world) != before and command != "report":
                    outcome = "lost"
                rows.append({"damage": f"world:{name}", "command": command, "outcome": outcome,
                             "subprocess": None, "detail": detail})
                counts[outcome] += 1
                n += 1
                shutil.rmtree(world, ignore_errors=True)
        seconds = time.time() - started
    for row in rows:
        if row["outcome"] not in ("clean line", "worked"):
            print(f"{row['outcome']:>10}  {row['command']:<9} {row['damage']}: {row['detail']}")
    worked = Counter(r["damage"] for r in rows if r["outcome"] == "worked")
    print(f"{len(rows)} probes ({len(DAMAGE) + len(VALUE_DAMAGE)} bundle damages x "
          f"{len(_commands(good, good, good))} commands, {len(WORLD_DAMAGE)} world damages x 4) "
          f"in {seconds:.0f} s:", dict(counts))
    print("worked on:", dict(worked))
    if args.json:
        args.json.write_text(json.dumps({"counts": counts, "probes": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
