"""Helpers for real-browser tests: a JupyterLab server on a free localhost port, a notebook
written by the test, and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = os.environ.get("SEMHEAT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
# The data cells of a heatmap (Vega labels each mark; the legend's gradient has no such label).
CELLS = "g.mark-rect path[aria-label*='concept: ']"
# In-page timer: from the click event (capture phase) to the first thumbnail in the DOM — of
# record ``index`` when given. It looks into shadow roots too (marimo renders widgets in them).
CLICK_TIMER = """(index) => {
  const roots = [document];
  const walk = root => root.querySelectorAll('*').forEach(e => {
    if (e.shadowRoot) { roots.push(e.shadowRoot); walk(e.shadowRoot); } });
  walk(document);
  const shown = () => roots.some(r => {
    const tile = r.querySelector('.semheat-tile');
    return tile && tile.querySelector('img') &&
      (index === undefined || index === null || tile.dataset.index === String(index));
  });
  window.__semheatClicked = null; window.__semheatShown = null;
  document.addEventListener('click', () => { window.__semheatClicked = performance.now(); },
                            {capture: true, once: true});
  const obs = new MutationObserver(() => {
    if (window.__semheatClicked !== null && shown()) {
      window.__semheatShown = performance.now(); obs.disconnect();
    }
  });
  roots.forEach(r => obs.observe(r, {childList: true, subtree: true, attributes: true}));
}"""


def chromium_available() -> bool:
    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(path: Path, cells: list[str]) -> Path:
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "metadata": {},
                     "outputs": [], "source": src} for src in cells],
          "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                      "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb))
    return path


LAB_SETTINGS = {  # start the notebook's kernel without asking; no news toasts
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                        "checkForUpdates": False},
}


def _write_settings(folder: Path, theme: str | None = None) -> Path:
    settings = dict(LAB_SETTINGS)
    if theme:
        settings["@jupyterlab/apputils-extension/themes.jupyterlab-settings"] = {"theme": theme}
    for name, value in settings.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return folder


@contextmanager
def jupyterlab(root: Path, python: str = sys.executable, env: dict | None = None,
               theme: str | None = None):
    """A JupyterLab server serving ``root`` (in ``theme``, e.g. "JupyterLab Dark"); yields its
    base URL (with token)."""
    port, token = free_port(), secrets.token_hex(16)
    settings = _write_settings(root / ".lab-settings", theme)
    env = {"JUPYTERLAB_SETTINGS_DIR": str(settings), **(env or {})}
    log = open(root / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [python, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", "--ServerApp.port_retries=0",  # that port or none
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate",
         # a workspace of its own: no tab of another test's notebook is restored
         f"--LabApp.workspaces_dir={root / '.lab-workspaces'}"],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    base = f"http://127.0.0.1:{port}"
    with _served(proc, log, f"{base}/api/status?token={token}", root / "jupyterlab.log",
                 "JupyterLab"):
        yield base, token


@contextmanager
def _served(proc, log, probe: str, log_path: Path, what: str):
    """Wait until ``probe`` answers (or fail with the log's tail); stop the server after."""
    try:
        deadline = time.time() + 90
        while True:
            try:
                urllib.request.urlopen(probe, timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"{what} did not start: "
                                       + log_path.read_text()[-2000:])
                time.sleep(0.5)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@contextmanager
def marimo_app(app: Path, python: str = sys.executable):
    """``marimo run APP`` (app mode, no token) on a free localhost port; yields its URL."""
    port = free_port()
    log_path = app.with_suffix(".log")
    log = open(log_path, "w")
    proc = subprocess.Popen([python, "-m", "marimo", "run", str(app), "--headless",
                             "--no-token", "--host", "127.0.0.1", f"--port={port}"],
                            stdout=log, stderr=subprocess.STDOUT, cwd=app.parent)
    base = f"http://127.0.0.1:{port}"
    with _served(proc, log, base, log_path, "marimo"):
        yield base


@contextmanager
def browser_page(width: int = 1500, height: int = 1300):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.dialogs = []
            page.on("dialog", lambda d: d.accept() if d.type == "beforeunload"  # a reload
                    else (page.dialogs.append(d.message), d.dismiss()))
            yield page
        finally:
            browser.close()


FIRST_PROMPT = ("() => { const p = document.querySelector('.jp-Cell .jp-InputPrompt');"
                " return p ? p.innerText : ''; }")


MODEL_NOT_FOUND = ("() => [...document.querySelectorAll('.jp-OutputArea-output')]"
                   ".some(o => o.innerText.includes('model not found'))")


def open_and_run_all(page, base: str, token: str, notebook: str, timeout_ms: int = 240_000,
                     ui: str = "lab"):
    """Open ``notebook`` in JupyterLab (``ui="lab"``) or Notebook 7 (``"notebook"``), run all
    its cells, and return once the kernel has finished the first cell.

    Two races of JupyterLab on a loaded machine are absorbed here, both upstream and both
    fixed by asking again: a "Run All" made before the kernel's websocket is connected (or
    while the server retries it) is dropped without a message, so it is repeated while the
    first prompt stays ``[ ]``; and the widget manager can miss the first widgets' comm
    messages ("Error displaying widget: model not found", cf. jupyter-widgets/ipywidgets
    #3231); that page stays deaf to widgets, so it is reloaded and the notebook run again
    (at most twice).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    route = "lab/tree" if ui == "lab" else "notebooks"
    page.goto(f"{base}/{route}/{notebook}?token={token}", timeout=timeout_ms)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
    deadline = time.time() + timeout_ms / 1000
    for _ in range(3):
        _run_all(page, notebook, deadline)
        try:
            page.wait_for_function(MODEL_NOT_FOUND, timeout=5000)
        except PlaywrightTimeout:  # no such error: the widgets rendered (or are rendering)
            return
        # that page's widget manager stays deaf (running again does not help): a new page
        # connects afresh to the same kernel
        warnings.warn(f"{notebook}: JupyterLab's widget manager missed the widgets "
                      "(model not found); reloading the page and running it again")
        page.reload(timeout=timeout_ms)
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=timeout_ms)
    raise AssertionError(f"{notebook}: widgets still not found by the page after 3 runs")


def _run_all(page, notebook: str, deadline: float):
    before = page.evaluate(FIRST_PROMPT)
    while time.time() < deadline:
        page.click("li.lm-MenuBar-item:has-text('Run')")
        page.click("li.lm-Menu-item[data-command='runmenu:run-all']")
        idle_since = time.time()
        while time.time() < deadline:
            prompt = page.evaluate(FIRST_PROMPT)
            if prompt != before and any(ch.isdigit() for ch in prompt):
                return  # the kernel ran the first cell
            if "*" in prompt:
                idle_since = time.time()  # queued or running: keep waiting
            elif time.time() - idle_since > 5:
                break  # the request was dropped: ask again
            time.sleep(0.25)
    raise TimeoutError(f"could not run {notebook}: first prompt {page.evaluate(FIRST_PROMPT)!r}")


@contextmanager
def diagnosed(page, root: Path, name: str):
    """On failure keep what explains it: a screenshot, the notebook's outputs and the tail of
    the server log go to ``artifacts/screenshots/FAILED_<name>.*``, the outputs and the log
    tail into the error message."""
    try:
        yield
    except Exception as err:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(ARTIFACTS / f"FAILED_{name}.png"))
            outputs = "\n".join(page.locator(".jp-OutputArea-output").all_inner_texts())
        except Exception as page_err:  # the page itself may be gone
            outputs = f"<page unreadable: {page_err}>"
        log_path = root / "jupyterlab.log"
        log = log_path.read_text(errors="replace") if log_path.exists() else ""
        (ARTIFACTS / f"FAILED_{name}.txt").write_text(
            f"{err}\n\n--- notebook outputs ---\n{outputs}\n\n--- server log ---\n{log}")
        raise AssertionError(f"{err}\n--- notebook outputs ---\n{outputs[-2000:]}"
                             f"\n--- server log (tail) ---\n{log[-1500:]}") from err


def screenshot(page, name: str, locator=None) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    (locator or page).screenshot(path=str(path))
    return path


def cell_path(heatmap, row: str, column: str):
    """The SVG path of one heatmap cell, found by its ARIA label (Vega writes one per mark)."""
    paths = heatmap.locator(CELLS)
    n = paths.count()
    for i in range(n):
        label = paths.nth(i).get_attribute("aria-label") or ""
        if f"class: {row};" in label and f"concept: {column};" in label:
            return paths.nth(i)
    raise AssertionError(f"no cell ({row}, {column}) among {n} marks")


def click_and_time(page, heatmap, row: str, column: str, first_index: int | None = None) -> float:
    """Click a cell; the in-page milliseconds from the click to its first thumbnail (the tile
    of record ``first_index`` when given)."""
    page.evaluate(CLICK_TIMER, first_index)
    cell_path(heatmap, row, column).click()
    page.wait_for_function("() => window.__semheatShown !== null", timeout=60_000)
    return page.evaluate("() => window.__semheatShown - window.__semheatClicked")


def warm_clicks(page, heatmap, bundle, n: int, after: int) -> list[float]:
    """:func:`click_and_time` on ``n`` differential cells with mistakes, each showing another
    first input than the one before (so that the timer sees the new page, not the old)."""
    times, last = [], after
    for row in bundle.classes:
        for column in bundle.concept_names:
            query = bundle.cell_query("differential", row, column)
            if len(times) < n and query.total and int(query.indices[0]) != last:
                last = int(query.indices[0])
                times.append(click_and_time(page, heatmap, row, column, last))
    return times
