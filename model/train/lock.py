"""LiT-style locking (Zhai et al., 2022): freeze a tower's trunk except its last N layer groups.
Projection heads stay trainable, as in open_clip's lock_image/lock_text."""

from __future__ import annotations

import logging

from torch import nn

from .modeling import TrainModel

log = logging.getLogger(__name__)


def layer_groups(trunk: nn.Module) -> list[list[str]]:
    """Parameter names of `trunk` in input→output groups: timm's own grouping for timm models,
    else [embeddings, layer 0, …, layer n (+ final norms/pooler)] for transformers stacks."""
    if hasattr(trunk, "group_matcher"):
        from timm.models import group_parameters

        groups = group_parameters(trunk, trunk.group_matcher())
        return [list(groups[k]) for k in sorted(groups)]
    names = [n for n, _ in trunk.named_parameters()]
    stack_name, stack = max(
        ((n, m) for n, m in trunk.named_modules() if isinstance(m, nn.ModuleList)),
        key=lambda nm: sum(p.numel() for p in nm[1].parameters()),
        default=(None, None),
    )
    if stack is None:
        return [names]
    pre, layers, post = [], [[] for _ in stack], []
    for n in names:
        if n.startswith(stack_name + "."):
            layers[int(n[len(stack_name) + 1 :].split(".")[0])].append(n)
        elif not any(layers):
            pre.append(n)
        else:
            post.append(n)
    layers[-1].extend(post)  # final norms/pooler go with the last layer
    return [g for g in [pre, *layers] if g]


def lock_tower(tm: TrainModel, tower: str, unlocked: int = 0) -> int:
    """Freeze `tower`'s trunk but its last `unlocked` groups; returns the frozen tensor count."""
    if tm.family == "open_clip":
        return _lock_open_clip(tm, tower, unlocked)
    trunk = tm.trunk(tower)
    groups = layer_groups(trunk)
    if unlocked < 0 or unlocked > len(groups):
        raise ValueError(f"{tower} tower has {len(groups)} layer groups; cannot unlock {unlocked}")
    frozen = [n for g in groups[: len(groups) - unlocked] for n in g]
    for n in frozen:
        trunk.get_parameter(n).requires_grad_(False)
    log.info("locked %s tower: %d of %d groups frozen", tower, len(groups) - unlocked, len(groups))
    return len(frozen)


def _lock_open_clip(tm: TrainModel, tower: str, unlocked: int) -> int:
    """open_clip's own LiT locking (lock_image_tower / lock_text_tower), as open_clip_train
    does it: the whole tower, projection included, but its last `unlocked` groups/layers."""
    model = tm.module.model
    before = {n for n, p in model.named_parameters() if not p.requires_grad}
    if tower == "image":
        model.lock_image_tower(unlocked_groups=unlocked, freeze_bn_stats=True)
    else:
        model.lock_text_tower(unlocked_layers=unlocked)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad} - before
    log.info("locked the open_clip %s tower: %d tensors frozen", tower, len(frozen))
    return len(frozen)


def freeze_frozen_modules(module: nn.Module) -> None:
    """After .train(): modules whose parameters are all frozen go back to eval mode, so a locked
    tower keeps its BatchNorm statistics and runs without dropout (LiT's locked tower is fixed)."""
    for m in module.modules():
        params = list(m.parameters())
        if params and not any(p.requires_grad for p in params):
            m.eval()
