"""Vocabularies for concept discovery (see :mod:`semheat_widgets.engine.concepts.discover`).

- :func:`toy_vocabulary`: the words and phrases the toy world's tiny CLIP was trained on.
- :func:`english_vocabulary`: for real CLIPs, 10,000 common English words and a few hundred
  short phrases (scenes, textures, colours), plus the RIVAL10 attribute prompts. The words are
  the most frequent English words of the ``wordfreq`` package (Robyn Speer, code Apache-2.0,
  word-frequency data CC BY-SA 4.0, built from Wikipedia, OpenSubtitles, SUBTLEX, Google Books
  Ngrams and other sources), filtered to lowercase alphabetic words of three letters or more
  that are not function words; :mod:`.make_english` regenerates ``english_words.txt.gz``
  (kept compressed, about 40 KB, redistributed under CC BY-SA 4.0 with that attribution).
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path

from ...engine.concepts.discover import Vocabulary

ENGLISH_FILE = Path(__file__).with_name("english_words.txt.gz")
ENGLISH_SOURCE = ("wordfreq 3.1 top English words (data CC BY-SA 4.0) + short phrases + "
                  "RIVAL10 attribute prompts")
TEMPLATES = ("a photo of {}.", "{}")  # a phrase's prompts

SCENES = ("on water", "in the water", "underwater", "in the snow", "on grass", "in the sky",
          "at night", "at dusk", "at sunset", "indoors", "outdoors", "on a road", "on a street",
          "in a forest", "in a field", "on sand", "on a beach", "in the desert", "in a city",
          "on a farm", "in a house", "in a cage", "on a table", "in the rain", "in fog",
          "in the mountains", "by a lake", "on a river", "at sea", "in a garden", "in a zoo",
          "on ice", "in mud", "in a parking lot", "on a runway", "in a harbor",
          "with a person", "with people", "in someone's hand", "close up", "far away",
          "blurry", "dark", "bright", "overexposed", "low resolution", "a cartoon",
          "a drawing", "a painting", "a toy", "a sculpture", "a reflection", "a shadow")
TEXTURES = ("striped", "spotted", "furry", "hairy", "feathered", "scaly", "smooth", "rough",
            "shiny", "metallic", "wooden", "plastic", "glass", "rusty", "wet", "muddy",
            "fluffy", "wrinkled", "patterned", "checkered", "dotted", "glossy", "matte")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black",
           "white", "gray", "silver", "gold", "beige", "dark", "light")
PARTS = ("wheels", "wings", "a tail", "horns", "antlers", "a beak", "fur", "a mane", "ears",
         "eyes", "legs", "a snout", "text", "letters", "a logo", "a window", "a door", "a sail",
         "a propeller", "an engine")


def short_phrases() -> list[str]:
    out = list(SCENES) + list(TEXTURES) + list(PARTS)
    out += [f"{c} background" for c in COLOURS] + [f"a {c} object" for c in COLOURS]
    out += [f"{t} {p}" for t in ("striped", "spotted", "shiny", "furry") for p in
            ("fur", "metal", "skin", "surface")]
    return out


@lru_cache(maxsize=1)
def english_words() -> tuple[str, ...]:
    with gzip.open(ENGLISH_FILE, "rt", encoding="utf-8") as f:
        return tuple(w for w in f.read().split("\n") if w)


def english_vocabulary() -> Vocabulary:
    """>= 10,000 words and short phrases, plus the RIVAL10 attributes with their prompts."""
    from ..rival10_prompts import RIVAL10_PROMPTS

    base = Vocabulary.from_phrases(list(english_words()) + short_phrases(), TEMPLATES,
                                   ENGLISH_SOURCE)
    rival = {a: tuple(p) for a, p in RIVAL10_PROMPTS.items() if a not in base.names}
    return Vocabulary(base.names + tuple(rival), base.prompts + tuple(rival.values()),
                      ENGLISH_SOURCE)


TOY_STOPWORDS = {"a", "an", "of", "with", "the", "and", "or", "photo", "picture", "something",
                 "on", "in", "big"}


def toy_vocabulary() -> Vocabulary:
    """Every word and attribute phrasing the toy CLIP was trained on (class names aside),
    each prompted with the toy's attribute templates."""
    from ..toy.captions import ATTRIBUTE_PHRASES, ATTRIBUTE_TEMPLATES, vocabulary_texts
    from ..toy.world import CLASSES

    phrases = [p for forms in ATTRIBUTE_PHRASES.values() for p in forms]
    words = sorted({w.strip(".,").lower() for t in vocabulary_texts() for w in t.split()})
    phrases += [w for w in words if w and w not in TOY_STOPWORDS and w not in CLASSES]
    return Vocabulary.from_phrases(phrases, ATTRIBUTE_TEMPLATES,
                                   "the toy CLIP's training words (data/toy/captions.py)")
