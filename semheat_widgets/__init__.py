"""semheat_widgets: debug vision classifiers with vision-language models, inside Jupyter.

The analysis engine lives in :mod:`semheat_widgets.engine`; the bundled toy world in
:mod:`semheat_widgets.zoo`; the Jupyter widgets in :mod:`semheat_widgets.widgets`.
"""

__version__ = "0.1.0"

from .engine.bundle import Bundle  # noqa: E402
from .errors import SemheatError  # noqa: E402

__all__ = ["Bundle", "SemheatError", "__version__"]
