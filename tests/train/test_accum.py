"""Gradient accumulation keeps full-batch negatives: K chunks give one big batch's gradients."""

from __future__ import annotations

import pytest
import torch

from model.train.distributed import DistInfo
from model.train.loss import BatchMeta
from model.train.modeling import build_model
from model.train.step import StepInputs, forward_backward


def batch_for(tm, n: int = 8, seed: int = 0) -> StepInputs:
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 32, 32, generator=g)
    captions = [f"{c} shape number {i}" for i, c in enumerate(["red", "blue"] * (n // 2))]
    ids = torch.tensor([i // 2 if i < 4 else i for i in range(n)])  # rows 0-1, 2-3 share images
    pixels[1], pixels[3] = pixels[0], pixels[2]
    training = tm.module.training
    tok = tm.encoder(torch.device("cpu")).tokenize(captions)  # (building an Encoder sets eval)
    tm.module.train(training)
    return StepInputs(
        pixels, tok["input_ids"], tok["attention_mask"], BatchMeta(ids, torch.ones(n, dtype=bool))
    )


def grads_of(tm, x: StepInputs, accum: int) -> tuple[float, dict[str, torch.Tensor]]:
    tm.module.zero_grad(set_to_none=True)
    loss = forward_backward(tm.module, tm.module.scale, x, DistInfo(), accum)
    grads = {n: p.grad.clone() for n, p in tm.module.named_parameters() if p.grad is not None}
    return float(loss), grads


@pytest.mark.parametrize("accum", [2, 4])
def test_accumulated_gradients_equal_the_full_batch(make_cfg, vit_config, accum):
    tm = build_model(make_cfg(model_config=str(vit_config)))
    tm.module.train()
    x = batch_for(tm)
    loss_full, g_full = grads_of(tm, x, 1)
    loss_acc, g_acc = grads_of(tm, x, accum)
    assert loss_acc == pytest.approx(loss_full, rel=1e-6)
    assert g_full.keys() == g_acc.keys()
    assert "logit_scale" in g_full and "visual.head.weight" in g_full
    for name in g_full:  # float summation order differs; compare per tensor by norm
        err = (g_acc[name] - g_full[name]).norm()
        assert err <= 1e-4 * g_full[name].norm() + 1e-9, (name, float(err))


def test_accumulation_replays_dropout_exactly(make_cfg, tmp_path):
    """With dropout on, an accumulated step is a deterministic function of the RNG state, and
    the RNG stream continues exactly where pass 1 left it (pass 2 replays saved states)."""
    from tests.train.conftest import write_model_config

    cfg = make_cfg(model_config=str(write_model_config(tmp_path / "d.json", dropout=True)))
    tm = build_model(cfg)
    tm.module.train()
    x = batch_for(tm)
    torch.manual_seed(5)
    _, g1 = grads_of(tm, x, 4)
    after1 = torch.rand(1)
    torch.manual_seed(5)
    _, g2 = grads_of(tm, x, 4)
    after2 = torch.rand(1)
    for name in g1:
        assert torch.equal(g1[name], g2[name]), name
    torch.manual_seed(6)
    _, g3 = grads_of(tm, x, 4)
    assert not torch.equal(g1["text.head.weight"], g3["text.head.weight"])  # dropout is live
    assert torch.equal(after1, after2)  # the RNG stream continues exactly where pass 1 left it
