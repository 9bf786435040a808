"""VLM wrapper, concept bank, model split and extraction, on real (tiny, random) models."""

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, TensorDataset

from helpers.tiny import colour_images, make_resnet
from semheat_widgets.data.images import ImageFilesDataset
from semheat_widgets.engine.image_files import load_image
from semheat_widgets.engine.concepts.bank import ConceptBank
from semheat_widgets.engine.extract import extract
from semheat_widgets.engine.models.classifier import ModelSplit
from semheat_widgets.engine.models.vlm import VLM
from semheat_widgets.errors import SemheatError


def test_vlm_encoders_give_unit_vectors_and_batch_consistently(tiny_vlm):
    images, _ = colour_images(10)
    a = tiny_vlm.encode_images(images, batch_size=3)
    b = tiny_vlm.encode_images(images, batch_size=10)
    assert a.shape == (10, 32) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=1), torch.ones(10), atol=1e-5)
    assert torch.allclose(a, b, atol=1e-5)
    # uint8 and 0..1 inputs are the same images
    assert torch.allclose(a, tiny_vlm.encode_images(images.float() / 255), atol=1e-5)
    t = tiny_vlm.encode_texts(["wheels", "a photo of a dog", "wings"])
    assert t.shape == (3, 32) and torch.allclose(t.norm(dim=1), torch.ones(3), atol=1e-5)


def test_vlm_resizes_any_image_size(tiny_vlm):
    big = torch.randint(0, 255, (2, 3, 48, 64), dtype=torch.uint8)
    assert tiny_vlm.preprocess(big).shape == (2, 3, 32, 32)


def test_vlm_rejects_empty_prompts_and_bad_images(tiny_vlm):
    with pytest.raises(SemheatError, match="non-empty"):
        tiny_vlm.encode_texts(["ok", "  "])
    with pytest.raises(SemheatError, match="N x 3 x H x W"):
        tiny_vlm.encode_images(torch.zeros(3, 32, 32))


def test_vlm_create_random_init_offline_and_unknown_arch():
    vlm = VLM.create("RN50", "none")
    assert vlm.embed_dim == 1024 and vlm.image_size == 224
    assert vlm.name == "open_clip:RN50:none"
    with pytest.raises(SemheatError, match="unknown open_clip architecture"):
        VLM.create("NoSuchNet")


def test_vlm_local_folder_round_trip(tmp_path, tiny_vlm):
    import json

    from helpers.tiny import TINY_CLIP_CFG
    from safetensors.torch import save_file

    from semheat_widgets.engine.models.vlm import compact_state_dict

    texts = ["a photo of a dog", "wheels"]
    kept = torch.unique(tiny_vlm.tokenizer(texts))
    with torch.no_grad():
        w = tiny_vlm.model.token_embedding.weight
        saved = w.clone()
        pruned = torch.ones(w.shape[0], dtype=torch.bool)
        pruned[kept] = False
        w[pruned] = 0  # a pruned vocabulary, as in the toy CLIP
    try:
        save_file(compact_state_dict(tiny_vlm.model, torch.float32),
                  str(tmp_path / "m.safetensors"))
        (tmp_path / "open_clip_config.json").write_text(json.dumps(
            {"model_cfg": TINY_CLIP_CFG, "preprocess_cfg": {"size": 32}, "name": "t"}))
        again = VLM.from_local(tmp_path)
        assert torch.allclose(again.encode_texts(texts), tiny_vlm.encode_texts(texts), atol=1e-5)
        images, _ = colour_images(4)
        assert torch.allclose(again.encode_images(images), tiny_vlm.encode_images(images),
                              atol=1e-5)
        assert again.unknown_words("a photo") == []
        assert again.unknown_words("a zebra photo") == ["zebra"]  # a never-learnt token
    finally:
        with torch.no_grad():
            tiny_vlm.model.token_embedding.weight.copy_(saved)
    with pytest.raises(SemheatError, match="no open_clip_config.json"):
        VLM.from_local(tmp_path / "missing")


def test_concept_bank_embeds_mean_of_prompts(tiny_vlm):
    bank = ConceptBank([("wheels", ["wheels", "round wheels"]), "wings"])
    emb = bank.embed(tiny_vlm)
    t = tiny_vlm.encode_texts(["wheels", "round wheels"]).numpy()
    expect = t.mean(0) / np.linalg.norm(t.mean(0))
    assert np.allclose(emb[0], expect, atol=1e-5)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    bank.add("stripes", "striped")  # open vocabulary: add any time
    assert bank.names == ["wheels", "wings", "stripes"] and bank.embed(tiny_vlm).shape == (3, 32)
    templated = ConceptBank(["fur"], templates=("a photo of {}", "{}"))
    assert templated.expanded_prompts(templated["fur"]) == ["a photo of fur", "fur"]


@pytest.mark.parametrize("name, prompts, message", [
    ("", None, "concept name"), ("ok", [""], "prompt"), ("ok", [], "at least one"),
    ("wheels", None, "already exists")])
def test_concept_bank_rejects_bad_concepts(name, prompts, message):
    bank = ConceptBank(["wheels"])
    with pytest.raises(SemheatError, match=message):
        bank.add(name, prompts)
    assert bank.names == ["wheels"]  # nothing lost


