"""Readers see the old bundle or the new one, never a mix: a real writer process alternates two
versions at one path with ``overwrite=True`` while this process loads it in a loop. Every
file of a version carries that version's number, so a load that mixed two would show it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np

WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from semheat_widgets.engine.bundle import Bundle

    def version(v, n=40):
        labels = np.arange(n) % 2
        cols = {"id": np.arange(n), "split": ["fit", "calib", "eval", "eval"] * (n // 4),
                "perturbation": ["natural"] * n, "source_id": np.arange(n), "label": labels,
                "prediction": labels, "correct": np.ones(n, bool),
                "version": np.full(n, v)}
        arrays = {"scores": np.full((n, 3), v, np.float32) + np.arange(3, dtype=np.float32),
                  "logits": np.full((n, 2), v, np.float32)}
        state = {"standardizer.mean": np.full(3, v, np.float32),
                 "standardizer.std": np.ones(3, np.float32),
                 "concept_embeddings": np.full((3, 4), v, np.float32)}
        return Bundle.create(name=f"v{v}", classes=["a", "b"],
                             concepts=[{"name": f"c{j}", "prompts": [f"c{j}"]} for j in range(3)],
                             columns=cols, arrays=arrays, state=state)

    out, seconds = sys.argv[1], float(sys.argv[2])
    a, b = version(1), version(2)
    a.save(out, overwrite=True)
    print("ready", flush=True)
    stop, saves = time.time() + seconds, 0
    while time.time() < stop:
        (a if saves % 2 else b).save(out, overwrite=True)
        saves += 1
    print(saves, flush=True)
""")


def _version_of(bundle) -> set[int]:
    """Every version number the loaded files carry (one, unless the load mixed versions)."""
    seen = {int(bundle.name[1:])}
    seen |= {int(v) for v in np.unique(bundle.column("version"))}
    seen |= {int(v) for v in np.unique(np.asarray(bundle.arrays["logits"]))}
    seen.add(int(np.asarray(bundle.arrays["scores"])[0, 0]))
    seen |= {int(v) for v in np.unique(bundle.state["standardizer.mean"])}
    seen |= {int(v) for v in np.unique(bundle.state["concept_embeddings"])}
    return seen


def test_readers_see_old_or_new_never_a_mix(tmp_path):
    from semheat_widgets.engine.bundle import Bundle

    target = tmp_path / "b"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), "20"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready", writer.stderr.read()
        loads, mixed, errors, versions = 0, [], [], set()
        while writer.poll() is None:
            try:
                b = Bundle.load(target)
            except Exception as exc:  # noqa: BLE001 - any failure counts against the goal
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            seen = _version_of(b)
            loads += 1
            versions |= seen
            if len(seen) != 1:
                mixed.append(seen)
        saves = int(writer.stdout.readline().strip())
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait(30)
    assert writer.returncode == 0, writer.stderr.read()
    print(f"{saves} saves, {loads} loads, {len(mixed)} mixed, {len(errors)} errors")
    assert saves >= 20 and loads >= 20  # the two really overlapped, many times
    assert versions == {1, 2}  # the reader saw both versions
    assert mixed == [] and errors == []
    left = [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]
    assert left == []  # no temporaries or old versions left behind
