"""semheat_widgets: debug vision classifiers with vision-language models, inside Jupyter.

The analysis engine lives in :mod:`semheat_widgets.engine`; the bundled toy world in
:mod:`semheat_widgets.zoo`; the Jupyter widgets in :mod:`semheat_widgets.widgets`
(``semheat_widgets.Explorer`` is imported lazily, so the CLI never loads Jupyter code).
"""

__version__ = "0.1.0"

from .errors import SemheatError  # noqa: E402
from .tables import Table  # noqa: E402

_WIDGETS = ("Explorer", "MonitorPanel", "HeatmapView", "ImageGrid", "ConceptPicker",
            "DetailView", "CompareView")


def toy_world(directory=None, bundles=("clean", "encoder_fault", "head_fault"), **build_kwargs):
    """The bundled toy world's directory, with ``bundles`` built there on first use
    (``$SEMHEAT_TOY_DIR`` moves it; default: the user cache)."""
    from .zoo.toy_dir import toy_world as _toy_world

    return _toy_world(directory, bundles, **build_kwargs)


def toy_bundle(name: str, directory=None, **build_kwargs):
    """The path of one toy-world bundle, built on first use without waiting for the others."""
    from .zoo.toy_dir import toy_bundle as _toy_bundle

    return _toy_bundle(name, directory, **build_kwargs)


def analyze(model, data, classes=None, concepts=None, vlm="toy", **kwargs):
    """Analyse your own classifier on your own data in one call (see
    :func:`semheat_widgets.workflows.own_model.analyze` and docs/your_own_model.md)."""
    from .workflows.own_model import analyze as _analyze

    return _analyze(model, data, classes, concepts, vlm, **kwargs)


def load_ipython_extension(ipython):
    """``%load_ext semheat_widgets``: adds the ``%semheat [PATH]`` line magic."""
    from .widgets.magics import load_ipython_extension as _load

    _load(ipython)


def __getattr__(name):
    # Heavy parts load on first use, so `semheat --version` and worker processes stay light.
    if name == "Bundle":
        from .engine.bundle import Bundle

        return Bundle
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'semheat_widgets' has no attribute {name!r}")


__all__ = ["Bundle", "SemheatError", "Table", "__version__", "analyze", "toy_bundle", "toy_world",
           *_WIDGETS]
