"""The toy world's generator: determinism, visible attribute parts, overrides, captions."""

import numpy as np
import pytest

from semheat_widgets.data.toy.captions import ATTRIBUTE_PHRASES, describe
from semheat_widgets.data.toy.dataset import ToyDataset, render_images
from semheat_widgets.data.toy.world import ATTRIBUTES, CLASSES, ToyWorld


def test_scenes_and_images_are_deterministic_per_seed():
    a, b = ToyWorld(seed=3), ToyWorld(seed=3)
    for i in (0, 7, 123):
        assert a.scene(i) == b.scene(i)
        assert np.array_equal(a.image(i), b.image(i))
    assert not np.array_equal(a.image(5), ToyWorld(seed=4).image(5))
    img = a.image(0)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    bulk = render_images(a, 10, 20, workers=2)
    assert np.array_equal(bulk, np.stack([a.image(i) for i in range(10, 30)]))
    # an image alone is drawn without the owner map, and is the image drawn with the masks
    for i in range(40):
        image, masks = a.render(a.scene(i))
        assert np.array_equal(image, a.image(i)) and set(masks) == set(a.scene(i).present)


def test_classes_are_balanced_and_labels_come_from_scenes():
    data = ToyDataset(ToyWorld(seed=0), 0, 200)
    assert np.bincount(data.labels, minlength=10).tolist() == [20] * 10
    image, label = data[13]
    assert image.shape == (3, 64, 64) and label == data.labels[13]
    assert data.attributes.shape == (200, 18)


def _scene_with(world, attr, start=0):
    for i in range(start, start + 2000):
        s = world.scene(i)
        if attr in s.present:
            return s
    raise AssertionError(f"no scene with {attr}")


@pytest.mark.parametrize("attr", ATTRIBUTES)
def test_each_attribute_changes_the_pixels_where_it_is_drawn(attr):
    world = ToyWorld(seed=1, attribute_probs={c: {attr: 0.5} for c in CLASSES})
    changed_somewhere = 0
    for start in (0, 300, 600, 900):
        on = _scene_with(world, attr, start)
        off = on.with_attribute(attr, False)
        img_on, masks = world.render(on)
        img_off, _ = world.render(off)
        diff = (img_on != img_off).any(axis=2)
        mask = masks[attr]
        assert not (diff & ~mask).any(), "pixels changed outside the attribute's mask"
        assert (diff == mask).mean() > 0.999  # and the mask is where it changed
        changed_somewhere += diff.sum() > 0
    assert changed_somewhere >= 3  # visible (an occluder may rarely hide a small part)


def test_overrides_change_the_distribution_without_code():
    world = ToyWorld(seed=0).with_overrides(attribute_probs={"truck": {"wet": 1.0}},
                                            backgrounds={"truck": ["road"]},
                                            classes=["truck", "car"])
    scenes = world.scenes(0, 50)
    assert {s.class_name for s in scenes} == {"truck", "car"}
    trucks = [s for s in scenes if s.class_name == "truck"]
    assert all("wet" in s.present and s.background == "road" for s in trucks)
    cars = [s for s in scenes if s.class_name == "car"]
    assert not all("wet" in s.present for s in cars)
    table = world.probability_table()
    assert table[CLASSES.index("truck"), ATTRIBUTES.index("wet")] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"attribute_probs": {"truck": {"wings": 1.5}}}, "not in"),
    ({"attribute_probs": {"zebra": {"wings": 0.5}}}, "unknown class"),
    ({"attribute_probs": {"truck": {"antennae": 0.5}}}, "unknown attribute"),
    ({"backgrounds": {"truck": ["moon"]}}, "unknown or empty"),
    ({"classes": []}, "unknown or empty classes"),
])
def test_bad_overrides_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ToyWorld(**kwargs)


def test_captions_name_only_present_attributes():
    world = ToyWorld(seed=2)
    rng = np.random.default_rng(0)
    attribute_only = named_total = 0
    for i in range(300):
        s = world.scene(i)
        text, named = describe(s, rng)
        assert set(named) <= set(s.present) and len(named) <= 3
        for attr in named:
            assert any(p in text for p in ATTRIBUTE_PHRASES[attr])
        named_total += len(named)
        if s.class_name not in text:
            attribute_only += 1
            assert named
    assert 0.05 < attribute_only / 300 < 0.5  # some captions name attributes only
    assert named_total > 300  # and most name some attributes
