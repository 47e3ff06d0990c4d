"""The contrastive losses: masking of same-image rows, invalid rows, temperature, SigLIP."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from model.train.distributed import DistInfo
from model.train.loss import BatchMeta, contrastive_loss

ONE = DistInfo()


def unit(n: int, d: int = 8, seed: int = 0) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def naive_clip_loss(img, txt, scale):
    logits = scale * img @ txt.T  # (B, B)
    t = torch.arange(len(img))
    return (F.cross_entropy(logits, t) + F.cross_entropy(logits.T, t)) / 2


def test_distinct_images_match_the_textbook_clip_loss():
    img, txt = unit(6), unit(6, seed=1)
    meta = BatchMeta(torch.arange(6), torch.ones(6, dtype=torch.bool))
    scale = torch.tensor(10.0)
    got = contrastive_loss(img, txt, scale, meta, ONE)
    assert torch.allclose(got, naive_clip_loss(img, txt, scale), atol=1e-6)


def test_captions_of_the_same_image_are_not_negatives():
    # rows 0 and 1 are two captions of one image; their texts are identical vectors, which a
    # naive loss would punish as a hard negative
    img = unit(4)
    img[1] = img[0]
    txt = img.clone()
    ids = torch.tensor([7, 7, 8, 9])
    meta = BatchMeta(ids, torch.ones(4, dtype=torch.bool))
    scale = torch.tensor(100.0)
    masked = contrastive_loss(img, txt, scale, meta, ONE)
    naive = naive_clip_loss(img, txt, scale)
    # naively, rows 0 and 1 each lose log 2 per direction to their twin: mean (2·log 2) / 4
    assert naive > math.log(2) / 2 - 0.01
    assert masked < 1e-3  # with the mask, perfect pairs give ~zero loss


def test_invalid_rows_are_ignored():
    img, txt = unit(5), unit(5, seed=2)
    valid = torch.tensor([True, True, False, True, True])
    meta = BatchMeta(torch.arange(5), valid)
    scale = torch.tensor(5.0)
    got = contrastive_loss(img, txt, scale, meta, ONE)
    keep = valid.nonzero().squeeze(1)
    assert torch.allclose(got, naive_clip_loss(img[keep], txt[keep], scale), atol=1e-6)


def test_temperature_receives_a_gradient():
    img, txt = unit(4), unit(4, seed=3)
    log_scale = torch.tensor(math.log(1 / 0.07), requires_grad=True)
    meta = BatchMeta(torch.arange(4), torch.ones(4, dtype=torch.bool))
    contrastive_loss(img, txt, log_scale.exp(), meta, ONE).backward()
    assert log_scale.grad is not None and log_scale.grad.abs() > 0


def test_siglip_loss_treats_same_image_as_positive():
    img = unit(3)
    txt = img.clone()
    meta = BatchMeta(torch.tensor([1, 1, 2]), torch.ones(3, dtype=torch.bool))
    bias = torch.tensor(-5.0)
    loss = contrastive_loss(img, txt, torch.tensor(10.0), meta, ONE, "siglip", bias)
    logits = 10.0 * img @ txt.T - 5.0
    labels = torch.tensor([[1, 1, -1], [1, 1, -1], [-1, -1, 1]], dtype=torch.float)
    assert torch.allclose(loss, -F.logsigmoid(labels * logits).sum() / 3, atol=1e-6)
    with pytest.raises(ValueError, match="bias"):
        contrastive_loss(img, txt, torch.tensor(1.0), meta, ONE, "siglip")
    with pytest.raises(ValueError, match="unknown loss"):
        contrastive_loss(img, txt, torch.tensor(1.0), meta, ONE, "triplet")
