"""Contrastive losses over a (possibly distributed) batch.

Every rank scores its own rows against the gathered global batch ("local loss"), and divides by
the global number of valid rows, so the per-rank losses sum to the single-process loss of the
concatenated batch and summed gradients equal its gradients exactly.

Rows of the same image (several captions of one image in a batch) never count as negatives:
InfoNCE masks them out of the softmax, SigLIP treats them as positives.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .distributed import DistInfo, all_reduce_sum_, gather_with_grad

NEG_INF = float("-inf")


@dataclass
class BatchMeta:
    """Per-rank row metadata: which image each row shows and whether it loaded."""

    image_ids: torch.Tensor  # (B,) long
    valid: torch.Tensor  # (B,) bool


def gather_meta(meta: BatchMeta, info: DistInfo) -> BatchMeta:
    if not info.enabled:
        return meta
    import torch.distributed as dist

    ids = [torch.empty_like(meta.image_ids) for _ in range(info.world)]
    valid = [torch.empty_like(meta.valid, dtype=torch.uint8) for _ in range(info.world)]
    dist.all_gather(ids, meta.image_ids)
    dist.all_gather(valid, meta.valid.to(torch.uint8))
    return BatchMeta(torch.cat(ids), torch.cat(valid).bool())


def contrastive_loss(
    img: torch.Tensor,
    txt: torch.Tensor,
    scale: torch.Tensor,
    meta: BatchMeta,
    info: DistInfo,
    kind: str = "infonce",
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """img, txt: (B, D) unit vectors of this rank's rows (row i of both is one pair).
    Returns this rank's share of the global-batch loss (shares sum to the full loss)."""
    all_img = gather_with_grad(img, info)  # (W·B, D)
    all_txt = gather_with_grad(txt, info)
    gmeta = gather_meta(meta, info)
    n_valid = gmeta.valid.sum().clamp(min=1)
    b = img.shape[0]
    rows = torch.arange(b, device=img.device) + info.rank * b  # global index of each local row
    same_image = meta.image_ids[:, None] == gmeta.image_ids[None, :]  # (B, W·B)
    if kind == "siglip":
        if bias is None:
            raise ValueError("the siglip loss needs a learnable bias")
        logits = scale * img @ all_txt.T + bias  # (B, W·B)
        labels = same_image.float() * 2 - 1  # +1 for every caption of the same image
        pair_ok = meta.valid[:, None] & gmeta.valid[None, :]
        per_pair = -F.logsigmoid(labels * logits) * pair_ok
        return per_pair.sum() / n_valid
    if kind != "infonce":
        raise ValueError(f"unknown loss {kind!r}; use 'infonce' or 'siglip'")
    # other rows of the same image, and rows whose image failed to load, are not negatives
    # (a row's own pair is never blocked, so every softmax keeps a finite target)
    cols = torch.arange(len(gmeta.valid), device=img.device)
    own = rows[:, None] == cols[None, :]  # (B, W·B)
    blocked = (same_image | ~gmeta.valid[None, :]) & ~own
    logits_i2t = (scale * img @ all_txt.T).masked_fill(blocked, NEG_INF)  # (B, W·B)
    logits_t2i = (scale * txt @ all_img.T).masked_fill(blocked, NEG_INF)  # (B, W·B)
    per_row = (
        F.cross_entropy(logits_i2t, rows, reduction="none")
        + F.cross_entropy(logits_t2i, rows, reduction="none")
    ) / 2
    return torch.where(meta.valid, per_row, torch.zeros_like(per_row)).sum() / n_valid


def global_value(local_share: torch.Tensor, info: DistInfo) -> float:
    """The full-batch loss from this rank's share (for logging)."""
    return float(all_reduce_sum_(local_share.detach().clone(), info))
