"""A thin wrapper over an open_clip model: batched image and text encoders on CPU or CUDA.

Images enter as tensors (``uint8`` 0..255 or float 0..1, ``N x 3 x H x W``) and are resized,
cropped and normalised on the device, so one decoded image can feed the classifier and the VLM
without a second decode. Embeddings come out L2-normalised, ``float32``, on the CPU.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Sequence
from urllib.parse import urlparse

import torch
import torch.nn.functional as F

from ...errors import SemheatError
from .device import resolve_device
from ..pixels import resize_center_crop, to_float01

HUB_TIMEOUT = 3.0  # seconds to wait for the model hub's address before working offline


def _looks_like_path(tag: str) -> bool:
    return "/" in tag or "\\" in tag or tag.endswith((".safetensors", ".bin", ".pt", ".pth"))


def _hub_cache() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "~/.cache/huggingface/hub"


def hub_offline() -> str | None:
    """Why the model hub cannot be used (``HF_HUB_OFFLINE`` set, or its address unreachable
    within :data:`HUB_TIMEOUT`), or None when it can: checked once, so an offline machine fails
    in seconds instead of retrying each download."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((host.hostname, host.port or 443), timeout=HUB_TIMEOUT).close()
    except OSError:
        return f"{host.hostname} is unreachable"
    return None


