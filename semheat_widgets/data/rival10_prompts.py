"""Text prompts for the 18 RIVAL10 attributes and the 10 classes, in this project's wording.

Each attribute has a few short phrasings so that its concept embedding (the mean over prompts)
does not hinge on one sentence. Plain data: the engine's concept bank is built from it by
:func:`semheat_widgets.workflows.analyze.rival10_concepts`.
"""

from __future__ import annotations


RIVAL10_PROMPTS: dict[str, list[str]] = {
    "long-snout": ["an animal with a long snout", "a long muzzle", "a pointed, elongated nose",
                   "a photo of a long-snouted animal"],
    "wings": ["something with wings", "spread wings", "a pair of wings",
              "a photo of a winged thing"],
    "wheels": ["a vehicle on wheels", "round wheels with tyres", "a photo of wheels",
               "wheels touching the road"],
    "text": ["printed text or lettering", "words written on a surface", "a sign with letters",
             "a photo with visible writing"],
    "horns": ["an animal with horns", "antlers on a head", "a pair of horns",
              "a photo of horns"],
    "floppy-ears": ["floppy ears hanging down", "an animal with droopy ears", "soft drooping ears",
                    "a photo of floppy ears"],
    "ears": ["an animal's ears", "pointed ears on a head", "a photo of ears",
             "ears standing up"],
    "colored-eyes": ["brightly coloured eyes", "vivid eyes looking out",
                     "a close-up of colourful eyes", "a photo of striking eyes"],
    "tail": ["an animal with a tail", "a long tail", "a tail behind an animal",
             "a photo of a tail"],
    "mane": ["a flowing mane of hair", "an animal with a mane", "long hair along the neck",
             "a photo of a mane"],
    "beak": ["a bird's beak", "a pointed bill", "a photo of a beak", "a hooked beak"],
    "hairy": ["a hairy animal", "thick fur", "a furry coat", "a photo of something hairy"],
    "metallic": ["a shiny metal surface", "something made of metal", "polished steel",
                 "a photo of a metallic object"],
    "rectangular": ["a rectangular shape", "a boxy object with straight edges",
                    "something shaped like a box", "a photo of a rectangular object"],
    "wet": ["a photo of something wet", "an object in the water", "water splashing",
            "a wet surface", "something on a lake or the sea"],
    "long": ["a long, elongated object", "something stretched out lengthwise",
             "a photo of a long thing", "an object much longer than it is tall"],
    "tall": ["a tall object", "something towering upwards", "a photo of a tall thing",
             "an object much taller than it is wide"],
    "patterned": ["a patterned surface", "stripes or spots", "a repeating pattern",
                  "a photo of a patterned coat or surface"],
}
"""Attribute name -> 3-5 prompts, in the order of :data:`RIVAL10_ATTRIBUTES`."""

RIVAL10_CLASS_PROMPTS: dict[str, list[str]] = {
    "truck": ["a photo of a truck", "a lorry on the road", "a big delivery truck"],
    "car": ["a photo of a car", "a passenger car", "an automobile parked on a street"],
    "plane": ["a photo of an aeroplane", "an airliner in the sky", "a jet aircraft"],
    "ship": ["a photo of a ship", "a boat on the water", "a large vessel at sea"],
    "cat": ["a photo of a cat", "a domestic cat", "a kitten"],
    "dog": ["a photo of a dog", "a pet dog", "a puppy"],
    "equine": ["a photo of a horse", "a zebra", "a horse or a zebra in a field"],
    "deer": ["a photo of a deer", "a stag with antlers", "a deer in the woods"],
    "frog": ["a photo of a frog", "a green frog", "a frog sitting on a leaf"],
    "bird": ["a photo of a bird", "a small songbird", "a bird perched on a branch"],
}
"""Class name -> a few prompts, in the order of :data:`RIVAL10_CLASSES`."""

