"""Bad checkpoints and damaged caches (issue 28, findings 4 and 7): one line, never the advice
to unpickle; a damaged tie-classifier cache is moved aside and rebuilt with a warning."""

import collections
import os

import pytest
import torch

from semheat_widgets.errors import SemheatError
from semheat_widgets.workflows.fine_tune import build_resnet18, load_checkpoint_state


class NotTensors:  # a pickled object that weights_only=True refuses
    pass


@pytest.mark.parametrize("name, content", [("garbage.safetensors", b"garbage"),
                                           ("empty.safetensors", b""), ("empty.pt", b"")])
def test_unreadable_checkpoints_are_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(SemheatError) as info:
        build_resnet18(3, path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_a_pickled_object_never_gets_the_unsafe_advice(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"state_dict": NotTensors()}, path)
    with pytest.raises(SemheatError) as info:
        load_checkpoint_state(path)
    message = str(info.value)
    assert "weights_only=False" not in message and "\n" not in message
    assert "state dict of plain tensors" in message


def test_a_damaged_tie_cache_is_moved_aside_and_rebuilt(tmp_path, monkeypatch):
    from semheat_widgets.zoo import family
    from semheat_widgets.zoo.toy_resnet import ToyResNet, classifier_config
    from semheat_widgets.zoo.training import train_classifier as tc

    trained = []

    def fake_train(world, progress=True, **settings):
        trained.append(1)
        torch.manual_seed(0)
        return ToyResNet(widths=tuple(classifier_config()["widths"])), {"n_train": 1}

    monkeypatch.setattr(tc, "train_classifier", fake_train)
    Tie = collections.namedtuple("Tie", "name world")
    tie = Tie("t", lambda seed: None)
    s = family.FAMILY_TRAIN
    path = tmp_path / f"t-{s['n_train']}x{s['epochs']}.safetensors"
    path.write_bytes(b"")  # an empty (truncated) cache file
    with pytest.warns(UserWarning, match="damaged"):
        family.tie_classifier(tie, cache=tmp_path, progress=False)
    assert trained == [1]
    assert path.is_file() and path.stat().st_size > 0
    assert any(n.startswith(path.name + ".damaged-") for n in os.listdir(tmp_path))
    family.tie_classifier(tie, cache=tmp_path, progress=False)  # now read from the cache
    assert trained == [1]
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n]
