"""Where the widgets' front-end files are: inside the wheel (``semheat_widgets/js``) or, in a
source checkout, the repository's top-level ``js/`` folder."""

from functools import lru_cache
from pathlib import Path

_CANDIDATES = (Path(__file__).resolve().parents[1] / "js",  # installed wheel
               Path(__file__).resolve().parents[2] / "js")  # source checkout


@lru_cache(maxsize=None)
def js_dir() -> Path:
    for folder in _CANDIDATES:
        if (folder / "image_grid.js").is_file():
            return folder
    raise FileNotFoundError("the widgets' JavaScript files are missing from this installation")


def asset(name: str) -> str:
    return (js_dir() / name).read_text(encoding="utf-8")
