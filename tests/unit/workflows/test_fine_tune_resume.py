"""Fine-tuning resumes exactly and does not depend on ``num_workers`` (#28, finding 5)."""

import pytest
import torch
from torch.utils.data import TensorDataset

from helpers.tiny import colour_images, make_resnet
from semheat_widgets.workflows import fine_tune as ft


@pytest.fixture(scope="module")
def data():
    images, labels = colour_images(48)
    return TensorDataset(images, torch.from_numpy(labels))


def _train(data, work, epochs=3, **kw):
    model = make_resnet()
    out = ft.fine_tune(model, data, epochs=epochs, work=work, batch_size=16, lr=0.05,
                       progress=False, job="j", **kw)
    return model, out


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        torch.allclose(sa[k].double(), sb[k].double(), atol=1e-5, rtol=0) for k in sa)


@pytest.fixture(scope="module")
def uninterrupted(data, tmp_path_factory):
    return _train(data, tmp_path_factory.mktemp("whole"))[0]


def test_a_run_interrupted_after_an_epoch_resumes_to_the_same_model(
        data, uninterrupted, tmp_path, monkeypatch):
    real, calls = torch.nn.functional.cross_entropy, []
    batches = len(data) // 16

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2 * batches:
            raise KeyboardInterrupt  # Ctrl-C during epoch 3; epochs 1 and 2 are saved
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _train(data, tmp_path)
    monkeypatch.setattr(torch.nn.functional, "cross_entropy", real)
    resumed, out = _train(data, tmp_path)
    assert out["resumed_from_epoch"] == 2
    assert _same_weights(resumed, uninterrupted)  # momentum and the epoch's order came back


def test_a_kill_while_the_state_is_written_keeps_the_last_whole_state(
        data, tmp_path, monkeypatch):
    _train(data, tmp_path, epochs=1)
    before = (tmp_path / ft.TRAIN_STATE).read_bytes()
    import safetensors.torch

    def dies_half_way(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"\x10\x00")  # a few bytes of the temporary, then the process is gone
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        _train(data, tmp_path, epochs=2)
    assert (tmp_path / ft.TRAIN_STATE).read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [ft.CHECKPOINT, ft.TRAIN_STATE]
    monkeypatch.undo()
    assert _train(data, tmp_path, epochs=2)[1]["resumed_from_epoch"] == 1


def test_the_number_of_loader_workers_does_not_change_the_model(data, uninterrupted, tmp_path):
    with_workers, _ = _train(data, tmp_path, num_workers=2)
    assert _same_weights(with_workers, uninterrupted)


def test_the_checkpoint_for_users_is_the_trained_weights_alone(data, uninterrupted, tmp_path):
    from semheat_widgets.workflows.fine_tune import load_checkpoint_state

    model, _ = _train(data, tmp_path)
    saved = load_checkpoint_state(tmp_path / ft.CHECKPOINT)
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())
    assert _same_weights(model, uninterrupted)  # the same job twice: the same model
