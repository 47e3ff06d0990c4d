"""Device choice and mixed precision: CUDA with fp16 autocast when present, else CPU fp32."""

from __future__ import annotations

import contextlib

import torch


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """None/"auto" → CUDA if available, else CPU; anything else names a torch device. The
    caller passes the user's choice (a --device flag, a settings field); nothing is read from
    the environment here."""
    if isinstance(device, torch.device):
        return device
    device = device or "auto"
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager:
    """fp16 autocast on CUDA; a no-op on CPU, where bf16 is slower than fp32 on most chips."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()
