"""semheat_widgets: debug vision classifiers with vision-language models, inside Jupyter.

The analysis engine lives in :mod:`semheat_widgets.engine`; the bundled toy world in
:mod:`semheat_widgets.zoo`; the Jupyter widgets in :mod:`semheat_widgets.widgets`
(``semheat_widgets.Explorer`` is imported lazily, so the CLI never loads Jupyter code).
"""

__version__ = "0.1.0"

from .engine.bundle import Bundle  # noqa: E402
from .errors import SemheatError  # noqa: E402

_WIDGETS = ("Explorer", "MonitorPanel", "HeatmapView", "ImageGrid", "ConceptPicker",
            "DetailView")


def toy_world(directory=None, **build_kwargs):
    """The bundled toy world's directory (built on first use; ``$SEMHEAT_TOY_DIR`` moves it)."""
    from .zoo.build import toy_world as _toy_world

    return _toy_world(directory, **build_kwargs)


def __getattr__(name):
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'semheat_widgets' has no attribute {name!r}")


__all__ = ["Bundle", "SemheatError", "__version__", "toy_world", *_WIDGETS]
