"""Concept picker: filter, show/hide, reorder, and add free-text concepts."""

from __future__ import annotations

from typing import Callable

import anywidget
import traitlets

from ..errors import SemheatError
from ._assets import asset


class ConceptPicker(anywidget.AnyWidget):
    """``concepts`` is the ordered list, ``hidden`` the unticked ones; :attr:`visible` is what
    the heatmap shows. A free-text concept typed in the browser arrives as a ``request`` and
    calls ``on_add(name)``, which should add it to the bundle (it may return a note to show);
    errors show as a one-line message, nothing else changes."""

    _esm = asset("concept_picker.js")
    _css = asset("widgets.css")

    concepts = traitlets.List(traitlets.Unicode()).tag(sync=True)
    hidden = traitlets.List(traitlets.Unicode()).tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    busy = traitlets.Bool(False).tag(sync=True)
    request = traitlets.Dict().tag(sync=True)  # {"name": ..., "nonce": ...} set by the browser

    def __init__(self, concepts=(), on_add: Callable[[str], None] | None = None, **kwargs):
        super().__init__(concepts=list(concepts), **kwargs)
        self.on_add = on_add
        self.observe(self._on_request, names=["request"])

    @property
    def visible(self) -> list[str]:
        hidden = set(self.hidden)
        return [c for c in self.concepts if c not in hidden]

    def _on_request(self, change) -> None:
        name = change["new"].get("name") if isinstance(change["new"], dict) else None
        if isinstance(name, str):
            self.add(name)

    def add(self, name: str) -> bool:
        """Add a concept through ``on_add``; returns whether it worked."""
        name = name.strip()
        if not name:
            self.message = "type a concept name first"
            return False
        if name in self.concepts:
            self.message = f"{name!r} is already a concept"
            return False
        self.busy = True
        try:
            if self.on_add is not None:
                note = self.on_add(name)
            else:
                note = None
            self.concepts = [*self.concepts, name]
            self.message = note or f"added {name!r}"
            return True
        except SemheatError as exc:
            self.message = str(exc).splitlines()[0]
            return False
        except Exception as exc:  # a callback from the browser must not die silently
            self.message = f"could not add {name!r}: {type(exc).__name__}: {exc}"[:300]
            return False
        finally:
            self.busy = False
