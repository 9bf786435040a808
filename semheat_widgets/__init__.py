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


def __getattr__(name):
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'semheat_widgets' has no attribute {name!r}")


__all__ = ["Bundle", "SemheatError", "__version__", *_WIDGETS]