@contextmanager
def _hub_offline_mode(on: bool):
    """huggingface_hub's offline mode (cache only, no retries) while ``on``."""
    try:
        from huggingface_hub import constants
    except ImportError:
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = saved or on
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class VLM:
    """An open_clip model with its tokenizer and tensor preprocessing.

    Build one with :meth:`create` (an open_clip architecture and pretrained tag; ``"none"``
    gives random weights, for offline tests) or :meth:`from_local` (a folder with
    ``open_clip_config.json`` and safetensors weights); :func:`~.registry.load_vlm` opens one by
    identifier.
    """

    def __init__(self, model, tokenizer, *, image_size: int, mean=OPENAI_MEAN, std=OPENAI_STD,
                 name: str = "open_clip", device=None):
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.image_size = int(image_size)
        self.name = name
        self._mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._token_rows_cache: torch.Tensor | None = None

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def create(cls, arch: str, pretrained: str = "none", device=None,
               cache_dir: str | None = None) -> "VLM":
        """An open_clip architecture (``"RN50"``, ``"ViT-B-32"`` ...) with a pretrained tag
        (``"openai"``, ``"laion2b_s34b_b79k"`` ...), a local weights file, or ``"none"``."""
        import open_clip

        if arch not in open_clip.list_models():
            raise SemheatError(f"unknown open_clip architecture {arch!r} "
                               f"(see open_clip.list_models())")
        tag = None if pretrained in (None, "", "none") else pretrained
        if tag is not None and _looks_like_path(tag):
            if not Path(tag).expanduser().is_file():
                raise SemheatError(f"open_clip checkpoint not found: {tag} (open_clip:{arch}:PATH "
                                   f"takes a local .safetensors, .bin or .pt file)")
            tag = str(Path(tag).expanduser())
        elif tag is not None and tag not in open_clip.list_pretrained_tags_by_model(arch):
            known = ", ".join(open_clip.list_pretrained_tags_by_model(arch)) or "none"
            raise SemheatError(f"open_clip {arch} has no pretrained tag {tag!r} (known: {known}); "
                               f"or give a local checkpoint: open_clip:{arch}:PATH")
        offline = hub_offline() if tag is not None and not Path(tag).is_file() else None
        try:
            with _hub_offline_mode(offline is not None):
                if offline is not None:  # in the cache, or fail now (before building the model)
                    from open_clip.pretrained import download_pretrained, get_pretrained_cfg

                    if not download_pretrained(get_pretrained_cfg(arch, tag), cache_dir=cache_dir):
                        raise FileNotFoundError(tag)
                model = open_clip.create_model(arch, pretrained=tag, device="cpu",
                                               cache_dir=cache_dir)
                tokenizer = open_clip.get_tokenizer(arch)
        except Exception as exc:  # network failures, unknown tags, bad files
            if offline is not None:
                raise SemheatError(
                    f"open_clip {arch} weights {pretrained!r} are not in the local cache and "
                    f"the model hub cannot be reached ({offline}); fetch them once where there "
                    f"is network (they go to {_hub_cache()}), or give a local checkpoint: "
                    f"open_clip:{arch}:/path/to/weights.safetensors (or open_clip:{arch}:none "
                    f"for random weights)") from None
            raise SemheatError(f"could not load open_clip {arch} weights {pretrained!r}: "
                               f"{str(exc).splitlines()[0]}") from None
        pp = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
        size = pp.get("size", getattr(model.visual, "image_size", 224))
        size = size[0] if isinstance(size, (tuple, list)) else size
        return cls(model, tokenizer, image_size=size,
                   mean=pp.get("mean", OPENAI_MEAN), std=pp.get("std", OPENAI_STD),
                   name=f"open_clip:{arch}:{pretrained or 'none'}", device=device)

    @classmethod
    def from_local(cls, folder, device=None) -> "VLM":
        """A folder holding ``open_clip_config.json`` (``model_cfg`` + ``preprocess_cfg``) and
        one ``*.safetensors`` file of weights (loaded without pickle)."""
        import open_clip
        from open_clip.model import CLIP
        from safetensors.torch import load_file

        folder = Path(folder)
        config_path = folder / "open_clip_config.json"
        if not config_path.is_file():
            raise SemheatError(f"no open_clip_config.json in {folder}")
        config = json.loads(config_path.read_text())
        weights = sorted(folder.glob("*.safetensors"))
        if len(weights) != 1:
            raise SemheatError(f"expected one .safetensors file in {folder}, found {len(weights)}")
        model = CLIP(**config["model_cfg"])
        state = load_file(str(weights[0]))
        state = expand_sparse_embedding(state, model)
        model.load_state_dict({k: v.float() for k, v in state.items()})
        pp = config.get("preprocess_cfg", {})
        ctx = config["model_cfg"]["text_cfg"].get("context_length", 77)
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=ctx)
        return cls(model, tokenizer, image_size=pp.get("size", 224),
                   mean=pp.get("mean", OPENAI_MEAN), std=pp.get("std", OPENAI_STD),
                   name=config.get("name", f"local:{folder.name}"), device=device)

    def to(self, device) -> "VLM":
        """Move the model and its preprocessing constants to ``device`` (in place)."""
        self.device = resolve_device(device)
        self.model.to(self.device)
        self._mean, self._std = self._mean.to(self.device), self._std.to(self.device)
        return self

    # -- properties ------------------------------------------------------------------------
    @property
    def embed_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if proj is not None:
            return int(proj.shape[-1])
        return int(self.encode_texts(["x"]).shape[1])

    def _autocast(self):
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return nullcontext()

    # -- encoders --------------------------------------------------------------------------
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Uint8 or 0..1 images -> normalised model input on the device."""
        x = to_float01(images.to(self.device, non_blocking=True))
        x = resize_center_crop(x, self.image_size)
        return (x - self._mean) / self._std

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """L2-normalised image embeddings, ``float32 N x m`` on the CPU."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise SemheatError(f"images must be N x 3 x H x W, got shape {tuple(images.shape)}")
        out = []
        for start in range(0, images.shape[0], batch_size):
            with self._autocast():
                emb = self.model.encode_image(self.preprocess(images[start:start + batch_size]))
            out.append(F.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    @torch.no_grad()
    def encode_texts(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """L2-normalised text embeddings, ``float32 N x m`` on the CPU."""
        texts = list(texts)
        for t in texts:
            if not isinstance(t, str) or not t.strip():
                raise SemheatError(f"prompts must be non-empty strings, got {t!r}")
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(texts[start:start + batch_size]).to(self.device)
            with self._autocast():
                emb = self.model.encode_text(tokens)
            out.append(F.normalize(emb.float(), dim=-1).cpu())
        return torch.cat(out) if out else torch.zeros(0, self.embed_dim)

    def unknown_words(self, text: str) -> list[str]:
        """Words of ``text`` with a token this model never learned (an all-zero embedding row).

        Only models trained with a pruned vocabulary (the toy CLIP) have such tokens; for
        others this is always empty.
        """
        rows = self._zero_token_rows()
        if rows is None:
            return []
        unknown = []
        for word in text.split():
            ids = self.tokenizer.encode(word) if hasattr(self.tokenizer, "encode") else []
            if any(bool(rows[i]) for i in ids):
                unknown.append(word)
        return unknown

    def _zero_token_rows(self):
        if self._token_rows_cache is None:
            emb = getattr(self.model, "token_embedding", None)
            if emb is None:
                return None
            self._token_rows_cache = (emb.weight.detach() == 0).all(dim=1).cpu()
        return self._token_rows_cache if self._token_rows_cache.any() else None


# -- compact storage of a pruned token embedding ---------------------------------------------
SPARSE_IDS = "token_embedding.ids"
SPARSE_ROWS = "token_embedding.rows"


def compact_state_dict(model, dtype=torch.float16) -> dict[str, torch.Tensor]:
    """The model's weights in ``dtype``, with the token embedding stored as its nonzero rows.

    A tiny CLIP trained on a small vocabulary leaves most of the 49k token rows at zero
    (they are zero-initialised and excluded from weight decay); storing only the used rows
    shrinks the file from ~12 MB to a few KB at width 128.
    """
    state = {k: v.detach().to("cpu", dtype if v.is_floating_point() else v.dtype).contiguous()
             for k, v in model.state_dict().items()}
    emb = state.pop("token_embedding.weight")
    ids = torch.nonzero(emb.float().abs().sum(dim=1) > 0).flatten()
    state[SPARSE_IDS] = ids.to(torch.int64)
    state[SPARSE_ROWS] = emb[ids].contiguous()
    return state


def expand_sparse_embedding(state: dict, model) -> dict:
    if SPARSE_IDS not in state:
        return state
    state = dict(state)
    ids, rows = state.pop(SPARSE_IDS), state.pop(SPARSE_ROWS)
    dense = torch.zeros_like(model.token_embedding.weight)
    dense[ids.long()] = rows.to(dense.dtype)
    state["token_embedding.weight"] = dense
    return state