def test_split_of_a_torchvision_resnet_taps_fc():
    model = make_resnet()
    split = ModelSplit(model, input_size=32)
    images, _ = colour_images(6)
    z, logits = split.features_and_logits(images)
    x = split.preprocess(images)
    m = model
    ref = m.avgpool(m.layer4(m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(x)))))))))
    assert split.head_name == "fc"
    assert torch.allclose(z, ref.flatten(1), atol=1e-5)
    assert torch.allclose(logits, model(x), atol=1e-5)
    assert torch.allclose(split.head(z), logits, atol=1e-5)


def test_split_with_sequential_classifier_and_explicit_callables():
    from torchvision.models import mobilenet_v3_small

    mnet = mobilenet_v3_small(num_classes=3).eval()
    split = ModelSplit(mnet, input_size=32)
    assert split.head_name == "classifier.3" and split.num_classes == 3
    images, _ = colour_images(2)
    z, logits = split.features_and_logits(images)
    assert z.shape == (2, 1024) and logits.shape == (2, 3)

    enc = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))
    head = torch.nn.Linear(4, 2)
    explicit = ModelSplit(encoder=enc, head=head)
    z, logits = explicit.features_and_logits(images)
    assert z.shape == (2, 4) and torch.allclose(logits, head(z))


def test_split_without_a_linear_head_is_a_clear_error():
    # a model with no nn.Linear at all: found out by tracing, one line with the fix
    split = ModelSplit(torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1)))
    with pytest.raises(SemheatError, match="no nn.Linear layer of Sequential gives its output"):
        split.features_and_logits(torch.rand(2, 3, 4, 4))

    class Scaled(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)

        def forward(self, x):
            return self.fc(x.mean((2, 3))) * 2  # something after the head (a temperature)

    model = Scaled()
    x = torch.rand(2, 3, 4, 4)
    with pytest.warns(UserWarning, match="changes the output of fc"):
        z, logits = ModelSplit(model, mean=(0, 0, 0), std=(1, 1, 1)).features_and_logits(x)
    assert torch.allclose(logits, model(x))  # the model's own output stays the logits
    assert torch.allclose(z, x.mean((2, 3)))


def test_extraction_matches_direct_passes_in_order(tiny_split, tiny_vlm, colour_dataset,
                                                   tmp_path):
    ex = extract(tiny_split, tiny_vlm, colour_dataset, batch_size=10, progress=False,
                 thumb_size=16)
    images, labels = colour_dataset.tensors
    z, logits = tiny_split.features_and_logits(images)
    assert np.allclose(ex.features, z.detach().numpy(), atol=1e-5)
    assert np.allclose(ex.logits, logits.detach().numpy(), atol=1e-5)
    assert np.allclose(ex.image_emb, tiny_vlm.encode_images(images).numpy(), atol=1e-5)
    assert np.array_equal(ex.labels, labels.numpy())
    assert ex.thumbs.shape == (96, 16, 16, 3) and ex.thumbs.dtype == np.uint8
    mm = extract(tiny_split, tiny_vlm, colour_dataset, batch_size=32, progress=False,
                 out_dir=tmp_path, thumb_size=16)
    assert isinstance(mm.features, np.memmap)
    assert np.allclose(np.load(tmp_path / "features.npy"), ex.features, atol=1e-5)


def test_extraction_with_workers_keeps_order(tiny_split, tiny_vlm, colour_dataset):
    a = extract(tiny_split, tiny_vlm, colour_dataset, batch_size=8, num_workers=2,
                progress=False)
    assert np.array_equal(a.labels, colour_dataset.tensors[1].numpy())


def test_empty_dataset_is_a_clear_error(tiny_split, tiny_vlm):
    empty = TensorDataset(torch.zeros(0, 3, 32, 32, dtype=torch.uint8), torch.zeros(0).long())
    with pytest.raises(SemheatError, match="empty"):
        extract(tiny_split, tiny_vlm, empty, progress=False)


def test_nan_features_are_reported(tiny_vlm, colour_dataset):
    enc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 4))
    with torch.no_grad():
        enc[1].weight[0, 0] = float("nan")
    split = ModelSplit(encoder=enc, head=torch.nn.Linear(4, 4))
    with pytest.raises(SemheatError, match="NaN or inf features for inputs 0..15"):
        extract(split, tiny_vlm, colour_dataset, batch_size=16, progress=False)


def test_corrupted_image_file_is_reported_with_its_path(tmp_path, tiny_split, tiny_vlm):
    from PIL import Image

    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(good)
    gray = tmp_path / "gray.png"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(gray)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert load_image(gray, 32).shape == (3, 32, 32)  # grayscale becomes RGB
    with pytest.raises(SemheatError, match="broken.jpg"):
        load_image(bad)
    data = ImageFilesDataset([good, gray, bad], [0, 1, 2], size=32)
    for workers in (0, 2):
        with pytest.raises(SemheatError) as err:
            extract(tiny_split, tiny_vlm, data, batch_size=2, num_workers=workers,
                    progress=False)
        assert str(bad) in str(err.value) and "\n" not in str(err.value)


class _Bad(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        if i >= 2:
            raise IndexError(i)
        return torch.zeros(3, 32, 32, dtype=torch.uint8), 0


def test_dataset_shorter_than_it_claims(tiny_split, tiny_vlm):
    with pytest.raises(Exception):
        extract(tiny_split, tiny_vlm, _Bad(), batch_size=1, progress=False)
