"""Opening open_clip weights offline fails in seconds with where to put them; a local
checkpoint ``open_clip:ARCH:PATH`` loads (before: ~47 s of retries, then an error that
suggested nothing)."""

from __future__ import annotations

import json
import time

import pytest
import torch

from semheat_widgets.engine.models import vlm as vlm_module
from semheat_widgets.engine.models.registry import load_vlm
from semheat_widgets.errors import SemheatError

from helpers.tiny import TINY_CLIP_CFG


def test_hf_hub_offline_fails_fast_and_says_where(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.monotonic()
    with pytest.raises(SemheatError) as info:
        load_vlm("open_clip:RN50:openai")
    message = str(info.value)
    assert "\n" not in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "open_clip:RN50:/path/to/weights.safetensors" in message
    assert "open_clip:RN50:none" in message
    assert time.monotonic() - start < 30  # no retries, and the model is not even built


def test_unreachable_hub_fails_without_retries(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://127.0.0.1:9")  # nothing listens there
    assert "unreachable" in vlm_module.hub_offline()
    with pytest.raises(SemheatError, match="cannot be reached .*127.0.0.1 is unreachable"):
        load_vlm("open_clip:RN50:openai")


def test_unknown_tag_and_missing_checkpoint_are_one_line():
    with pytest.raises(SemheatError, match="no pretrained tag 'bogus' .*known: .*openai"):
        load_vlm("open_clip:RN50:bogus")
    with pytest.raises(SemheatError, match="checkpoint not found: /nonexistent/w.safetensors"):
        load_vlm("open_clip:RN50:/nonexistent/w.safetensors")


def test_local_checkpoint_loads(tmp_path, monkeypatch):
    import open_clip
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "semheat-test-tiny.json").write_text(json.dumps(TINY_CLIP_CFG))
    open_clip.add_model_config(configs)
    torch.manual_seed(1)
    model = open_clip.create_model("semheat-test-tiny", pretrained=None)
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    loaded = load_vlm(f"open_clip:semheat-test-tiny:{weights}", "cpu")
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
