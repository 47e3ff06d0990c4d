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
    with pytest.raises(ModelSpecError, match="no such directory"):
        load_encoder(f"hf:{tmp_path / 'nothing-here'}")
    with pytest.raises(ModelSpecError, match="could not load Hugging Face model"):
        load_encoder(f"hf:{tmp_path}")  # a directory without the model's files


def test_offline_hub_id_fails_at_once_in_one_line(monkeypatch):
    """No network and no cache: one clear line, without transformers' retries."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelSpecError) as err:
        load_encoder("hf:clipsearch-tests/no-such-model")
    msg = str(err.value)
    assert msg.startswith("cannot reach the Hugging Face hub to fetch 'clipsearch-tests/")
    assert "offline mode" in msg and "hf:/path/to/model" in msg and "\n" not in msg


def test_hub_probe_is_skipped_offline(monkeypatch):
    from model import hf_clip

    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    assert hf_clip.hub_reachable() is False


def test_relative_checkpoint_spec_is_stored_absolute(tiny_ckpt_dir, tmp_path, monkeypatch):
    from model.loader import absolute_spec

    monkeypatch.chdir(tiny_ckpt_dir.parent)
    enc = load_encoder(tiny_ckpt_dir.name, device="cpu")
    assert enc.spec == str(tiny_ckpt_dir.resolve())
    assert absolute_spec(f"./{tiny_ckpt_dir.name}") == enc.spec
    assert absolute_spec("starter") == "starter"
    assert absolute_spec("hf:openai/clip-vit-base-patch32") == "hf:openai/clip-vit-base-patch32"
    monkeypatch.chdir(tmp_path)  # the stored spec loads the same model from anywhere
    assert load_encoder(enc.spec, device="cpu").fingerprint == enc.fingerprint


def test_relative_hf_dir_spec_is_stored_absolute(tiny_hf_dir, monkeypatch):
    monkeypatch.chdir(tiny_hf_dir.parent)
    enc = load_encoder(f"hf:{tiny_hf_dir.name}", device="cpu")
    assert enc.spec == f"hf:{tiny_hf_dir.resolve()}" and enc.backend in ("torch", "onnx")


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
