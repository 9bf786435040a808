"""Where the toy world lives, and its bundles asked for by name.

A bundle that is already built is found here without importing the builder (:mod:`.build`,
which loads torch, open_clip and the analysis pipeline): opening the explorer on a built
world — every time but the first, and always on Binder, whose image builds the world — costs
only what the explorer itself imports.
"""

from __future__ import annotations

from pathlib import Path

from . import TOY_CLASSIFIERS
from .world_file import default_toy_dir, is_world, missing_bundles


def toy_world(directory=None, bundles=TOY_CLASSIFIERS, **build_kwargs) -> Path:
    """The toy world's directory, with ``bundles`` (default: all) built there on first use."""
    bundles = (bundles,) if isinstance(bundles, str) else tuple(bundles)  # read once
    directory = Path(directory) if directory is not None else default_toy_dir()
    if set(bundles) <= set(TOY_CLASSIFIERS) and is_world(directory) and \
            not set(bundles) & set(missing_bundles(directory)):
        return directory
    from .build import ensure_bundles

    return ensure_bundles(directory, bundles, **build_kwargs)


def toy_bundle(name: str, directory=None, **build_kwargs) -> Path:
    """The path of one toy-world bundle (``clean``, ``encoder_fault``, ``head_fault``), built
    on first use without waiting for the others."""
    return toy_world(directory, (name,), **build_kwargs) / name
