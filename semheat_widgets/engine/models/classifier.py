"""Split a classifier into ``encoder`` (image -> features z) and ``head`` (z -> logits).

The split taps the input of the classifier's final linear layer during one ordinary forward
pass, so features and logits cost one pass. The head is found, in this order:

1. ``head="out"`` — the dotted name of the layer, given;
2. a linear layer named ``fc``, ``classifier``, ``head`` or ``heads`` (possibly the last item of
   a Sequential), as in torchvision models;
3. otherwise by tracing one forward pass with hooks on every ``nn.Linear``: the last one whose
   output is the model's output (e.g. the last item of an ``nn.Sequential``, a layer named
   ``out``). A model that changes that output afterwards (a temperature, a scale) keeps its own
   output as the logits, with a warning.

``features="layer3"`` reads z from another layer instead (its output, globally average-pooled
over space or tokens); ``output="logits"`` (a key or an index) picks the logits out of a model
that returns a dict or a tuple (a ``"logits"`` key or attribute, or the first item, is found
without it). Anything else: pass ``encoder=`` and ``head=`` explicitly.

A :class:`ModelSplit` takes images as float 0..1 (or uint8) tensors and applies the classifier's
own resize and normalisation, moved to the model's device and cast to its dtype (a half
precision model gets half precision inputs), so attacks and the VLM can share the same pixel
space. ``input_size`` defaults to what the model says about itself (the size a timm ViT's patch
embedding was built for, a torchvision ViT's ``image_size``, a timm model's
``pretrained_cfg``); ``weights=`` (a torchvision weights enum)
supplies mean, std and crop size from its metadata.
"""

from __future__ import annotations

import warnings
from typing import Callable

import torch
import torch.nn as nn

from ...errors import SemheatError
from ..pixels import resize_center_crop, to_float01

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEAD_NAMES = ("fc", "classifier", "head", "heads")
PROBE_SIZE = 224  # the side of the dummy input used to trace a model without input_size


def find_head(model: nn.Module) -> tuple[str, nn.Linear]:
    """The final linear layer of ``model`` among the usual names, and its dotted name."""
    for name in HEAD_NAMES:
        module = getattr(model, name, None)
        if isinstance(module, nn.Linear):
            return name, module
        if isinstance(module, nn.Module):  # e.g. Sequential(Dropout, Linear)
            linears = [(f"{name}.{n}", m) for n, m in module.named_modules()
                       if isinstance(m, nn.Linear)]
            if linears:
                return linears[-1]
    raise SemheatError(f"{type(model).__name__} has no final linear layer named one of "
                       f"{HEAD_NAMES}; pass head='NAME' (the dotted name of its last "
                       f"nn.Linear), or encoder= and head= explicitly")


