"""Devices and precision, named as Hugging Face and PyTorch name them.

``--device auto|cpu|cuda|cuda:N|mps`` and ``--dtype float32|bfloat16|float16``. ``auto`` takes
the first GPU when there is one (CUDA, then Apple's MPS) and the CPU otherwise. A device that is
not there, or a precision the device cannot compute in, is one clear error before any model
loads. The model is moved to the device once; every tensor a method creates is created there
(``adapter.device``), and numbers leave it only at the result boundary.
"""

from __future__ import annotations

import re

import torch

from twopath.types import TwopathError

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str | None) -> torch.device:
    """The torch device for a ``--device`` value; one error naming what is missing."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not _mps_available():
            raise TwopathError("--device mps: Apple's MPS backend is not available on this machine")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise TwopathError(f"unknown device {name!r}; expected one of {', '.join(DEVICES)}")
    if not torch.cuda.is_available():
        raise TwopathError(f"--device {name}: no CUDA GPU is available on this machine (use --device cpu)")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise TwopathError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", index)


def resolve_dtype(name: str | None, device: torch.device) -> torch.dtype:
    """The torch dtype for a ``--dtype`` value, checked against the device."""
    name = (name or "float32").strip().lower()
    if name not in DTYPES:
        raise TwopathError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}")
    dtype = DTYPES[name]
    if device.type == "cpu" and dtype is torch.float16:
        raise TwopathError("--dtype float16 is not supported on the CPU (use float32 or bfloat16)")
    if device.type == "cuda" and dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise TwopathError(f"--dtype bfloat16 is not supported by {torch.cuda.get_device_name(device)}")
    return dtype
