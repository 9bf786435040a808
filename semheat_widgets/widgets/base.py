"""What every widget builds on: how a bundle is given, where the front-end modules live, and
how Altair renders offline."""

from __future__ import annotations

import os
from pathlib import Path

import altair as alt

from ..engine.bundle import Bundle
from ..errors import SemheatError, SemheatTypeError

JS = Path(__file__).resolve().parent / "js"  # the anywidget ES modules and their CSS
# SVG keeps every cell a DOM element (with an aria-label), which tests and screen readers use.
EMBED_OPTIONS = {"actions": False, "renderer": "svg"}

_offline_enabled = False


def as_bundle(bundle) -> Bundle:
    """A :class:`Bundle`, given one or the path of one (anything else: one line)."""
    if isinstance(bundle, Bundle):
        return bundle
    if not isinstance(bundle, (str, os.PathLike)):
        raise SemheatTypeError(f"a widget needs a Bundle or the path of one, got "
                               f"{type(bundle).__name__}")
    return Bundle.load(bundle)


def enable_offline() -> None:
    """Serve the Vega libraries from vl-convert instead of a CDN (once per kernel).

    vl-convert bundles the chart widget's JavaScript with them on every call (seconds, in
    every fresh kernel), so the bundle is kept in the user cache, keyed by the Altair and
    vl-convert versions and the widget's source; a fresh kernel reads it back."""
    global _offline_enabled
    if _offline_enabled:
        return
    chart = alt.JupyterChart
    if not chart._is_offline:
        path = _offline_cache_path()
        cached = None
        if path is not None and path.is_file():
            try:
                cached = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                cached = None  # a damaged entry is rebuilt and replaced
        if cached:
            chart._esm, chart._is_offline = cached, True
        else:
            chart.enable_offline()
            if path is not None:
                _store(path, chart._esm)
    _offline_enabled = True


def offline_cache_dir() -> Path:
    """Where the bundled Vega JavaScript is cached: ``$SEMHEAT_JS_CACHE`` or the user cache."""
    env = os.environ.get("SEMHEAT_JS_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "semheat_widgets" / "vega_offline"


def _offline_cache_path() -> Path | None:
    """The cache file of this Altair + vl-convert pair (None if either cannot say which)."""
    import hashlib

    try:
        import vl_convert
        from altair.jupyter.jupyter_chart import load_js_src
        from altair.utils._importers import vl_version_for_vl_convert

        key = "\0".join([alt.__version__, vl_convert.__version__,
                          vl_version_for_vl_convert(), load_js_src()])
    except (ImportError, AttributeError, OSError):
        return None
    return offline_cache_dir() / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.js"


def _store(path: Path, text) -> None:
    """Write a cache entry atomically; a cache that cannot be written is only not used."""
    from ..safe_io import atomic_write

    if not isinstance(text, str) or not text:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, text)
    except (OSError, SemheatError):  # a read-only or full home: bundled again next time
        pass


def empty_chart(mark: str = "rect") -> alt.JupyterChart:
    """An Altair chart widget that follows JupyterLab's theme (see ``widgets.css``)."""
    enable_offline()
    # debounce_wait=0: a click is one selection event, sent at once (Altair's default waits
    # 10 ms for more events, which a click never brings)
    chart = alt.JupyterChart(getattr(alt.Chart(alt.Data(values=[])), f"mark_{mark}")(),
                             embed_options=EMBED_OPTIONS, debounce_wait=0)
    chart.add_class("semheat-chart")
    return chart

