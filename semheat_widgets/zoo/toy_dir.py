"""Where the toy world lives, and its bundles asked for by name.

A bundle that is already built is found here without importing the builder (:mod:`.build`,
which loads torch, open_clip and the analysis pipeline): opening the explorer on a built
world — every time but the first, and always on Binder, whose image builds the world — costs
only what the explorer itself imports.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from ..jobs import ToyWorldJob, defaults, mentioning
from . import TOY_CLASSIFIERS
from .world_file import default_toy_dir, is_world, missing_bundles, read_world

SETTINGS = tuple(f.name for f in fields(ToyWorldJob))  # what a world records of its build


def toy_world(directory=None, bundles=TOY_CLASSIFIERS, **build_kwargs) -> Path:
    """The toy world's directory, with ``bundles`` (default: all) built there on first use.
    Settings (``n_natural=…``, see :class:`~semheat_widgets.jobs.ToyWorldJob`) apply to a new
    world; asking an existing one for other settings is an error."""
    bundles = (bundles,) if isinstance(bundles, str) else tuple(bundles)  # read once
    directory = Path(directory) if directory is not None else default_toy_dir()
    _check_settings(directory, build_kwargs)
    if set(bundles) <= set(TOY_CLASSIFIERS) and is_world(directory) and \
            not set(bundles) & set(missing_bundles(directory)):
        return directory
    from .build import ensure_bundles

    return ensure_bundles(directory, bundles, **build_kwargs)


def toy_bundle(name: str, directory=None, **build_kwargs) -> Path:
    """The path of one toy-world bundle (``clean``, ``encoder_fault``, ``head_fault``), built
    on first use without waiting for the others."""
    return toy_world(directory, (name,), **build_kwargs) / name


def _check_settings(directory: Path, build_kwargs: dict) -> None:
    """Settings asked for (``n_natural=…``) that differ from those of a world already in
    ``directory``, built or partly built, are an error rather than silently replaced."""
    asked = {k: v for k, v in build_kwargs.items()
             if k in SETTINGS and (v is not None or k == "attack_limit")}
    if not asked or not is_world(directory):
        return
    world, default = read_world(directory), defaults(ToyWorldJob)
    for key, value in asked.items():
        have = world.get(key, default.get(key))
        if have != value:
            raise mentioning(f"{directory} holds a toy world built with {key}={have!r}, not "
                             f"{value!r}; ask for its bundles without {key}, or give another "
                             f"directory", key)
