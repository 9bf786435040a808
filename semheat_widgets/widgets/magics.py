"""The IPython extension: ``%load_ext semheat_widgets``, then ``%semheat PATH`` shows the
explorer on the bundle at PATH, and ``%semheat`` alone on the bundled toy world (built on first
use, with progress bars). ``%semheat --kind KIND PATH`` opens another heatmap kind.

The magic only displays what it opens: it runs nothing else and writes no variable."""

from __future__ import annotations

import argparse
import shlex

from ..errors import SemheatError

USAGE = "%semheat [--kind KIND] [--toy WHICH] [PATH]"


def _parse(line: str) -> argparse.Namespace:
    from IPython.core.error import UsageError

    parser = argparse.ArgumentParser(prog="%semheat", add_help=False, exit_on_error=False)
    parser.add_argument("path", nargs="?")
    parser.add_argument("--kind", default="differential")
    parser.add_argument("--toy", default="encoder_fault")
    try:
        words = shlex.split(line)
        args, extra = parser.parse_known_args(words)
    except (ValueError, argparse.ArgumentError) as exc:
        raise UsageError(f"{exc}; usage: {USAGE}") from None
    if extra:
        raise UsageError(f"unexpected {' '.join(extra)!r}; usage: {USAGE}")
    return args


def explorer_for(line: str):
    """The :class:`~semheat_widgets.widgets.Explorer` a ``%semheat`` line asks for."""
    from IPython.core.error import UsageError

    from .explorer import Explorer
    from .heatmap import KINDS

    args = _parse(line)
    if args.kind not in KINDS:
        raise UsageError(f"unknown heatmap kind {args.kind!r}; one of {', '.join(KINDS)}")
    try:
        if args.path:
            return Explorer(args.path, kind=args.kind)
        from ..zoo.toy_dir import toy_bundle

        return Explorer(toy_bundle(args.toy), kind=args.kind)
    except SemheatError as exc:  # a one-line message, not a traceback
        raise UsageError(str(exc).splitlines()[0]) from None


def semheat(line: str = "") -> None:
    """``%semheat [PATH]``: show the explorer on a bundle (default: the toy world's
    ``encoder_fault`` bundle)."""
    from IPython.display import display

    display(explorer_for(line))


def load_ipython_extension(ipython) -> None:
    ipython.register_magic_function(semheat, magic_kind="line", magic_name="semheat")
