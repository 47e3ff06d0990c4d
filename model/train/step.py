"""One optimisation step's forward/backward, with or without gradient accumulation.

Accumulation keeps full-batch negatives the GradCache way (Gao et al., 2021): pass 1 embeds
every chunk without a graph, the loss over the whole batch gives d loss / d features; pass 2
re-embeds each chunk with a graph (same RNG state, so dropout matches) and back-propagates those
feature gradients. The result equals one backward over the whole batch.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .distributed import DistInfo
from .loss import BatchMeta, contrastive_loss


@dataclass
class StepInputs:
    pixels: torch.Tensor  # (B, 3, H, W) this rank's rows
    input_ids: torch.Tensor  # (B, L)
    attention_mask: torch.Tensor  # (B, L)
    meta: BatchMeta


def embed(
    module: nn.Module, pixels: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor, autocast
) -> tuple[torch.Tensor, torch.Tensor]:
    with autocast():
        img = module.encode_image(pixels)
        txt = module.encode_text(ids, mask)
    return F.normalize(img.float(), dim=-1), F.normalize(txt.float(), dim=-1)


class _RNGState:
    """CPU (+ CUDA) generator state, to replay a chunk's dropout masks exactly in pass 2."""

    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


def forward_backward(
    module: nn.Module,
    scale_fn,
    x: StepInputs,
    info: DistInfo,
    accum_steps: int,
    loss_kind: str = "infonce",
    bias: torch.Tensor | None = None,
    autocast=contextlib.nullcontext,
    loss_multiplier: float = 1.0,
) -> torch.Tensor:
    """Accumulate this rank's gradients for one batch; returns its (detached) loss share.
    `loss_multiplier` is the AMP loss scale (1 without a GradScaler)."""
    if accum_steps == 1:
        img, txt = embed(module, x.pixels, x.input_ids, x.attention_mask, autocast)
        loss = contrastive_loss(img, txt, scale_fn(), x.meta, info, loss_kind, bias)
        (loss * loss_multiplier).backward()
        return loss.detach()

    chunks = list(
        zip(
            x.pixels.chunk(accum_steps),
            x.input_ids.chunk(accum_steps),
            x.attention_mask.chunk(accum_steps),
            strict=True,
        )
    )
    device = x.pixels.device
    states, imgs, txts = [], [], []
    with torch.no_grad():
        for pixels, ids, mask in chunks:
            states.append(_RNGState(device))
            img, txt = embed(module, pixels, ids, mask, autocast)
            imgs.append(img)
            txts.append(txt)
    after = _RNGState(device)
    img_all = torch.cat(imgs).requires_grad_()  # (B, D) leaves: their .grad is the cache
    txt_all = torch.cat(txts).requires_grad_()
    loss = contrastive_loss(img_all, txt_all, scale_fn(), x.meta, info, loss_kind, bias)
    (loss * loss_multiplier).backward()  # → feature grads, and the temperature's own grad
    offset = 0
    for (pixels, ids, mask), state in zip(chunks, states, strict=True):
        state.restore()
        img, txt = embed(module, pixels, ids, mask, autocast)
        n = img.shape[0]
        surrogate = (img * img_all.grad[offset : offset + n]).sum() + (
            txt * txt_all.grad[offset : offset + n]
        ).sum()
        if surrogate.requires_grad:  # False only if both towers are entirely locked
            surrogate.backward()
        offset += n
    after.restore()
    return loss.detach()