def _module(model: nn.Module, name: str, what: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        tops = ", ".join(n for n, _ in model.named_children()) or "none"
        raise SemheatError(f"{type(model).__name__} has no layer {name!r} for {what}= (its "
                           f"top-level layers: {tops})") from None


def select_output(out, key=None, model_name: str = "the model"):
    """The logits tensor among what a model returned: ``key`` (a dict key, attribute or index)
    when given; else the tensor itself, a ``"logits"`` key or attribute, or a tuple's first item."""
    if key is not None:
        try:
            if isinstance(out, dict) or (isinstance(key, int) and isinstance(out, (tuple, list))):
                return out[key]
            return getattr(out, key) if hasattr(out, key) else out[key]
        except (KeyError, IndexError, TypeError):
            raise SemheatError(f"{model_name}'s output has no {key!r} "
                               f"({_describe(out)})") from None
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        if "logits" in out:
            return out["logits"]
        tensors = [k for k, v in out.items() if isinstance(v, torch.Tensor)]
        if len(tensors) == 1:
            return out[tensors[0]]
        raise SemheatError(f"{model_name} returns a dict with keys {list(out)}; pass "
                           f"output='KEY' (the key holding the logits)")
    if isinstance(getattr(out, "logits", None), torch.Tensor):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise SemheatError(f"{model_name} returns {_describe(out)}; pass output='KEY' or an index")


def _describe(out) -> str:
    if isinstance(out, dict):
        return f"a dict with keys {list(out)}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} items"
    return f"a {type(out).__name__}"


def _pool(x) -> torch.Tensor:
    """A layer's output as one vector per input: spatial maps and token sequences averaged."""
    if isinstance(x, (tuple, list)):
        x = x[0]
    if not isinstance(x, torch.Tensor):
        raise SemheatError(f"the features layer returns a {type(x).__name__}, not a tensor")
    if x.ndim == 4:
        return x.mean((2, 3))
    if x.ndim == 3:
        return x.mean(1)
    return x.flatten(1)


def _built_input_side(model) -> int | None:
    """The square side a patch-embedding model was built for (timm ViTs, DeiT, ...:
    ``patch_embed.img_size``); None when it has none, or it is not square."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(size, int) and not isinstance(size, bool):
        return size if size > 0 else None
    if isinstance(size, (tuple, list)) and len(size) == 2 and size[0] == size[1] \
            and isinstance(size[0], int) and size[0] > 0:
        return int(size[0])
    return None


def model_input_size(model) -> int | None:
    """The input side a model states about itself: the size its patch embedding was built for
    (a timm ViT made with ``img_size=64`` takes 64, whatever its ``pretrained_cfg`` says), a
    torchvision ViT's ``image_size``, a timm model's ``pretrained_cfg["input_size"]``; None when
    it says nothing."""
    built = _built_input_side(model)
    if built is not None:
        return built
    cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(cfg, dict) and cfg.get("input_size"):
        return int(cfg["input_size"][-1])
    size = getattr(model, "image_size", None)
    if isinstance(size, int) and type(model).__name__ == "VisionTransformer":
        return size
    return None


def _weights_meta(weights):
    """``(mean, std, crop size)`` from a torchvision weights enum (or its ``transforms()``)."""
    tf = weights.transforms() if hasattr(weights, "transforms") else weights
    try:
        crop = tf.crop_size
        return tuple(tf.mean), tuple(tf.std), int(crop[0] if isinstance(crop, (list, tuple))
                                                  else crop)
    except AttributeError:
        raise SemheatError(f"weights={weights!r} carries no mean/std/crop_size; pass mean=, "
                           f"std= and input_size= instead") from None


class ModelSplit(nn.Module):
    """A classifier as ``head(encoder(x))``, with its input preprocessing built in.

    ``forward(x)`` gives logits; :meth:`features_and_logits` gives both in one pass.
    """

    def __init__(self, model: nn.Module | None = None, *, encoder: Callable | None = None,
                 head: Callable | str | None = None, features: str | None = None,
                 output=None, mean=None, std=None, input_size: int | None = None,
                 weights=None, name: str = "classifier"):
        super().__init__()
        if model is None and (encoder is None or head is None or isinstance(head, str)):
            raise SemheatError("give a model with a final linear layer, or both encoder= and head=")
        if weights is not None:
            w_mean, w_std, w_size = _weights_meta(weights)
            mean, std = mean or w_mean, std or w_std
            input_size = input_size or w_size
        cfg = getattr(model, "pretrained_cfg", None)
        if isinstance(cfg, dict):  # timm models carry their preprocessing
            mean, std = mean or cfg.get("mean"), std or cfg.get("std")
        self.model = model
        self.name = name
        self.output = output
        self.input_size = input_size or (model_input_size(model) if model is not None else None)
        self.in_channels = self._in_channels(model if model is not None else encoder)
        mean, std = tuple(mean or IMAGENET_MEAN), tuple(std or IMAGENET_STD)
        if len(mean) != len(std) or len(mean) not in (1, 3):
            raise SemheatError(f"mean and std need 1 or 3 values each, got {mean} and {std}")
        if len(mean) == 3 and self.in_channels == 1:
            mean, std = (sum(mean) / 3,), (sum(std) / 3,)
        device = self._param_device(model if model is not None else encoder)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32,
                                                  device=device).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32,
                                                 device=device).view(1, -1, 1, 1))
        self.head_name = None
        self._features = None
        self._resolved = True
        if encoder is not None:
            self._encoder, self.head = encoder, head  # modules among them get registered
            self._tap = None
        elif features is not None:
            self._features = _module(model, features, "features")
            self.features_name = features
            self.head, self._tap = None, None
            if isinstance(head, str):
                self.head_name, self.head = head, _module(model, head, "head")
        elif isinstance(head, str):
            self.head_name, self.head = head, _module(model, head, "head")
            self._tap = self.head
        else:
            try:
                self.head_name, self.head = find_head(model)
                self._tap = self.head
            except SemheatError:  # found by tracing, on the first forward pass
                self.head, self._tap, self._resolved = None, None, False
        self._checked = False
        self._logits_from_model = False

    @staticmethod
    def _in_channels(module) -> int:
        if isinstance(module, nn.Module):
            for m in module.modules():
                if isinstance(m, nn.Conv2d):
                    return m.in_channels
        return 3

    @staticmethod
    def _param_device(module):
        if isinstance(module, nn.Module):
            for p in module.parameters():
                return p.device
        return torch.device("cpu")

    def _dtype(self):
        for part in (self.model, getattr(self, "_encoder", None)):
            if isinstance(part, nn.Module):
                for p in part.parameters():
                    if p.is_floating_point():
                        return p.dtype
        return torch.float32

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise SemheatError(f"images must be N x 3 x H x W (or N x 1 x H x W), got shape "
                               f"{tuple(images.shape)}")
        x = to_float01(images.to(self.mean.device))
        if x.shape[1] != self.in_channels:
            x = x.mean(1, keepdim=True) if self.in_channels == 1 else x.expand(-1, 3, -1, -1)
        if self.input_size:
            x = resize_center_crop(x, self.input_size)
        return ((x - self.mean) / self.std).to(self._dtype())

    def _run(self, x):
        return select_output(self.model(x), self.output, type(self.model).__name__)

    def _resolve(self, x: torch.Tensor) -> None:
        """Find the head by tracing: the last ``nn.Linear`` called whose output is the model's
        output (or, failing that, the last one with the output's shape)."""
        calls = []

        def hook(module, _inputs, out):
            calls.append((module, out))

        linears = {m: n for n, m in self.model.named_modules() if isinstance(m, nn.Linear)}
        handles = [m.register_forward_hook(hook) for m in linears]
        try:
            logits = self._run(x)
        finally:
            for h in handles:
                h.remove()
        model = type(self.model).__name__
        same_shape = [(m, o) for m, o in calls if isinstance(o, torch.Tensor)
                      and o.shape == logits.shape]
        exact = [(m, o) for m, o in same_shape if torch.allclose(o.float(), logits.float(),
                                                                  atol=1e-4, rtol=1e-3)]
        chosen = (exact or same_shape or [(None, None)])[-1][0]
        if chosen is None:
            tops = ", ".join(n for n, _ in self.model.named_children()) or "none"
            raise SemheatError(f"no nn.Linear layer of {model} gives its output (shape "
                               f"{tuple(logits.shape)}); pass features='NAME' to read features "
                               f"from a layer (its top-level layers: {tops}), or encoder= and "
                               f"head=")
        self.head_name, self.head, self._tap = linears[chosen], chosen, chosen
        self._resolved = True

    def resolve(self, images: torch.Tensor | None = None) -> "ModelSplit":
        """Find the head now (by tracing on ``images``, or on a dummy batch of the model's
        input size), instead of on the first forward pass; returns self."""
        if self._resolved and self.head is not None:
            return self
        if images is None:
            side = self.input_size or PROBE_SIZE
            images = torch.full((2, self.in_channels, side, side), 0.5)
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                z, logits = self.features_and_logits(images)
        except SemheatError:
            raise
        except Exception as exc:  # e.g. a shape mismatch deep inside the model
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SemheatError(f"could not run {type(self.model).__name__} on a "
                               f"{tuple(images.shape)} batch to find its head ({first}); pass "
                               f"input_size= (the side the model expects)") from None
        finally:
            self.train(was)
        self._n_outputs = int(logits.shape[1])
        return self

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z, logits)`` of a batch of 0..1 (or uint8) images, in one forward pass."""
        x = self.preprocess(images)
        if self.model is None:
            z = self._encoder(x)
            z = z.flatten(1) if z.ndim > 2 else z
            return z, self.head(z)
        if not self._resolved:
            self._resolve(x)
        captured = {}
        if self._features is not None:
            def hook(_module, _inputs, out):
                captured["z"] = _pool(out)

            handle = self._features.register_forward_hook(hook)
            what = self.features_name
        else:
            def hook(_module, inputs):
                captured["z"] = inputs[0]

            handle = self._tap.register_forward_pre_hook(hook)
            what = self.head_name
        try:
            logits = self._run(x)
        finally:
            handle.remove()
        if "z" not in captured:
            raise SemheatError(f"{what} was not called by the model's forward; pass "
                               f"features='NAME' of a layer it calls, or encoder= and head=")
        z = captured["z"]
        if self._features is None and not self._checked:  # the tapped layer: the last step?
            head_out = self.head(z)
            if head_out.shape != logits.shape:
                raise SemheatError(f"the output of {what} has shape {tuple(head_out.shape)} but "
                                   f"the model returns {tuple(logits.shape)}; pass "
                                   f"head='NAME' of its last nn.Linear, or output='KEY'")
            if not torch.allclose(head_out.float(), logits.float(), atol=1e-4, rtol=1e-3):
                warnings.warn(f"{type(self.model).__name__} changes the output of {what} (e.g. a "
                              f"temperature): features are {what}'s input, logits the model's "
                              f"own output", stacklevel=2)
                self._logits_from_model = True
            self._checked = True
        return z, logits

    def encoder(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features_and_logits(images)[1]

    @property
    def num_classes(self) -> int:
        if self.head is None and self.model is not None:
            if not hasattr(self, "_n_outputs"):
                self.resolve()
            if self.head is None:
                return self._n_outputs
        weight = getattr(self.head, "weight", None)
        if weight is None:
            raise SemheatError("cannot tell the number of classes of a callable head")
        return int(weight.shape[0])

    @property
    def device(self) -> torch.device:
        return self.mean.device
