"""What a saved bundle says, as figures: the command line's JSON and the widgets' numbers.

- :mod:`.monitors` — runtime-monitor AUROCs and calibrated detection figures per task, and why
  a monitor flagged one record (``semheat monitor``);
- :mod:`.localization` — fault-verdict counts, and their accuracy where the culprit is known
  (``semheat localize``);
- :mod:`.compare` — two bundles of the same inputs: what got fixed, what broke;
- :mod:`.rounding` — how figures are rounded (a leaf).
"""

from ..lazy import lazy_names

_LAZY = {
    "bundle_monitors": "monitors", "detector_scores": "monitors", "explain_record": "monitors",
    "monitor_report": "monitors", "localization_report": "localization",
    "shown_scores": "localization", "verdict_confidence": "localization",
    # (the function compare is not a name here: it would be shadowed by its module)
    "Comparison": "compare", "same_inputs": "compare",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = sorted(_LAZY)
