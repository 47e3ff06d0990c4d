"""Model specs: every family loads, every wrong spec says what the valid forms are."""

from __future__ import annotations

import pytest

from model import ModelSpecError, load_encoder, parse_spec


@pytest.mark.parametrize("spec", ["foo", "clip-vit", "/no/such/dir", "", "  ", "hf:", "hf:  "])
def test_wrong_spec_lists_valid_forms(spec):
    with pytest.raises(ModelSpecError) as err:
        load_encoder(spec)
    msg = str(err.value)
    assert "starter" in msg and "hf:" in msg and "checkpoint" in msg


def test_plain_dir_that_is_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelSpecError, match="not a clipsearch checkpoint"):
        parse_spec(str(tmp_path))


def test_hf_dir_without_prefix_suggests_hf(tiny_hf_dir):
    with pytest.raises(ModelSpecError, match=f"hf:{tiny_hf_dir}"):
        parse_spec(str(tiny_hf_dir))


def test_missing_hf_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelSpecError, match="could not load Hugging Face model"):
        load_encoder(f"hf:{tmp_path / 'nothing-here'}")


def test_hf_non_clip_model_is_refused(tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    ).save_pretrained(tmp_path)
    with pytest.raises(ModelSpecError):
        load_encoder(f"hf:{tmp_path}")


def test_unavailable_device_is_refused(tiny_ckpt_dir):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ValueError, match="CUDA is not available"):
        load_encoder(str(tiny_ckpt_dir), device="cuda")
