"""Concept picker: filter, show/hide, reorder, and add free-text concepts to a bundle.

Output: ``visible`` — the concepts to show, in order. A concept typed in the browser is added
to the bundle at once (embedded by the bundle's own VLM, one pass over the cached aligned
features); errors show as a one-line message and change nothing.
"""

from __future__ import annotations

import anywidget
import traitlets

from ..engine.models.registry import load_vlm
from ..arguments import clean_name
from ..errors import SemheatError
from .base import JS, as_bundle


class ConceptPicker(anywidget.AnyWidget):
    """``ConceptPicker(bundle, vlm=None)``; the VLM is opened from the bundle's models when a
    concept is first added, unless given."""

    _esm = JS / "concept_picker.js"
    _css = JS / "widgets.css"

    concepts = traitlets.List(traitlets.Unicode()).tag(sync=True)  # all, in display order
    hidden = traitlets.List(traitlets.Unicode()).tag(sync=True)
    visible = traitlets.List(traitlets.Unicode())  # output
    message = traitlets.Unicode("").tag(sync=True)
    _busy = traitlets.Bool(False).tag(sync=True)  # adding a concept: the button waits
    # A typed concept arrives as a synced request with a nonce (so the same name twice is still
    # a change), not as a custom message: anywidget's model.send never reached the kernel in
    # JupyterLab in this project's browser tests, while a synced trait always did.
    _request = traitlets.Dict().tag(sync=True)

    def __init__(self, bundle, vlm=None, **kwargs):
        self.bundle = as_bundle(bundle)
        self._vlm = vlm
        super().__init__(concepts=list(self.bundle.concept_names), **kwargs)
        self.observe(self._update_visible, names=["concepts", "hidden"])
        self.observe(self._on_request, names=["_request"])
        self._update_visible()

    @property
    def vlm(self):
        if self._vlm is None:
            self._vlm = load_vlm(self.bundle.models.vlm)
        return self._vlm

    def _update_visible(self, _change=None) -> None:
        hidden = set(self.hidden)
        self.visible = [c for c in self.concepts if c not in hidden]

    def _on_request(self, change) -> None:
        name = change["new"].get("name") if isinstance(change["new"], dict) else None
        if isinstance(name, str):
            self.add(name)

    def add(self, name: str) -> bool:
        """Add a free-text concept to the bundle and the list; returns whether it worked."""
        if not isinstance(name, str):
            self.message = f"a concept name must be text, got {type(name).__name__}"
            return False
        try:
            name = clean_name(name, "concept name")
        except SemheatError:
            self.message = "type a concept name first"
            return False
        if name in self.concepts:
            self.message = f"{name!r} is already a concept"
            return False
        self._busy = True
        try:
            vlm = self.vlm
            unknown = vlm.unknown_words(name)
            self.bundle.add_concept(name, vlm=vlm)
            self.concepts = [*self.concepts, name]
            self.message = (f"added {name!r}; note: the VLM never learnt {', '.join(unknown)} "
                            f"(the toy CLIP knows a small vocabulary)" if unknown
                            else f"added {name!r}")
            return True
        except SemheatError as exc:
            self.message = str(exc).splitlines()[0]
            return False
        except Exception as exc:  # a callback from the browser must not die silently
            self.message = f"could not add {name!r}: {type(exc).__name__}: {exc}"[:300]
            return False
        finally:
            self._busy = False
