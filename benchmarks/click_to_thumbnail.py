"""Click on a heatmap cell -> first thumbnail drawn, in a real JupyterLab (headless Chromium),
measured by an in-page timer (click event, capture phase -> the first new tile image in the
DOM); first click and warm clicks (median), plus the built front-end modules' sizes.

    SEMHEAT_TOY_DIR=... PYTHONPATH=$PWD python benchmarks/click_to_thumbnail.py [--clicks 6]

Writes benchmarks/click_results.json. Goal (issue 27): warm median <= 50 ms, modules <= 300 KB
minified (Vega is not bundled: Altair's JupyterChart brings its own)."""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from helpers.jupyter_browser import browser_page, jupyterlab, open_and_run_all, write_notebook  # noqa: E402

CELLS = "g.mark-rect path[aria-label*='concept: ']"
ARM = """() => {
  const first = document.querySelector('.semheat-tile img');
  window.__t0 = null; window.__t1 = null;
  document.addEventListener('click', () => { window.__t0 = performance.now(); },
                            {capture: true, once: true});
  new MutationObserver((_, obs) => {
    const now = document.querySelector('.semheat-tile img');
    if (window.__t0 !== null && now && now !== first) {
      window.__t1 = performance.now(); obs.disconnect();
    }
  }).observe(document.body, {childList: true, subtree: true});
}"""


def asset_sizes() -> dict:
    js = ROOT / "semheat_widgets" / "widgets" / "js"
    files = sorted(js.glob("*.js")) + sorted(js.glob("*.css"))
    sizes = {f.name: f.stat().st_size for f in files}
    sizes["total_bytes"] = sum(sizes.values())
    sizes["total_gzip_bytes"] = sum(len(gzip.compress(f.read_bytes())) for f in files)
    return sizes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clicks", type=int, default=6)
    args = ap.parse_args()
    from semheat_widgets.engine.bundle import Bundle
    from semheat_widgets.zoo.toy_dir import toy_bundle

    path = toy_bundle("encoder_fault")
    b = Bundle.load(path)
    cells = [(r, c) for r in b.classes for c in b.concept_names
             if b.cell_query("differential", r, c).total > 0][:args.clicks + 1]
    with tempfile.TemporaryDirectory(prefix="semheat_click_") as tmp:
        tmp = Path(tmp)
        write_notebook(tmp / "click.ipynb", [
            f"import semheat_widgets as sw\nex = sw.Explorer(r'{path}')\nex"])
        times = []
        with jupyterlab(tmp) as (base, token), browser_page() as page:
            open_and_run_all(page, base, token, "click.ipynb")
            heatmap = page.locator(".jp-OutputArea-output").locator(".vega-embed").first
            heatmap.locator(CELLS).first.wait_for(timeout=240_000)
            labels = [heatmap.locator(CELLS).nth(i).get_attribute("aria-label") or ""
                      for i in range(heatmap.locator(CELLS).count())]
            for n in range(len(cells)):
                row, col = cells[n % len(cells)]
                i = next(k for k, s in enumerate(labels)
                         if f"class: {row};" in s and f"concept: {col};" in s)
                page.evaluate(ARM)
                heatmap.locator(CELLS).nth(i).click()
                page.wait_for_function("() => window.__t1 !== null", timeout=60_000)
                times.append(round(page.evaluate("() => window.__t1 - window.__t0"), 1))
                time.sleep(0.5)
    out = {"first_click_ms": times[0], "warm_clicks_ms": times[1:],
           "warm_median_ms": statistics.median(times[1:]), "assets": asset_sizes()}
    (ROOT / "benchmarks" / "click_results.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
