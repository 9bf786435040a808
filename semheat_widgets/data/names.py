"""Class and attribute names of RIVAL10, in the dataset's own index order.

RIVAL10 (Moayeri et al., "A Comprehensive Study of Image Classification Model Sensitivity to
Foregrounds, Backgrounds, and Visual Attributes", CVPR 2022) has 10 classes and 18 visual
attributes. The toy world reuses the same names so that everything built for it carries over.
"""

RIVAL10_CLASSES = (
    "truck", "car", "plane", "ship", "cat", "dog", "equine", "deer", "frog", "bird",
)

RIVAL10_ATTRIBUTES = (
    "long-snout", "wings", "wheels", "text", "horns", "floppy-ears", "ears", "colored-eyes",
    "tail", "mane", "beak", "hairy", "metallic", "rectangular", "wet", "long", "tall",
    "patterned",
)
