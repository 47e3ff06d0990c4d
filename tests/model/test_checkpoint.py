"""clipsearch checkpoint directories: exact round trips and clear refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from model import CheckpointError, load_encoder
from model.checkpoint import load_checkpoint, save_checkpoint
from tests.utils.images import sample_photo


def test_round_trip_is_bit_identical(tiny_ckpt_dir, tmp_path):
    model, tokenizer = load_checkpoint(tiny_ckpt_dir)
    with torch.no_grad():  # make weights differ from any fresh init
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    out = save_checkpoint(model, tokenizer, tmp_path / "ckpt")
    loaded, _ = load_checkpoint(out)
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert loaded.config == model.config

    enc = load_encoder(str(out), device="cpu", backend="torch")  # bit-identical: PyTorch's own
    img = sample_photo("cat")
    pixels = enc.preprocess(img)[None]
    with torch.no_grad():
        ref = torch.nn.functional.normalize(model.eval().encode_image(pixels), dim=-1)
    assert np.array_equal(enc.encode_images([img]), ref.numpy())


def test_missing_weights_is_a_clear_error(tiny_ckpt_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((tiny_ckpt_dir / "config.json").read_text())
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(bad)


def test_weights_that_do_not_fit_the_config(tiny_ckpt_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_ckpt_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["embed_dim"] = 24
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(bad)
