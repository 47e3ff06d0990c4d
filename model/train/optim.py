"""AdamW with per-tower learning rates (no weight decay on norms, biases or the temperature) and
a warmup + cosine schedule by steps."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import TrainConfig
from .modeling import TrainModel


def _no_decay(name: str, p: nn.Parameter) -> bool:
    # 1-d tensors are biases, norm gains and scalars such as logit_scale / logit_bias
    return p.ndim < 2 or "logit_scale" in name or "logit_bias" in name


def param_groups(
    tm: TrainModel, cfg: TrainConfig, extra: dict[str, nn.Parameter] | None = None
) -> list[dict]:
    lrs = {"image": cfg.lr_image or cfg.lr, "text": cfg.lr_text or cfg.lr, "other": cfg.lr}
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    model_names = {n for n, _ in tm.module.named_parameters()}
    named = list(tm.module.named_parameters()) + list((extra or {}).items())
    for name, p in named:
        if not p.requires_grad:
            continue
        tower = tm.tower_of(name) if name in model_names else "other"
        buckets.setdefault((tower, _no_decay(name, p)), []).append(p)
    return [
        {
            "params": params,
            "lr": lrs[tower],
            "weight_decay": 0.0 if no_decay else cfg.weight_decay,
            "name": f"{tower}{'_no_decay' if no_decay else ''}",
        }
        for (tower, no_decay), params in sorted(buckets.items())
    ]


def build_optimizer(
    tm: TrainModel, cfg: TrainConfig, extra: dict[str, nn.Parameter] | None = None
) -> torch.optim.AdamW:
    groups = param_groups(tm, cfg, extra)
    if not groups:
        raise ValueError("nothing to train: every parameter is locked")
    return torch.optim.AdamW(groups, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)


def lr_factor(step: int, warmup: int, total: int, floor: float) -> float:
    """Linear warmup to 1, then cosine down to `floor` at `total` steps."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def build_scheduler(
    opt: torch.optim.Optimizer, cfg: TrainConfig
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, cfg.min_lr_ratio)
    )
