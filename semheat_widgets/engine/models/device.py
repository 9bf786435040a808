"""Which device to compute on: CUDA when present, unless told otherwise."""

from __future__ import annotations

import torch

from ...errors import SemheatError


def resolve_device(device=None) -> torch.device:
    """``None``/``"auto"``: CUDA when present, else the CPU. Anything else must name a device
    this machine has (one-line error otherwise)."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise SemheatError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SemheatError(f"device {device!r}: no CUDA GPU is available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SemheatError(f"device {device!r}: this machine has "
                               f"{torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None)
                                    and torch.backends.mps.is_available()):
        raise SemheatError(f"device {device!r}: MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise SemheatError(f"device {device!r} is not supported; use cpu, cuda or auto")
    return dev
