"""Per-tower learning rates, weight-decay exclusions, the schedule, LiT locking."""

from __future__ import annotations

import math

import pytest
import torch

from model.train.lock import freeze_frozen_modules, layer_groups, lock_tower
from model.train.modeling import build_model
from model.train.optim import build_optimizer, lr_factor


def test_param_groups_route_each_tower_to_its_own_lr(make_cfg):
    cfg = make_cfg(lr=1e-3, lr_image=2e-3, lr_text=3e-4, weight_decay=0.2)
    tm = build_model(cfg)
    opt = build_optimizer(tm, cfg)
    names = {id(p): n for n, p in tm.module.named_parameters()}
    seen = set()
    for g in opt.param_groups:
        for p in g["params"]:
            n = names[id(p)]
            seen.add(n)
            want_lr = 2e-3 if n.startswith("visual.") else 3e-4 if n.startswith("text.") else 1e-3
            assert g["lr"] == want_lr, n
            no_decay = p.ndim < 2 or n == "logit_scale"
            assert g["weight_decay"] == (0.0 if no_decay else 0.2), n
    assert seen == {n for n, p in tm.module.named_parameters()}
    assert any("norm" in n for n in seen)  # norms exist, and landed in a no-decay group


def test_warmup_then_cosine():
    f = [lr_factor(s, 10, 110, 0.1) for s in range(111)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[110] == pytest.approx(0.1)
    assert f[60] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert all(a >= b for a, b in zip(f[10:], f[11:], strict=False))


def test_lock_image_tower_keeps_head_trainable_and_unlocks_last_groups(make_cfg):
    tm = build_model(make_cfg())
    groups = layer_groups(tm.trunk("image"))
    assert len(groups) >= 3
    lock_tower(tm, "image", unlocked=1)
    trunk = tm.trunk("image")
    last = set(groups[-1])
    for n, p in trunk.named_parameters():
        assert p.requires_grad == (n in last), n
    assert tm.module.visual.head.weight.requires_grad
    assert all(p.requires_grad for p in tm.module.text.parameters())
    with pytest.raises(ValueError, match="layer groups"):
        lock_tower(tm, "image", unlocked=99)


def test_lock_text_tower_by_layers(make_cfg):
    tm = build_model(make_cfg())
    groups = layer_groups(tm.trunk("text"))
    assert groups[0][0].startswith("embeddings.")  # embeddings first, then each layer
    assert len(groups) == 1 + 2  # tiny BERT: embeddings + 2 layers (+ pooler with the last)
    lock_tower(tm, "text", unlocked=0)
    assert not any(p.requires_grad for p in tm.trunk("text").parameters())


def test_locked_batchnorm_keeps_its_statistics(make_cfg, tmp_path):
    from tests.train.conftest import write_model_config

    tm = build_model(
        make_cfg(model_config=str(write_model_config(tmp_path / "r.json", "test_resnet")))
    )
    lock_tower(tm, "image", unlocked=0)
    tm.module.train()
    freeze_frozen_modules(tm.module)
    bn = next(m for m in tm.trunk("image").modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = bn.running_mean.clone()
    tm.module.encode_image(torch.randn(4, 3, 32, 32) * 5)
    assert not bn.training and torch.equal(before, bn.running_mean)
    assert tm.module.text.training  # the unlocked tower still trains
